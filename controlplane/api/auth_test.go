package api

import (
	"bufio"
	"context"
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
	"github.com/racklet/rack/events"
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

// authStep is one request of a table-driven auth test and the answer it
// must get: the status, the error code and a part of the message.
type authStep struct {
	name               string
	cert               *tls.Certificate
	authz              string
	method, path, body string
	status             int
	code, msgHas       string
}

// run sends the steps in order and stops at the first unexpected answer.
func (e *authEnv) run(t *testing.T, steps []authStep) {
	t.Helper()
	for _, s := range steps {
		status, eb, body, err := e.do(t, s.cert, s.authz, s.method, s.path, s.body)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if status != s.status || (s.code != "" && eb.Code != s.code) || !strings.Contains(eb.Message, s.msgHas) {
			t.Fatalf("%s: %d %s, want %d %s containing %q", s.name, status, body, s.status, s.code, s.msgHas)
		}
	}
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
	steps := []authStep{
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
		{name: "operator cannot update firmware", cert: operator, method: "PUT", path: "/v1/firmware/n1-bmc", body: `{"version":"1.2.3"}`, status: 403, code: CodeForbidden, msgHas: "needs role admin"},
		{name: "viewer cannot profile", cert: viewer, method: "GET", path: "/debug/pprof/heap", status: 403, code: CodeForbidden, msgHas: "needs role admin"},
		{name: "operator cannot profile", authz: "Bearer " + dashTok, method: "GET", path: "/debug/pprof/goroutine", status: 403, code: CodeForbidden, msgHas: "needs role admin"},
		{name: "admin profiles", cert: admin, method: "GET", path: "/debug/pprof/cmdline", status: 200},
		{name: "admin lists profiles", cert: admin, method: "GET", path: "/debug/pprof/", status: 200},
		{name: "a profile of hours is refused", cert: admin, method: "GET", path: "/debug/pprof/profile?seconds=36000", status: 400, code: CodeInvalid, msgHas: "seconds"},
		{name: "admin updates firmware", cert: admin, method: "PUT", path: "/v1/firmware/n1-bmc", body: `{"version":"1.2.3"}`, status: 202},
	}
	e.run(t, steps)
	// Audit: each event records who asked for it.
	evs, err := e.log.Read(t.Context(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, ev := range evs {
		actors = append(actors, string(ev.Type)+" by "+ev.Actor)
	}
	want := []string{"io.racklet.node.registered by client/alice", "io.racklet.node.power.desired by client/dash", "io.racklet.firmware.desired by client/root"}
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

// TestAuthNodeIdentity: a node's identity (certificate or token) may
// report its own boot stages and do nothing else; the events carry it as
// the actor; a revoked node token is refused.
func TestAuthNodeIdentity(t *testing.T) {
	e := newAuthEnv(t)
	now := time.Now()
	operator := e.cert(t, pki.Request{Kind: pki.KindClient, Name: "alice", Role: pki.RoleOperator}, now)
	n3cert := e.cert(t, pki.Request{Kind: pki.KindNode, Name: "n3"}, now)
	n3tok, _, err := e.ca.IssueNodeToken("n3", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	oldTok, oldSerial, err := e.ca.IssueNodeToken("n3", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	rev, _, err := e.ca.Revoke(nil, []*big.Int{oldSerial}, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	e.trust.SetRevocations(rev)
	n3 := "Bearer " + n3tok
	const (
		stage  = `{"stage":"bootstrap"}`
		failed = `{"stage":"bootstrap","failed":true,"reason":"no image"}`
		only   = "node/n3 has role node, which may only POST /v1/nodes/n3/boot/stages"
	)
	steps := []authStep{
		{name: "operator registers n3", cert: operator, method: "POST", path: "/v1/nodes", body: `{"name":"n3","slot":3}`, status: 201},
		{name: "operator registers n4", cert: operator, method: "POST", path: "/v1/nodes", body: `{"name":"n4","slot":4}`, status: 201},
		{name: "n3's certificate reports n3's stage", cert: n3cert, method: "POST", path: "/v1/nodes/n3/boot/stages", body: stage, status: 202},
		{name: "n3's token reports n3's failure", authz: n3, method: "POST", path: "/v1/nodes/n3/boot/stages", body: failed, status: 202},
		{name: "n3's certificate cannot report for n4", cert: n3cert, method: "POST", path: "/v1/nodes/n4/boot/stages", body: stage, status: 403, code: CodeForbidden,
			msgHas: "POST /v1/nodes/n4/boot/stages needs role operator; " + only},
		{name: "n3's token cannot report for n4", authz: n3, method: "POST", path: "/v1/nodes/n4/boot/stages", body: stage, status: 403, code: CodeForbidden, msgHas: only},
		{name: "a path that cleans to n4", authz: n3, method: "POST", path: "/v1/nodes/n3/../n4/boot/stages", body: stage, status: 403, code: CodeForbidden, msgHas: only},
		{name: "a path that cleans to n3 is not n3's path", authz: n3, method: "POST", path: "/v1/nodes/n4/../n3/boot/stages", body: stage, status: 403, code: CodeForbidden},
		{name: "a trailing slash is not n3's path", authz: n3, method: "POST", path: "/v1/nodes/n3/boot/stages/", body: stage, status: 403, code: CodeForbidden},
		{name: "n3 cannot power itself off", cert: n3cert, method: "PUT", path: "/v1/nodes/n3/power", body: `{"state":"off"}`, status: 403, code: CodeForbidden,
			msgHas: "PUT /v1/nodes/n3/power needs role operator; " + only},
		{name: "n3's token cannot power off", authz: n3, method: "PUT", path: "/v1/nodes/n3/power", body: `{"state":"off"}`, status: 403, code: CodeForbidden},
		{name: "n3 cannot set its boot spec", authz: n3, method: "PUT", path: "/v1/nodes/n3/boot", body: `{"source":"local"}`, status: 403, code: CodeForbidden},
		{name: "n3 cannot remove itself", cert: n3cert, method: "DELETE", path: "/v1/nodes/n3", status: 403, code: CodeForbidden},
		{name: "n3 cannot list the nodes", cert: n3cert, method: "GET", path: "/v1/nodes", status: 403, code: CodeForbidden, msgHas: "GET /v1/nodes needs role viewer; " + only},
		{name: "n3's token cannot list the nodes", authz: n3, method: "GET", path: "/v1/nodes", status: 403, code: CodeForbidden},
		{name: "n3 cannot read itself", authz: n3, method: "GET", path: "/v1/nodes/n3", status: 403, code: CodeForbidden},
		{name: "n3 cannot read its stage route", authz: n3, method: "GET", path: "/v1/nodes/n3/boot/stages", status: 403, code: CodeForbidden},
		{name: "n3 cannot read events", cert: n3cert, method: "GET", path: "/v1/events?limit=5", status: 403, code: CodeForbidden},
		{name: "n3 cannot register a node", authz: n3, method: "POST", path: "/v1/nodes", body: `{"name":"n9","slot":9}`, status: 403, code: CodeForbidden},
		{name: "a revoked node token", authz: "Bearer " + oldTok, method: "POST", path: "/v1/nodes/n3/boot/stages", body: stage, status: 401, code: CodeUnauthenticated, msgHas: "revoked"},
		{name: "an operator still reports stages", cert: operator, method: "POST", path: "/v1/nodes/n4/boot/stages", body: stage, status: 202},
	}
	e.run(t, steps)
	evs, err := e.log.Read(t.Context(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		got = append(got, strings.TrimPrefix(string(ev.Type), "io.racklet.")+" "+ev.Subject+" by "+ev.Actor)
	}
	want := []string{
		"node.registered n3 by client/alice", "node.registered n4 by client/alice",
		"node.boot.stage n3 by node/n3", "node.boot.failed n3 by node/n3",
		"node.boot.stage n4 by client/alice",
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNodeMay(t *testing.T) {
	n3 := pki.Identity{Rack: "rack1", Kind: pki.KindNode, Name: "n3", Role: pki.RoleNode}
	cases := []struct {
		id           pki.Identity
		method, path string
		want         bool
	}{
		{n3, "POST", "/v1/nodes/n3/boot/stages", true},
		{n3, "POST", "/v1/nodes/n4/boot/stages", false},
		{n3, "POST", "/v1/nodes/n33/boot/stages", false},
		{n3, "POST", "/v1/nodes/n/boot/stages", false},
		{n3, "GET", "/v1/nodes/n3/boot/stages", false},
		{n3, "HEAD", "/v1/nodes/n3/boot/stages", false},
		{n3, "PUT", "/v1/nodes/n3/boot/stages", false},
		{n3, "POST", "/v1/nodes/n3/boot", false},
		{n3, "POST", "/v1/nodes/n3/boot/stages/", false},
		{n3, "POST", "//v1/nodes/n3/boot/stages", false},
		{n3, "POST", "/v1/nodes/n3/./boot/stages", false},
		{n3, "POST", "/v1/nodes/n4/../n3/boot/stages", false},
		{n3, "POST", "/v1/nodes/n3/boot/stages/../../../n4/boot/stages", false},
		// Only a node identity, and only with role node.
		{pki.Identity{Rack: "rack1", Kind: pki.KindClient, Name: "n3", Role: pki.RoleAdmin}, "POST", "/v1/nodes/n3/boot/stages", false},
		{pki.Identity{Rack: "rack1", Kind: pki.KindNode, Name: "n3", Role: pki.RoleOperator}, "POST", "/v1/nodes/n3/boot/stages", false},
	}
	for _, c := range cases {
		if got := NodeMay(c.id, c.method, c.path); got != c.want {
			t.Errorf("NodeMay(%s, %s %s) = %v, want %v", c.id, c.method, c.path, got, c.want)
		}
	}
}

// TestStageHandlerChecksTheNode: behind authorize, the stage handler
// itself refuses a node identity whose name is not the route's.
func TestStageHandlerChecksTheNode(t *testing.T) {
	mem := eventlog.NewMem(0)
	t.Cleanup(func() { _ = mem.Close() })
	srv, err := New(Config{Rack: "rack1", Member: "m1", Log: mem})
	if err != nil {
		t.Fatal(err)
	}
	n3 := pki.Identity{Rack: "rack1", Kind: pki.KindNode, Name: "n3", Role: pki.RoleNode}
	req := httptest.NewRequest("POST", "/v1/nodes/n4/boot/stages", strings.NewReader(`{"stage":"bootstrap"}`))
	req.Header.Set("Content-Type", "application/json")
	req = req.WithContext(context.WithValue(req.Context(), identityKey{}, n3))
	w := httptest.NewRecorder()
	srv.mux.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "may only report its own boot stages") {
		t.Fatalf("%d %s, want 403", w.Code, w.Body.String())
	}
}

// TestEventStreamEndsOnRevocation: a stream lives as long as its
// credentials. Revoking the certificate of a client that follows the
// events ends its stream at once with an error event; another client's
// stream goes on.
func TestEventStreamEndsOnRevocation(t *testing.T) {
	e := newAuthEnv(t)
	now := time.Now()
	mallory := e.cert(t, pki.Request{Kind: pki.KindIntegration, Name: "mallory"}, now)
	grafana := e.cert(t, pki.Request{Kind: pki.KindIntegration, Name: "grafana"}, now)

	follow := func(cert *tls.Certificate) <-chan string {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: e.trust.Pool(), Certificates: []tls.Certificate{*cert}}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		t.Cleanup(c.CloseIdleConnections)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url+"/v1/events", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", EventStreamType)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("following events: %s", resp.Status)
		}
		lines := make(chan string, 100)
		go func() {
			defer close(lines)
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		return lines
	}
	// next waits for a line with want in it; "" waits for the end.
	next := func(lines <-chan string, want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					if want != "" {
						t.Fatalf("stream ended before %q", want)
					}
					return
				}
				if want != "" && strings.Contains(l, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q within 10s", want)
			}
		}
	}
	register := func(name string) {
		t.Helper()
		ev, err := events.New(events.Source("rack1", "m1"), events.NodeRegistered, name, &events.NodeRegisteredData{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.log.Append(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}

	bad, good := follow(mallory), follow(grafana)
	register("n1")
	next(bad, `"subject":"n1"`)
	next(good, `"subject":"n1"`)

	rev, _, err := e.ca.Revoke(nil, []*big.Int{mallory.Leaf.SerialNumber}, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	e.trust.SetRevocations(rev)
	next(bad, "event: error")
	next(bad, "revoked")
	next(bad, "") // and then the stream ends

	register("n2")
	next(good, `"subject":"n2"`)
}
