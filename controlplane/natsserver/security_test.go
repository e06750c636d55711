package natsserver

import (
	"crypto/tls"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/controlplane/pki"
	"github.com/racklet/rack/internal/testutil"
)

type testPKI struct {
	ca    *pki.CA
	trust *pki.Trust
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := pki.NewCA("rack1", pki.ECDSAP256, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, trust: pki.NewTrust(ca.Cert, "rack1", nil)}
}

func (p *testPKI) issue(t *testing.T, req pki.Request, at time.Time) tls.Certificate {
	t.Helper()
	if req.Kind == pki.KindMember {
		req.Hosts = []string{"127.0.0.1"}
	}
	is, err := p.ca.Issue(req, at)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: is.Key, Leaf: is.Cert}
}

func startSecure(t *testing.T, name string, trust *pki.Trust, cert tls.Certificate, routes ...string) *Server {
	t.Helper()
	return startLogged(t, name, trust, cert, nil, routes...)
}

// dial connects as a NATS client with cert (nil: no certificate) and the
// rack CA as root; it fails fast.
func dial(s *Server, cert *tls.Certificate, trust *pki.Trust) (*nats.Conn, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: trust.Pool(), ServerName: "127.0.0.1"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return nats.Connect(s.ClientURL(), nats.Secure(cfg), nats.NoReconnect(), nats.Timeout(3*time.Second))
}

func TestSecurityMutualTLSAndPermissions(t *testing.T) {
	p := newTestPKI(t)
	m1 := startSecure(t, "m1", p.trust, p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m1"}, time.Now()))
	m2 := startSecure(t, "m2", p.trust, p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m2"}, time.Now()), m1.ClusterURL())
	testutil.WaitFor(t, 10*time.Second, func() error {
		if m1.NumRoutes() == 0 || m2.NumRoutes() == 0 {
			return errors.New("members not routed over TLS yet")
		}
		return nil
	})

	// The members' own in-process connections work across the TLS route.
	l1 := connectLocal(t, m1, "rackd-m1")
	l2 := connectLocal(t, m2, "rackd-m2")
	memberSub, err := l2.SubscribeSync("racklet.rack1.raft.>")
	if err != nil {
		t.Fatal(err)
	}
	_ = l2.Flush()

	// An integration may subscribe to events, and to nothing else.
	integ := p.issue(t, pki.Request{Kind: pki.KindIntegration, Name: "grafana"}, time.Now())
	var mu sync.Mutex
	var asyncErrs []error
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: p.trust.Pool(), Certificates: []tls.Certificate{integ}}
	ic, err := nats.Connect(m2.ClientURL(), nats.Secure(cfg), nats.NoReconnect(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		asyncErrs = append(asyncErrs, err)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("integration refused: %v", err)
	}
	defer ic.Close()
	events, err := ic.SubscribeSync("racklet.rack1.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ic.SubscribeSync("racklet.rack1.raft.>"); err != nil {
		t.Fatal(err)
	}
	// Forging an event and speaking Raft: denied by the server.
	if err := ic.Publish("racklet.rack1.events.node.registered.n9", []byte(`{"forged":true}`)); err != nil {
		t.Fatal(err)
	}
	if err := ic.Publish("racklet.rack1.raft.m2.append", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	_ = ic.Flush()
	// The integration's interest reaches m1 over the route after a
	// moment: publish until it arrives.
	var msg *nats.Msg
	for deadline := time.Now().Add(10 * time.Second); msg == nil && time.Now().Before(deadline); {
		if err := l1.Publish("racklet.rack1.events.node.registered.n1", []byte("real")); err != nil {
			t.Fatal(err)
		}
		_ = l1.Flush()
		msg, err = events.NextMsg(100 * time.Millisecond)
	}
	if msg == nil {
		t.Fatalf("integration did not get the member's event: %v", err)
	}
	if string(msg.Data) != "real" {
		t.Fatalf("integration got %q first, want the member's event", msg.Data)
	}
	for {
		m, err := events.NextMsg(300 * time.Millisecond)
		if err != nil {
			break
		}
		if string(m.Data) != "real" {
			t.Fatalf("integration saw a forged event: %q", m.Data)
		}
	}
	if m, err := memberSub.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("a member got a Raft message forged by an integration: %q", m.Data)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range asyncErrs {
			if strings.Contains(strings.ToLower(e.Error()), "permissions violation") {
				n++
			}
		}
		if n < 3 { // two publishes and one subscription
			return errors.New("expected 3 permission violations, got " + strings.Repeat("I", n))
		}
		return nil
	})
}

func TestSecurityRefusesStrangers(t *testing.T) {
	p := newTestPKI(t)
	m1cert := p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m1"}, time.Now())
	revokedMember := p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m3"}, time.Now())
	revokedClient := p.issue(t, pki.Request{Kind: pki.KindClient, Name: "mallory", Role: pki.RoleAdmin}, time.Now())
	rev, _, err := p.ca.Revoke(nil, []*big.Int{revokedMember.Leaf.SerialNumber, revokedClient.Leaf.SerialNumber}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.trust.SetRevocations(rev)
	m1 := startSecure(t, "m1", p.trust, m1cert)

	other := newTestPKI(t)
	stranger := other.issue(t, pki.Request{Kind: pki.KindIntegration, Name: "grafana"}, time.Now())
	expired := p.issue(t, pki.Request{Kind: pki.KindIntegration, Name: "old", Lifetime: time.Hour}, time.Now().Add(-2*time.Hour))
	cases := []struct {
		name string
		cert *tls.Certificate
	}{
		{"no certificate", nil},
		{"certificate from another CA", &stranger},
		{"expired certificate", &expired},
		{"revoked certificate", &revokedClient},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nc, err := dial(m1, c.cert, p.trust)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
		})
	}
	t.Run("plain TCP with a guessed token", func(t *testing.T) {
		nc, err := nats.Connect(m1.ClientURL(), nats.Token("guess"), nats.NoReconnect(), nats.Timeout(3*time.Second))
		if err == nil {
			nc.Close()
			t.Fatal("connected without TLS")
		}
	})

	// Routes: a member of another CA, a revoked member, an expired one
	// and a server without TLS cannot join.
	intruder := startSecure(t, "x1", other.trust, other.issue(t, pki.Request{Kind: pki.KindMember, Name: "x1"}, time.Now()), m1.ClusterURL())
	revoked := startSecure(t, "m3", pki.NewTrust(p.ca.Cert, "rack1", nil), revokedMember, m1.ClusterURL())
	expiredMember := startSecure(t, "m4", p.trust, p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m4", Lifetime: time.Hour}, time.Now().Add(-2*time.Hour)), m1.ClusterURL())
	plain, err := Start(Config{Name: "m5", Rack: "rack1", Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0", Routes: []string{m1.ClusterURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plain.Shutdown)
	// A legitimate member joins meanwhile, so the check below is not
	// merely too early.
	m2 := startSecure(t, "m2", p.trust, p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m2"}, time.Now()), m1.ClusterURL())
	testutil.WaitFor(t, 10*time.Second, func() error {
		if m2.NumRoutes() == 0 {
			return errors.New("m2 not routed")
		}
		return nil
	})
	time.Sleep(time.Second)
	if n := intruder.NumRoutes(); n != 0 {
		t.Errorf("a member of another CA has %d routes", n)
	}
	if n := revoked.NumRoutes(); n != 0 {
		t.Errorf("a revoked member has %d routes", n)
	}
	if n := expiredMember.NumRoutes(); n != 0 {
		t.Errorf("a member with an expired certificate has %d routes", n)
	}
	if n := plain.NumRoutes(); n != 0 {
		t.Errorf("a server without TLS has %d routes", n)
	}
	// A route counts once per pooled connection: m1 has as many as m2
	// has to it, and no more.
	if n, want := m1.NumRoutes(), m2.NumRoutes(); n != want {
		t.Errorf("m1 has %d routes, want %d (m2's only)", n, want)
	}
}

// TestSecurityRefusesNodes: a node's certificate (its boot environment
// reports stages over the HTTP API only) cannot connect to NATS at all, so
// it can neither subscribe to events nor publish; a client certificate
// from the same CA, dialled the same way, can (the control case).
func TestSecurityRefusesNodes(t *testing.T) {
	p := newTestPKI(t)
	m1 := startSecure(t, "m1", p.trust, p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m1"}, time.Now()))
	client := p.issue(t, pki.Request{Kind: pki.KindClient, Name: "alice", Role: pki.RoleViewer}, time.Now())
	cc, err := dial(m1, &client, p.trust)
	if err != nil {
		t.Fatalf("control case: a client certificate was refused: %v", err)
	}
	cc.Close()

	node := p.issue(t, pki.Request{Kind: pki.KindNode, Name: "n3"}, time.Now())
	nc, err := dial(m1, &node, p.trust)
	if err == nil {
		defer nc.Close()
		// Had it connected: it must not see events nor publish them.
		sub, serr := nc.SubscribeSync("racklet.rack1.events.>")
		perr := nc.Publish("racklet.rack1.events.node.registered.n9", []byte("forged"))
		ferr := nc.Flush()
		t.Fatalf("a node certificate connected to NATS (subscribe %v %v, publish %v, flush %v)", sub, serr, perr, ferr)
	}

	// Should a node get past the handshake, it has no permissions.
	a := &authenticator{rack: "rack1"}
	perms := a.permissionsFor(pki.Identity{Rack: "rack1", Kind: pki.KindNode, Name: "n3", Role: pki.RoleNode})
	if perms == nil || perms.Publish == nil || perms.Subscribe == nil ||
		len(perms.Publish.Allow) != 0 || len(perms.Subscribe.Allow) != 0 ||
		strings.Join(perms.Publish.Deny, ",") != ">" || strings.Join(perms.Subscribe.Deny, ",") != ">" {
		t.Fatalf("a node's permissions: %+v", perms)
	}
}

// connectLocal opens the member's own in-process connection to s, closed
// when the test ends.
func connectLocal(t *testing.T, s *Server, name string) *nats.Conn {
	t.Helper()
	nc, err := s.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
