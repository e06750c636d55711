package natsserver

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/controlplane/pki"
	"github.com/racklet/rack/internal/testutil"
)

// logBuffer collects a server's log lines (slog text), safe for the
// server's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the lines that contain every one of words.
func (l *logBuffer) lines(words ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range strings.Split(l.b.String(), "\n") {
		for _, w := range words {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// startLogged is startSecure with the server's log kept in logs (nil:
// the default logger).
func startLogged(t *testing.T, name string, trust *pki.Trust, cert tls.Certificate, logs *logBuffer, routes ...string) *Server {
	t.Helper()
	cfg := Config{Name: name, Rack: "rack1", Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0", Routes: routes,
		Security: &Security{Trust: trust, Cert: cert}}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// revoke puts certs on a new revocation list and hands it to trust, as
// pki.WatchRevocations does when ca.crl changes.
func (p *testPKI) revoke(t *testing.T, trust *pki.Trust, certs ...tls.Certificate) {
	t.Helper()
	var serials []*big.Int
	for _, c := range certs {
		serials = append(serials, c.Leaf.SerialNumber)
	}
	rev, _, err := p.ca.Revoke(nil, serials, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	trust.SetRevocations(rev)
}

// receiveFrom publishes data on subject from pub until sub gets it
// (interest travels over routes after a moment).
func receiveFrom(t *testing.T, pub *nats.Conn, subject, data string, sub *nats.Subscription) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if err := pub.Publish(subject, []byte(data)); err != nil {
			t.Fatal(err)
		}
		_ = pub.Flush()
		for {
			m, err := sub.NextMsg(100 * time.Millisecond)
			if err != nil {
				break
			}
			if string(m.Data) == data {
				return
			}
		}
	}
	t.Fatalf("%s not received on %s", data, sub.Subject)
}

// TestRevocationClosesClientConnections: an integration connected with a
// valid certificate and receiving events is disconnected once its
// certificate is revoked, and cannot connect again; another integration
// stays connected and keeps receiving.
func TestRevocationClosesClientConnections(t *testing.T) {
	p := newTestPKI(t)
	logs := &logBuffer{}
	m1 := startLogged(t, "m1", p.trust, p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m1"}, time.Now()), logs)
	local := connectLocal(t, m1, "rackd-m1")

	grafana := p.issue(t, pki.Request{Kind: pki.KindIntegration, Name: "grafana"}, time.Now())
	alerts := p.issue(t, pki.Request{Kind: pki.KindIntegration, Name: "alerts"}, time.Now())
	gc, err := dial(m1, &grafana, p.trust)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	ac, err := dial(m1, &alerts, p.trust)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	const subject = "racklet.rack1.events.node.power.observed.n1"
	gsub, err := gc.SubscribeSync("racklet.rack1.events.>")
	if err != nil {
		t.Fatal(err)
	}
	asub, err := ac.SubscribeSync("racklet.rack1.events.>")
	if err != nil {
		t.Fatal(err)
	}
	receiveFrom(t, local, subject, "before", gsub)
	receiveFrom(t, local, subject, "before", asub)

	p.revoke(t, p.trust, grafana)

	testutil.WaitFor(t, 10*time.Second, func() error {
		if !gc.IsClosed() {
			return errors.New("the revoked integration is still connected")
		}
		return nil
	})
	if nc, err := dial(m1, &grafana, p.trust); err == nil {
		nc.Close()
		t.Fatal("the revoked integration connected again")
	}
	if ac.IsClosed() {
		t.Fatal("the integration that was not revoked was disconnected")
	}
	receiveFrom(t, local, subject, "after", asub)
	if ac.IsClosed() {
		t.Fatal("the integration that was not revoked was disconnected")
	}

	serial := grafana.Leaf.SerialNumber.Text(16)
	if l := logs.lines("nats connection closed", "spiffe://racklet.rack1/integration/grafana", "integration/grafana", "serial="+serial, "revoked"); len(l) != 1 {
		t.Errorf("want one log line naming the closed connection's identity, serial and reason; got %q", l)
	}
	if l := logs.lines("nats connection closed", "alerts"); len(l) != 0 {
		t.Errorf("the integration that was not revoked is logged as closed: %q", l)
	}
}

// routesTo counts s's routes by the remote server's name.
func routesTo(s *Server) map[string]int {
	out := map[string]int{}
	rz, err := s.srv.Routez(nil)
	if err != nil {
		return out
	}
	for _, r := range rz.Routes {
		out[r.RemoteName]++
	}
	return out
}

// TestRevocationClosesRoutes: members m1 and m3 trust one CA and share
// one revocation list; m2's certificate is revoked on it while m2 (which
// does not know of its revocation, as a compromised member would not) is
// routed to both. Every route to m2 closes, whichever side opened it, and
// none comes back while m2 or m1 keeps retrying; m1 and m3 stay routed,
// and a member they have not met yet can still join.
func TestRevocationClosesRoutes(t *testing.T) {
	cases := []struct {
		name string
		// m2DialsM1: m2 opens the routes to m1 (m1 accepted them); else m1
		// opens them (m1 solicited them).
		m2DialsM1 bool
	}{
		{name: "routes the revoked member opened", m2DialsM1: true},
		{name: "routes to the revoked member this member opened", m2DialsM1: false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestPKI(t)
			logs := &logBuffer{}
			m2cert := p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m2"}, time.Now())
			m2trust := pki.NewTrust(p.ca.Cert, "rack1", nil)
			m1cert := p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m1"}, time.Now())
			var m1, m2 *Server
			if c.m2DialsM1 {
				m1 = startLogged(t, "m1", p.trust, m1cert, logs)
				m2 = startSecure(t, "m2", m2trust, m2cert, m1.ClusterURL())
			} else {
				m2 = startSecure(t, "m2", m2trust, m2cert)
				m1 = startLogged(t, "m1", p.trust, m1cert, logs, m2.ClusterURL())
			}
			m3 := startSecure(t, "m3", p.trust, p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m3"}, time.Now()), m1.ClusterURL())
			testutil.WaitFor(t, 10*time.Second, func() error {
				r1, r3 := routesTo(m1), routesTo(m3)
				if r1["m2"] == 0 || r1["m3"] == 0 || r3["m1"] == 0 || r3["m2"] == 0 {
					return fmt.Errorf("not routed yet: m1 %v, m3 %v", r1, r3)
				}
				return nil
			})
			// Which side opened m1's routes to m2 is what the case is about.
			rz, _ := m1.srv.Routez(nil)
			for _, r := range rz.Routes {
				if r.RemoteName == "m2" && r.DidSolicit == c.m2DialsM1 {
					t.Fatalf("m1's route %d to m2: solicited %v, want %v", r.Rid, r.DidSolicit, !c.m2DialsM1)
				}
			}

			p.revoke(t, p.trust, m2cert)

			testutil.WaitFor(t, 10*time.Second, func() error {
				if r1, r3, n2 := routesTo(m1), routesTo(m3), m2.NumRoutes(); r1["m2"] != 0 || r3["m2"] != 0 || n2 != 0 {
					return fmt.Errorf("routes to the revoked member remain: m1 %v, m3 %v, m2 has %d", r1, r3, n2)
				}
				return nil
			})
			// The side with the configured route retries every second or
			// so; each attempt is refused.
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if r1, n2 := routesTo(m1), m2.NumRoutes(); r1["m2"] != 0 || n2 != 0 {
					t.Fatalf("the revoked member routed again: m1 %v, m2 has %d routes", r1, n2)
				}
			}
			if r1, r3 := routesTo(m1), routesTo(m3); r1["m3"] == 0 || r3["m1"] == 0 {
				t.Fatalf("members that were not revoked lost their routes: m1 %v, m3 %v", r1, r3)
			}
			// Messages still travel between m1 and m3.
			l1 := connectLocal(t, m1, "rackd-m1")
			l3 := connectLocal(t, m3, "rackd-m3")
			sub, err := l1.SubscribeSync("racklet.rack1.raft.m1.append")
			if err != nil {
				t.Fatal(err)
			}
			_ = l1.Flush()
			receiveFrom(t, l3, "racklet.rack1.raft.m1.append", "from m3", sub)
			// A member m1 has not met can still route to it (the route
			// key pinning that closed m2's routes is lifted).
			m4 := startSecure(t, "m4", p.trust, p.issue(t, pki.Request{Kind: pki.KindMember, Name: "m4"}, time.Now()), m1.ClusterURL())
			testutil.WaitFor(t, 10*time.Second, func() error {
				if routesTo(m1)["m4"] == 0 || routesTo(m4)["m1"] == 0 {
					return fmt.Errorf("a new member is not routed to m1: m1 %v", routesTo(m1))
				}
				return nil
			})

			serial := m2cert.Leaf.SerialNumber.Text(16)
			if l := logs.lines("closing nats routes", "spiffe://racklet.rack1/member/m2", "member/m2", "serial="+serial, "revoked"); len(l) != 1 {
				t.Errorf("want one log line naming the revoked member's identity, serial and reason; got %q", l)
			}
			if l := logs.lines("nats route closed", "remote_name=m2"); len(l) == 0 {
				t.Errorf("no log line for the closed routes")
			}
			if l := logs.lines("closing nats routes", "m3"); len(l) != 0 {
				t.Errorf("a member that was not revoked is logged: %q", l)
			}
		})
	}
}
