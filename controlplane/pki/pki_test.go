package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/internal/testutil"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func mustCA(t *testing.T, rack string, alg Algorithm) *CA {
	t.Helper()
	ca, err := NewCA(rack, alg, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustIssue(t *testing.T, ca *CA, req Request, at time.Time) *Issued {
	t.Helper()
	is, err := ca.Issue(req, at)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func TestIssueIdentities(t *testing.T) {
	for _, alg := range []Algorithm{ECDSAP256, Ed25519} {
		ca := mustCA(t, "rack1", alg)
		cases := []struct {
			req  Request
			want Identity
		}{
			{Request{Kind: KindMember, Name: "m1", Hosts: []string{"127.0.0.1", "m1.rack1.lan"}}, Identity{"rack1", KindMember, "m1", RoleMember}},
			{Request{Kind: KindClient, Name: "alice", Role: RoleOperator}, Identity{"rack1", KindClient, "alice", RoleOperator}},
			{Request{Kind: KindClient, Name: "bob", Role: RoleViewer}, Identity{"rack1", KindClient, "bob", RoleViewer}},
			{Request{Kind: KindIntegration, Name: "grafana"}, Identity{"rack1", KindIntegration, "grafana", RoleIntegration}},
			{Request{Kind: KindNode, Name: "n3"}, Identity{"rack1", KindNode, "n3", RoleNode}},
			{Request{Kind: KindNode, Name: "n4", Role: RoleNode, Hosts: []string{"10.0.0.4"}}, Identity{"rack1", KindNode, "n4", RoleNode}},
		}
		for _, c := range cases {
			is := mustIssue(t, ca, c.req, now)
			got, err := IdentityOf(is.Cert)
			if err != nil {
				t.Fatalf("%s %s: %v", alg, c.req.Name, err)
			}
			if got != c.want || is.Identity != c.want {
				t.Errorf("%s: identity %+v (issued %+v), want %+v", alg, got, is.Identity, c.want)
			}
			if got.SPIFFEID().String() != "spiffe://racklet.rack1/"+string(c.want.Kind)+"/"+c.want.Name {
				t.Errorf("spiffe id %s", got.SPIFFEID())
			}
			if _, err := is.Cert.Verify(x509VerifyOpts(ca)); err != nil {
				t.Errorf("%s %s: chain does not verify: %v", alg, c.req.Name, err)
			}
		}
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	ca := mustCA(t, "rack1", ECDSAP256)
	cases := map[string]Request{
		"member without hosts":   {Kind: KindMember, Name: "m1"},
		"member with role admin": {Kind: KindMember, Name: "m1", Role: RoleAdmin, Hosts: []string{"127.0.0.1"}},
		"client without role":    {Kind: KindClient, Name: "alice"},
		"client role member":     {Kind: KindClient, Name: "alice", Role: RoleMember},
		"integration as admin":   {Kind: KindIntegration, Name: "x", Role: RoleAdmin},
		"node as operator":       {Kind: KindNode, Name: "n3", Role: RoleOperator},
		"node as member":         {Kind: KindNode, Name: "n3", Role: RoleMember},
		"client as node":         {Kind: KindClient, Name: "n3", Role: RoleNode},
		"node with a bad name":   {Kind: KindNode, Name: "N3"},
		"node outlives the CA":   {Kind: KindNode, Name: "n3", Lifetime: 20 * 365 * 24 * time.Hour},
		"unknown kind":           {Kind: "robot", Name: "r", Role: RoleViewer},
		"bad name":               {Kind: KindClient, Name: "Alice!", Role: RoleViewer},
		"bad host":               {Kind: KindMember, Name: "m1", Hosts: []string{"a b"}},
		"outlives the CA":        {Kind: KindClient, Name: "c", Role: RoleViewer, Lifetime: 20 * 365 * 24 * time.Hour},
		"negative lifetime":      {Kind: KindClient, Name: "c", Role: RoleViewer, Lifetime: -time.Hour},
		"unknown algorithm":      {Kind: KindClient, Name: "c", Role: RoleViewer, Algorithm: "rsa-512"},
	}
	for name, req := range cases {
		if _, err := ca.Issue(req, now); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
	if _, err := NewCA("Rack 1", ECDSAP256, 0, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad rack name: %v", err)
	}
}

func TestFilesRoundTripAndNeverOverwrite(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t, "rack1", ECDSAP256)
	if err := WriteCA(dir, ca); err != nil {
		t.Fatal(err)
	}
	if err := WriteCA(dir, mustCA(t, "rack1", ECDSAP256)); !errors.Is(err, ErrExists) {
		t.Fatalf("second WriteCA: %v, want ErrExists", err)
	}
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v (%v), want 0600", st.Mode(), err)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Rack != "rack1" || !loaded.Cert.Equal(ca.Cert) {
		t.Fatalf("loaded CA for %q", loaded.Rack)
	}
	is := mustIssue(t, loaded, Request{Kind: KindClient, Name: "alice", Role: RoleAdmin}, now)
	certPath, keyPath, err := WriteIssued(dir, is)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteIssued(dir, is); !errors.Is(err, ErrExists) {
		t.Fatalf("second WriteIssued: %v", err)
	}
	_, id, err := LoadKeyPair(certPath, keyPath)
	if err != nil || id != is.Identity {
		t.Fatalf("LoadKeyPair: %+v %v", id, err)
	}
	// A key that is not the CA's is refused.
	other := t.TempDir()
	if err := WriteCA(other, mustCA(t, "rack1", ECDSAP256)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(other, CAKeyFile), filepath.Join(dir, "other.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "other.key"), filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); !errors.Is(err, ErrInvalid) {
		t.Fatalf("LoadCA with a foreign key: %v", err)
	}
	// Garbage is a clear error, not a panic.
	if err := os.WriteFile(filepath.Join(dir, "junk.crt"), []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCert(filepath.Join(dir, "junk.crt")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ReadCert(junk): %v", err)
	}
}

func TestRevocations(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t, "rack1", ECDSAP256)
	a := mustIssue(t, ca, Request{Kind: KindMember, Name: "m1", Hosts: []string{"127.0.0.1"}}, now)
	b := mustIssue(t, ca, Request{Kind: KindMember, Name: "m2", Hosts: []string{"127.0.0.1"}}, now)
	path := filepath.Join(dir, CRLFile)
	empty, err := LoadRevocations(path, ca.Cert, now)
	if err != nil || empty.Len() != 0 || empty.Revoked(a.Cert) {
		t.Fatalf("missing CRL: %v", err)
	}
	r1, pem1, err := ca.Revoke(nil, []*big.Int{a.Cert.SerialNumber}, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRevocations(path, pem1); err != nil {
		t.Fatal(err)
	}
	r2, pem2, err := ca.Revoke(r1, []*big.Int{a.Cert.SerialNumber, b.Cert.SerialNumber}, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Len() != 2 || !r2.Revoked(a.Cert) || !r2.Revoked(b.Cert) {
		t.Fatalf("r2 has %d entries", r2.Len())
	}
	if err := WriteRevocations(path, pem2); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadRevocations(path, ca.Cert, now)
	if err != nil || loaded.Len() != 2 || !errors.Is(loaded.Check(a.Cert), ErrRevoked) {
		t.Fatalf("loaded: %v", err)
	}
	// Signed by another CA, or expired: refused.
	if _, err := LoadRevocations(path, mustCA(t, "rack1", ECDSAP256).Cert, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("CRL of another CA: %v", err)
	}
	if _, err := LoadRevocations(path, ca.Cert, now.Add(DefaultCRLLifetime+time.Hour)); !errors.Is(err, ErrInvalid) {
		t.Errorf("expired CRL: %v", err)
	}
	if _, _, err := ca.Revoke(nil, []*big.Int{big.NewInt(-1)}, 0, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative serial: %v", err)
	}
}

// handshake runs one TLS 1.3 handshake over loopback TCP and returns the
// server's and the client's errors.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, server)
		err = s.HandshakeContext(ctx)
		if err == nil {
			// TLS 1.3: the server checks the client's certificate after
			// the client thinks it is done; read to see the verdict.
			_, err = s.Read(make([]byte, 1))
		}
		done <- err
	}()
	d := tls.Dialer{Config: client}
	conn, clientErr := d.DialContext(ctx, "tcp", ln.Addr().String())
	if clientErr == nil {
		_, _ = conn.Write([]byte{1})
		// The server's verdict on our certificate, if it refused it.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
			clientErr = err
		}
		_ = conn.Close()
	}
	return <-done, clientErr
}

func TestMutualTLS(t *testing.T) {
	ca, err := NewCA("rack1", ECDSAP256, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair := func(is *Issued) tls.Certificate {
		return tls.Certificate{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: is.Key, Leaf: is.Cert}
	}
	member := mustIssue(t, ca, Request{Kind: KindMember, Name: "m1", Hosts: []string{"127.0.0.1", "m1"}}, time.Now())
	alice := mustIssue(t, ca, Request{Kind: KindClient, Name: "alice", Role: RoleOperator}, time.Now())
	revoked := mustIssue(t, ca, Request{Kind: KindClient, Name: "mallory", Role: RoleAdmin}, time.Now())
	expired := mustIssue(t, ca, Request{Kind: KindClient, Name: "old", Role: RoleAdmin, Lifetime: time.Hour}, time.Now().Add(-48*time.Hour))
	integration := mustIssue(t, ca, Request{Kind: KindIntegration, Name: "grafana"}, time.Now())
	otherCA := mustCA(t, "rack1", ECDSAP256)
	stranger := mustIssue(t, otherCA, Request{Kind: KindClient, Name: "alice", Role: RoleAdmin}, time.Now())
	rev, _, err := ca.Revoke(nil, []*big.Int{revoked.Cert.SerialNumber}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	trust := NewTrust(ca.Cert, "rack1", rev)
	server := trust.ServerConfig(pair(member), KindMember, KindClient)
	server.ServerName = "m1"
	clientCfg := func(c *tls.Certificate) *tls.Config {
		cfg := trust.ClientConfig(tls.Certificate{})
		cfg.Certificates = nil
		if c != nil {
			cfg.Certificates = []tls.Certificate{*c}
		}
		cfg.ServerName = "m1"
		return cfg
	}
	ok := func(is *Issued) *tls.Certificate { p := pair(is); return &p }
	cases := []struct {
		name   string
		client *tls.Config
		accept bool
	}{
		{"client of the rack", clientCfg(ok(alice)), true},
		{"member dialling a member", clientCfg(ok(member)), true},
		{"no certificate", clientCfg(nil), false},
		{"certificate from another CA", clientCfg(ok(stranger)), false},
		{"expired certificate", clientCfg(ok(expired)), false},
		{"revoked certificate", clientCfg(ok(revoked)), false},
		{"integration where only members and clients may connect", clientCfg(ok(integration)), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			serr, cerr := handshake(t, server, c.client)
			if c.accept && (serr != nil || cerr != nil) {
				t.Fatalf("refused: server %v, client %v", serr, cerr)
			}
			if !c.accept && serr == nil {
				t.Fatalf("accepted (client err %v)", cerr)
			}
		})
	}
	t.Run("client refuses a server that is not a member", func(t *testing.T) {
		fake := trust.ServerConfig(pair(alice))
		if _, cerr := handshake(t, fake, clientCfg(ok(member))); cerr == nil {
			t.Fatal("client accepted a server with a client certificate")
		}
		if _, err := trust.Peer(alice.Cert, KindMember); !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), "may not connect") {
			t.Fatalf("Peer(client cert, member): %v", err)
		}
		if _, err := NewTrust(ca.Cert, "rack2", nil).Peer(member.Cert); !errors.Is(err, ErrPeer) {
			t.Fatalf("a member of rack1 accepted by rack2's trust: %v", err)
		}
	})
	t.Run("revocation takes effect without a restart", func(t *testing.T) {
		r2, _, err := ca.Revoke(rev, []*big.Int{alice.Cert.SerialNumber}, 0, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		trust.SetRevocations(r2)
		defer trust.SetRevocations(rev)
		if serr, _ := handshake(t, server, clientCfg(ok(alice))); !errors.Is(serr, ErrRevoked) && (serr == nil || !strings.Contains(serr.Error(), "revoked")) {
			t.Fatalf("server err %v, want revoked", serr)
		}
	})
}

func x509VerifyOpts(ca *CA) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

func TestTokens(t *testing.T) {
	for _, alg := range []Algorithm{ECDSAP256, Ed25519} {
		ca := mustCA(t, "rack1", alg)
		trust := NewTrust(ca.Cert, "rack1", nil)
		tok, sn, err := ca.IssueToken("dash", RoleViewer, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		id, err := trust.VerifyToken(tok, now.Add(time.Minute))
		if err != nil || id != (Identity{"rack1", KindClient, "dash", RoleViewer}) {
			t.Fatalf("%s: %+v %v", alg, id, err)
		}
		other := mustCA(t, "rack1", alg)
		otherTok, _, err := other.IssueToken("dash", RoleAdmin, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		rack2 := mustCA(t, "rack2", alg)
		rack2Tok, _, err := rack2.IssueToken("dash", RoleAdmin, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		rev, _, err := ca.Revoke(nil, []*big.Int{sn}, 0, now)
		if err != nil {
			t.Fatal(err)
		}
		revokedTrust := NewTrust(ca.Cert, "rack1", rev)
		parts := strings.Split(tok, ".")
		payload := []byte(parts[1])
		mid := len(payload) / 2
		if payload[mid] == 'A' {
			payload[mid] = 'B'
		} else {
			payload[mid] = 'A'
		}
		tampered := parts[0] + "." + string(payload) + "." + parts[2]
		bad := map[string]func() error{
			"expired":          func() error { _, err := trust.VerifyToken(tok, now.Add(2*time.Hour)); return err },
			"another CA":       func() error { _, err := trust.VerifyToken(otherTok, now); return err },
			"another rack":     func() error { _, err := NewTrust(rack2.Cert, "rack1", nil).VerifyToken(rack2Tok, now); return err },
			"revoked":          func() error { _, err := revokedTrust.VerifyToken(tok, now); return err },
			"tampered payload": func() error { _, err := trust.VerifyToken(tampered, now); return err },
			"garbage":          func() error { _, err := trust.VerifyToken("not.a.token", now); return err },
			"unsigned (alg none)": func() error {
				none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
				_, err := trust.VerifyToken(none, now)
				return err
			},
			"too long": func() error { _, err := trust.VerifyToken(strings.Repeat("a", MaxTokenBytes+1), now); return err },
		}
		for name, f := range bad {
			if err := f(); !errors.Is(err, ErrToken) {
				t.Errorf("%s %s: err %v, want ErrToken", alg, name, err)
			}
		}
		if _, _, err := ca.IssueToken("dash", RoleMember, time.Hour, now); !errors.Is(err, ErrInvalid) {
			t.Errorf("a token with role member: %v", err)
		}
	}
}

func TestWatchRevocations(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, CRLFile)
	ca, err := NewCA("rack1", ECDSAP256, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	victim := mustIssue(t, ca, Request{Kind: KindClient, Name: "v", Role: RoleViewer}, time.Now())
	_, empty, err := ca.Revoke(nil, nil, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRevocations(path, empty); err != nil {
		t.Fatal(err)
	}
	trust := NewTrust(ca.Cert, "rack1", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); WatchRevocations(ctx, path, trust, 10*time.Millisecond, nil) }()
	defer func() { cancel(); <-done }()

	_, revoked, err := ca.Revoke(nil, []*big.Int{victim.Cert.SerialNumber}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRevocations(path, revoked); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if _, err := trust.Peer(victim.Cert); !errors.Is(err, ErrPeer) {
			return errors.New("revocation not picked up yet")
		}
		return nil
	})
	// A list signed by someone else is refused; the revocation stays.
	other := mustCA(t, "rack1", ECDSAP256)
	_, forged, err := other.Revoke(nil, nil, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRevocations(path, forged); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := trust.Peer(victim.Cert); !errors.Is(err, ErrPeer) {
		t.Fatal("a forged, empty revocation list un-revoked a certificate")
	}
}

// TestNodeCertificate: a node's certificate is for client authentication
// only (it serves nothing), names no hosts, and lives a year by default.
func TestNodeCertificate(t *testing.T) {
	ca := mustCA(t, "rack1", ECDSAP256)
	is := mustIssue(t, ca, Request{Kind: KindNode, Name: "n3", Hosts: []string{"10.0.0.3", "n3.lan"}}, now)
	if got := is.Cert.ExtKeyUsage; len(got) != 1 || got[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ext key usage %v, want client auth only", got)
	}
	if len(is.Cert.DNSNames)+len(is.Cert.IPAddresses) != 0 {
		t.Errorf("a node certificate names hosts: %v %v", is.Cert.DNSNames, is.Cert.IPAddresses)
	}
	if got := is.Cert.NotAfter.Sub(now); got != DefaultNodeLifetime {
		t.Errorf("lifetime %v, want %v", got, DefaultNodeLifetime)
	}
	if got := is.Identity.SPIFFEID().String(); got != "spiffe://racklet.rack1/node/n3" {
		t.Errorf("SPIFFE ID %s", got)
	}
	// The TLS check of a peer knows the kind: a member-only endpoint
	// refuses it, an any-kind one takes it.
	trust := NewTrust(ca.Cert, "rack1", nil)
	if _, err := trust.Peer(is.Cert, KindMember, KindClient, KindIntegration); !errors.Is(err, ErrPeer) {
		t.Errorf("a node accepted where only members, clients and integrations may connect: %v", err)
	}
	if id, err := trust.Peer(is.Cert); err != nil || id != is.Identity {
		t.Errorf("Peer(node) = %+v, %v", id, err)
	}
}

// TestKindsAndRoles: every kind and role parses back from its name; the
// fixed roles are the ones Validate insists on; unknown names are refused.
func TestKindsAndRoles(t *testing.T) {
	for _, k := range Kinds() {
		got, err := ParseKind(string(k))
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %q, %v", k, got, err)
		}
		role, fixed := k.FixedRole()
		if fixed != (k != KindClient) {
			t.Errorf("%s: fixed role %v", k, fixed)
		}
		if fixed {
			if err := (Identity{Rack: "rack1", Kind: k, Name: "x", Role: role}).Validate(); err != nil {
				t.Errorf("%s with its fixed role %s: %v", k, role, err)
			}
		}
		// Every role but the kind's own is refused (clients: but theirs).
		for _, r := range Roles() {
			err := Identity{Rack: "rack1", Kind: k, Name: "x", Role: r}.Validate()
			ok := r == role || (k == KindClient && (r == RoleViewer || r == RoleOperator || r == RoleAdmin))
			if ok != (err == nil) {
				t.Errorf("Validate(%s with role %s) = %v", k, r, err)
			}
		}
		// The SPIFFE ID round-trips with the kind.
		id := Identity{Rack: "rack1", Kind: k, Name: "x"}
		rack, kind, name, err := ParseSPIFFEID(id.SPIFFEID().String())
		if err != nil || rack != "rack1" || kind != k || name != "x" {
			t.Errorf("SPIFFE ID of %s: %q %q %q %v", k, rack, kind, name, err)
		}
	}
	for _, r := range Roles() {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	if len(Kinds()) != 4 || len(Roles()) != 6 {
		t.Errorf("kinds %v, roles %v: update this test, the docs and api.rank", Kinds(), Roles())
	}
	for _, bad := range []string{"", "robot", "Node", "node ", "root"} {
		if _, err := ParseKind(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseKind(%q): %v", bad, err)
		}
		if _, err := ParseRole(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseRole(%q): %v", bad, err)
		}
	}
}
