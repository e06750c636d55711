package api

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/pki"
)

type authEnv struct {
	url   string
	ca    *pki.CA
	trust *pki.Trust
	log   *eventlog.Mem
}

func (e *authEnv) cert(t *testing.T, req pki.Request, at time.Time) *tls.Certificate {
	t.Helper()
	if req.Kind == pki.KindMember {
		req.Hosts = []string{"127.0.0.1"}
	}
	is, err := e.ca.Issue(req, at)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: is.Key, Leaf: is.Cert}
}

// do sends one request with an optional client certificate and bearer
// token. A TLS refusal comes back as err.
func (e *authEnv) do(t *testing.T, cert *tls.Certificate, authz, method, path, body string) (int, ErrorBody, string, error) {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: e.trust.Pool()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, ErrorBody{}, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb ErrorBody
	_ = json.Unmarshal(b, &eb)
	return resp.StatusCode, eb, string(b), nil
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	ca, err := pki.NewCA("rack1", pki.ECDSAP256, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := &authEnv{ca: ca, trust: pki.NewTrust(ca.Cert, "rack1", nil)}
	mem := eventlog.NewMem(0)
	t.Cleanup(func() { _ = mem.Close() })
	e.log = mem
	srv, err := New(Config{Rack: "rack1", Member: "m1", Log: mem, Cluster: &fakeCluster{members: []MemberInfo{{Name: "m1", Voter: true, Leader: true}, {Name: "m2", Voter: true}}}, Trust: e.trust})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv)
	ts.TLS = ServerTLS(e.trust, *e.cert(t, pki.Request{Kind: pki.KindMember, Name: "m1"}, time.Now()))
	ts.StartTLS()
	t.Cleanup(ts.Close)
	e.url = ts.URL
	return e
}

func TestAuthRolesAndAudit(t *testing.T) {
	e := newAuthEnv(t)
	now := time.Now()
	viewer := e.cert(t, pki.Request{Kind: pki.KindClient, Name: "bob", Role: pki.RoleViewer}, now)
	operator := e.cert(t, pki.Request{Kind: pki.KindClient, Name: "alice", Role: pki.RoleOperator}, now)
	admin := e.cert(t, pki.Request{Kind: pki.KindClient, Name: "root", Role: pki.RoleAdmin}, now)
	integ := e.cert(t, pki.Request{Kind: pki.KindIntegration, Name: "grafana"}, now)
	dashTok, _, err := e.ca.IssueToken("dash", pki.RoleOperator, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	viewTok, _, err := e.ca.IssueToken("wall", pki.RoleViewer, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name               string
		cert               *tls.Certificate
		authz              string
		method, path, body string
		status             int
		code, msgHas       string
	}{
		{name: "health needs nobody", method: "GET", path: "/healthz", status: 200},
		{name: "nothing presented", method: "GET", path: "/v1/nodes", status: 401, code: CodeUnauthenticated, msgHas: "client certificate"},
		{name: "basic auth is no way in", authz: "Basic YWRtaW46YWRtaW4=", method: "GET", path: "/v1/nodes", status: 401, code: CodeUnauthenticated, msgHas: "Bearer TOKEN"},
		{name: "garbage token", authz: "Bearer abc", method: "GET", path: "/v1/nodes", status: 401, code: CodeUnauthenticated, msgHas: "bearer token refused"},
		{name: "operator registers", cert: operator, method: "POST", path: "/v1/nodes", body: `{"name":"n1","slot":1}`, status: 201},
		{name: "viewer reads", cert: viewer, method: "GET", path: "/v1/nodes/n1", status: 200},
		{name: "integration reads events", cert: integ, method: "GET", path: "/v1/events?limit=5", status: 200},
		{name: "viewer cannot power off", cert: viewer, method: "PUT", path: "/v1/nodes/n1/power", body: `{"state":"off"}`, status: 403, code: CodeForbidden, msgHas: "needs role operator; client/bob has role viewer"},
		{name: "integration cannot power off", cert: integ, method: "PUT", path: "/v1/nodes/n1/power", body: `{"state":"off"}`, status: 403, code: CodeForbidden},
		{name: "viewer token cannot power off", authz: "Bearer " + viewTok, method: "PUT", path: "/v1/nodes/n1/power", body: `{"state":"off"}`, status: 403, code: CodeForbidden},
		{name: "dashboard token powers off", authz: "Bearer " + dashTok, method: "PUT", path: "/v1/nodes/n1/power", body: `{"state":"off"}`, status: 202},
		{name: "operator cannot remove a member", cert: operator, method: "DELETE", path: "/v1/members/m2", status: 403, code: CodeForbidden, msgHas: "needs role admin"},
		{name: "admin removes a member", cert: admin, method: "DELETE", path: "/v1/members/m2", status: 204},
	}
	for _, s := range steps {
		status, eb, body, err := e.do(t, s.cert, s.authz, s.method, s.path, s.body)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if status != s.status || (s.code != "" && eb.Code != s.code) || !strings.Contains(eb.Message, s.msgHas) {
			t.Fatalf("%s: %d %s, want %d %s containing %q", s.name, status, body, s.status, s.code, s.msgHas)
		}
	}
	// Audit: each event records who asked for it.
	evs, err := e.log.Read(t.Context(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, ev := range evs {
		actors = append(actors, string(ev.Type)+" by "+ev.Actor)
	}
	want := []string{"io.racklet.node.registered by client/alice", "io.racklet.node.power.desired by client/dash"}
	if strings.Join(actors, "; ") != strings.Join(want, "; ") {
		t.Fatalf("events: %v, want %v (nothing from refused requests)", actors, want)
	}
}

func TestAuthRefusesBadCertificates(t *testing.T) {
	e := newAuthEnv(t)
	other, err := pki.NewCA("rack1", pki.ECDSAP256, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	is, err := other.Issue(pki.Request{Kind: pki.KindClient, Name: "eve", Role: pki.RoleAdmin}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	stranger := &tls.Certificate{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: is.Key}
	expired := e.cert(t, pki.Request{Kind: pki.KindClient, Name: "old", Role: pki.RoleAdmin, Lifetime: time.Hour}, time.Now().Add(-3*time.Hour))
	revoked := e.cert(t, pki.Request{Kind: pki.KindClient, Name: "mallory", Role: pki.RoleAdmin}, time.Now())
	rev, _, err := e.ca.Revoke(nil, []*big.Int{revoked.Leaf.SerialNumber}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.trust.SetRevocations(rev)
	for name, c := range map[string]*tls.Certificate{"another CA": stranger, "expired": expired, "revoked": revoked} {
		status, _, body, err := e.do(t, c, "", "GET", "/v1/nodes", "")
		if err == nil && status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want a TLS refusal or 401", name, status, body)
		}
	}
}
