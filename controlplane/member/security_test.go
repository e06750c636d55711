package member

import (
	"context"
	"crypto/tls"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/pki"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/internal/testutil"
)

// securePKI writes a rack CA, member certificates for names, an admin
// client and an integration into dir, and an empty CRL per member.
func securePKI(t *testing.T, dir string, names ...string) *pki.CA {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA("rack1", pki.ECDSAP256, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCA(dir, ca); err != nil {
		t.Fatal(err)
	}
	reqs := []pki.Request{{Kind: pki.KindClient, Name: "admin", Role: pki.RoleAdmin}, {Kind: pki.KindIntegration, Name: "grafana"}}
	for _, n := range names {
		reqs = append(reqs, pki.Request{Kind: pki.KindMember, Name: n, Hosts: []string{"127.0.0.1"}})
	}
	for _, req := range reqs {
		is, err := ca.Issue(req, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := pki.WriteIssued(dir, is); err != nil {
			t.Fatal(err)
		}
	}
	_, crl, err := ca.Revoke(nil, nil, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := pki.WriteRevocations(filepath.Join(dir, n+".crl"), crl); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

func secureConfig(dir, dataDir, name string) Config {
	return Config{
		Name: name, Rack: "rack1", DataDir: filepath.Join(dataDir, name),
		HTTP: "127.0.0.1:0", NATS: "127.0.0.1:0", NATSCluster: "127.0.0.1:0", LogLevel: "info",
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"),
		CRL: filepath.Join(dir, name+".crl"), CRLCheckInterval: 20 * time.Millisecond,
	}
}

func loadPair(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	pair, _, err := pki.LoadKeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// TestSecureCluster runs three members with mutual TLS everywhere: the
// API takes the admin's certificate and refuses none, an integration
// reads events over NATS and cannot forge one, and a member whose
// certificate was revoked cannot rejoin.
func TestSecureCluster(t *testing.T) {
	pkiDir, dataDir := t.TempDir(), t.TempDir()
	ca := securePKI(t, pkiDir, "m1", "m2", "m3")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var ms []*Member
	for i, name := range []string{"m1", "m2", "m3"} {
		cfg := secureConfig(pkiDir, dataDir, name)
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{ms[0].ClusterURL()}
		}
		m, err := Start(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Kill()
		ms = append(ms, m)
	}
	trust := pki.NewTrust(ca.Cert, "rack1", nil)
	adminTLS := trust.ClientConfig(loadPair(t, pkiDir, "admin"))
	c, err := client.New(ms[1].APIURL(), client.WithTLS(adminTLS))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		_, err := c.RegisterNode(ctx, api.RegisterNodeRequest{Name: "n1", Slot: 1})
		return err
	})
	if !strings.HasPrefix(ms[1].APIURL(), "https://") || !strings.HasPrefix(ms[1].NATSURL(), "tls://") {
		t.Fatalf("urls %s %s", ms[1].APIURL(), ms[1].NATSURL())
	}

	// Plain HTTP, and HTTPS without a certificate, get nothing.
	if resp, err := http.Get(strings.Replace(ms[1].APIURL(), "https", "http", 1) + "/v1/nodes"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("plain HTTP answered %d", resp.StatusCode)
		}
	}
	anon, err := client.New(ms[1].APIURL(), client.WithTLS(&tls.Config{RootCAs: trust.Pool()}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Nodes(ctx); err == nil || !strings.Contains(err.Error(), "unauthenticated") {
		t.Fatalf("no certificate: %v", err)
	}

	// An integration on m3's NATS sees the event and cannot forge one.
	integ := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: trust.Pool(), Certificates: []tls.Certificate{loadPair(t, pkiDir, "grafana")}}
	nc, err := nats.Connect(ms[2].NATSURL(), nats.Secure(integ), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("racklet.rack1.events.node.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = nc.Publish("racklet.rack1.events.node.registered.n9", []byte(`{"forged":true}`))
	if _, err := c.RegisterNode(ctx, api.RegisterNodeRequest{Name: "n2", Slot: 2}); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("integration did not get n2's registration: %v", err)
		}
		if strings.Contains(string(msg.Data), "forged") {
			t.Fatal("an integration forged an event")
		}
		ev, err := events.Decode(msg.Data)
		if err == nil && ev.Subject == "n2" {
			break
		}
	}

	// Revoke m3, tell m1 and m2, restart m3 with its old (empty) CRL: the
	// others refuse its routes, so it never sees another commit.
	m3cert, err := pki.ReadCert(filepath.Join(pkiDir, "m3.crt"))
	if err != nil {
		t.Fatal(err)
	}
	_, crl, err := ca.Revoke(nil, []*big.Int{m3cert.SerialNumber}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"m1", "m2"} {
		if err := pki.WriteRevocations(filepath.Join(pkiDir, n+".crl"), crl); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // several CRL checks
	ms[2].Kill()
	m3, err := Start(ctx, secureConfig(pkiDir, dataDir, "m3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m3.Kill()
	if err := c.AddEndpoints(ms[0].APIURL()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterNode(ctx, api.RegisterNodeRequest{Name: "n3", Slot: 3}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if st, err := m3.EventLog().State(ctx); err == nil && st.Nodes["n3"] != nil {
		t.Fatal("a member with a revoked certificate caught up with the log")
	}
	if n := m3.nats.NumRoutes(); n != 0 {
		t.Fatalf("revoked member has %d routes", n)
	}
	// Its own revocation list, once it has it, keeps it from starting.
	m3.Kill()
	if err := os.WriteFile(filepath.Join(pkiDir, "m3.crl"), crl, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(ctx, secureConfig(pkiDir, dataDir, "m3"), nil); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("starting with a revoked certificate: %v", err)
	}
}

func TestSecureStartRefusesWrongCertificate(t *testing.T) {
	pkiDir := t.TempDir()
	securePKI(t, pkiDir, "m1", "m2")
	cfg := secureConfig(pkiDir, t.TempDir(), "m1")
	cfg.Cert, cfg.Key = filepath.Join(pkiDir, "m2.crt"), filepath.Join(pkiDir, "m2.key")
	_, err := Start(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "this is member m1") {
		t.Fatalf("m2's certificate on m1: %v", err)
	}
	cfg = secureConfig(pkiDir, t.TempDir(), "m1")
	cfg.Cert, cfg.Key = filepath.Join(pkiDir, "admin.crt"), filepath.Join(pkiDir, "admin.key")
	if _, err := Start(context.Background(), cfg, nil); err == nil {
		t.Fatal("a client certificate served a member")
	}
	other := t.TempDir()
	securePKI(t, other, "m1")
	cfg = secureConfig(pkiDir, t.TempDir(), "m1")
	cfg.CA = filepath.Join(other, "ca.crt")
	if _, err := Start(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("a certificate from another CA: %v", err)
	}
}

// TestSecureEtcdStore runs the etcd store with TLS: the members form the
// etcd cluster over https with member certificates, and an etcd client
// with a certificate that is not a member's is refused by etcd itself.
func TestSecureEtcdStore(t *testing.T) {
	pkiDir := t.TempDir()
	ca := securePKI(t, pkiDir, "m1", "m2", "m3")
	r := newEtcdTestRack(t, 3, func(c *Config) {
		c.Insecure = false
		c.CA, c.Cert, c.Key = filepath.Join(pkiDir, "ca.crt"), filepath.Join(pkiDir, c.Name+".crt"), filepath.Join(pkiDir, c.Name+".key")
		c.CRL = filepath.Join(pkiDir, c.Name+".crl")
		var initial []string
		for _, e := range c.EtcdInitialCluster {
			initial = append(initial, strings.Replace(e, "=http://", "=https://", 1))
		}
		c.EtcdInitialCluster = initial
	})
	m := r.running()[0]
	trust := pki.NewTrust(ca.Cert, "rack1", nil)
	c, err := client.New(m.APIURL(), client.WithTLS(trust.ClientConfig(loadPair(t, pkiDir, "admin"))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.RegisterNode(ctx, api.RegisterNodeRequest{Name: "n1", Slot: 1}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.EtcdClientURL(), "https://") {
		t.Fatalf("etcd client URL %s", m.EtcdClientURL())
	}
	// The admin's client certificate is from the rack CA but is not a
	// member's: etcd refuses it (the API is the way in for clients).
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.EtcdClientURL()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		TLS: trust.ClientConfig(loadPair(t, pkiDir, "admin"))})
	if err == nil {
		defer cli.Close()
		gctx, gcancel := context.WithTimeout(ctx, 3*time.Second)
		defer gcancel()
		if _, err := cli.Get(gctx, "/racklet/", clientv3.WithPrefix()); err == nil {
			t.Fatal("etcd served a client certificate that is not a member's")
		}
	}
	// A member's certificate reads the events, as etcdctl would.
	mc, err := clientv3.New(clientv3.Config{Endpoints: []string{m.EtcdClientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		TLS: trust.ClientConfig(loadPair(t, pkiDir, "m1"))})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	resp, err := mc.Get(ctx, "/racklet/rack1/events/", clientv3.WithPrefix())
	if err != nil || resp.Count == 0 {
		t.Fatalf("member reading events: %v (%d keys)", err, resp.Count)
	}
}
