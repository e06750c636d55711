package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/pki"
)

func TestPKICommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	out := filepath.Join(t.TempDir(), "certs")
	steps := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"init without --rack", []string{"pki", "init", "--dir", dir}, 2, nil, []string{"--rack"}},
		{"init with a bad rack name", []string{"pki", "init", "--dir", dir, "--rack", "Rack One"}, 1, nil, []string{"rack"}},
		{"init", []string{"pki", "init", "--dir", dir, "--rack", "rack1"}, 0, []string{"CA for rack rack1", "ca.crt", "ca.key", "ca.crl"}, nil},
		{"init never replaces a CA", []string{"pki", "init", "--dir", dir, "--rack", "rack1"}, 1, nil, []string{"file exists"}},
		{"issue a member", []string{"pki", "issue", "member", "m1", "--dir", dir, "--host", "127.0.0.1,m1.rack1.lan"}, 0, []string{"spiffe://racklet.rack1/member/m1 (role member)", "m1.crt", "m1.key"}, nil},
		{"member without hosts", []string{"pki", "issue", "member", "m2", "--dir", dir}, 2, nil, []string{"--host"}},
		{"client without role", []string{"pki", "issue", "client", "alice", "--dir", dir}, 2, nil, []string{"--role"}},
		{"client with a bad role", []string{"pki", "issue", "client", "alice", "--dir", dir, "--role", "root"}, 2, nil, []string{"viewer, operator or admin"}},
		{"issue a client elsewhere", []string{"pki", "issue", "client", "alice", "--dir", dir, "--role", "operator", "--out", out}, 0, []string{"spiffe://racklet.rack1/client/alice (role operator)"}, nil},
		{"issue an integration", []string{"pki", "issue", "integration", "grafana", "--dir", dir, "--algorithm", "ed25519"}, 0, []string{"role integration"}, nil},
		{"unknown kind", []string{"pki", "issue", "robot", "r2", "--dir", dir}, 2, nil, []string{"invalid kind", "member, client, integration or node"}},
		{"issue a node", []string{"pki", "issue", "node", "n3", "--dir", dir, "--out", out}, 0, []string{"spiffe://racklet.rack1/node/n3 (role node)", "n3.crt", "n3.key"}, nil},
		{"a node takes no role", []string{"pki", "issue", "node", "n4", "--dir", dir, "--role", "operator"}, 2, nil, []string{"a node's role is always node"}},
		{"a node with a bad name", []string{"pki", "issue", "node", "N4", "--dir", dir}, 2, nil, []string{"[a-z0-9-]{1,63}"}},
		{"show a node", []string{"pki", "show", filepath.Join(out, "n3.crt")}, 0, []string{"kind node", "name n3", "role node"}, nil},
		{"show", []string{"pki", "show", filepath.Join(out, "alice.crt")}, 0, []string{"role operator", "kind client", "name alice"}, nil},
		{"show the CA", []string{"pki", "show", filepath.Join(dir, "ca.crt")}, 0, []string{`CA "racklet rack1 CA"`}, nil},
		{"token", []string{"pki", "token", "dash", "--role", "viewer", "--dir", dir}, 0, []string{"eyJ"}, []string{"token for client dash (role viewer), serial "}},
		{"token with a bad role", []string{"pki", "token", "dash", "--role", "member", "--dir", dir}, 2, nil, []string{"viewer, operator or admin"}},
		{"client token by kind", []string{"pki", "token", "client", "dash3", "--role", "admin", "--dir", dir}, 0, []string{"eyJ"}, []string{"token for client dash3 (role admin), serial "}},
		{"client token without a role", []string{"pki", "token", "client", "dash3", "--dir", dir}, 2, nil, []string{"--role"}},
		{"node token", []string{"pki", "token", "node", "n3", "--dir", dir}, 0, []string{"eyJ"}, []string{"token for node n3 (role node), serial "}},
		{"a node token takes no role", []string{"pki", "token", "node", "n3", "--role", "admin", "--dir", dir}, 2, nil, []string{"a node's role is always node"}},
		{"no token for a member", []string{"pki", "token", "member", "m1", "--dir", dir}, 2, nil, []string{"tokens are for client or node"}},
		{"token with too many arguments", []string{"pki", "token", "node", "n3", "n4", "--dir", dir}, 2, nil, []string{"[client|node] NAME"}},
		{"revoke by file", []string{"pki", "revoke", "--dir", dir, filepath.Join(out, "alice.crt")}, 0, []string{"1 revoked"}, nil},
		{"revoke a bad serial", []string{"pki", "revoke", "--dir", dir, "zz"}, 2, nil, []string{"hex serial"}},
		{"revoke nothing", []string{"pki", "revoke", "--dir", dir}, 2, nil, []string{"at least one"}},
	}
	for _, s := range steps {
		stdout, stderr, code := rackctl(t, s.args...)
		if code != s.code {
			t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", s.name, code, s.code, stdout, stderr)
		}
		for _, want := range s.stdout {
			if !strings.Contains(stdout, want) {
				t.Errorf("%s: stdout lacks %q:\n%s", s.name, want, stdout)
			}
		}
		for _, want := range s.stderr {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", s.name, want, stderr)
			}
		}
	}
	// What the commands wrote is what rackd will load.
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, id, err := pki.LoadKeyPair(filepath.Join(dir, "m1.crt"), filepath.Join(dir, "m1.key"))
	if err != nil || id.Kind != pki.KindMember || id.Name != "m1" {
		t.Fatalf("m1: %+v %v", id, err)
	}
	if st, err := os.Stat(filepath.Join(out, "alice.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("alice.key: %v %v", st, err)
	}
	rev, err := pki.LoadRevocations(filepath.Join(dir, pki.CRLFile), ca.Cert, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	alice, err := pki.ReadCert(filepath.Join(out, "alice.crt"))
	if err != nil {
		t.Fatal(err)
	}
	m1, err := pki.ReadCert(filepath.Join(dir, "m1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !rev.Revoked(alice) || rev.Revoked(m1) {
		t.Fatalf("revocation list: alice %v, m1 %v", rev.Revoked(alice), rev.Revoked(m1))
	}
	// The token verifies against the CA.
	stdout, _, code := rackctl(t, "pki", "token", "dash2", "--role", "operator", "--dir", dir)
	if code != 0 {
		t.Fatal("token failed")
	}
	id, err = pki.NewTrust(ca.Cert, "rack1", nil).VerifyToken(strings.TrimSpace(stdout), time.Now())
	if err != nil || id.Name != "dash2" || id.Role != pki.RoleOperator {
		t.Fatalf("token: %+v %v", id, err)
	}
	// Revoking by serial adds to the list.
	if _, stderr, code := rackctl(t, "pki", "revoke", "--dir", dir, m1.SerialNumber.Text(16)); code != 0 {
		t.Fatalf("revoke by serial: %s", stderr)
	}
	rev, err = pki.LoadRevocations(filepath.Join(dir, pki.CRLFile), ca.Cert, time.Now())
	if err != nil || rev.Len() != 2 || !rev.Revoked(m1) {
		t.Fatalf("after revoking m1: %d entries, %v", rev.Len(), err)
	}
}

// TestPKINodeCredentials: what `pki issue node` and `pki token node`
// write is a node identity that verifies against the CA, and the token
// is revoked by the serial the command printed.
func TestPKINodeCredentials(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if _, stderr, code := rackctl(t, "pki", "init", "--dir", dir, "--rack", "rack1"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	if _, stderr, code := rackctl(t, "pki", "issue", "node", "n3", "--dir", dir); code != 0 {
		t.Fatalf("issue node: %s", stderr)
	}
	pair, id, err := pki.LoadKeyPair(filepath.Join(dir, "n3.crt"), filepath.Join(dir, "n3.key"))
	if err != nil || id != (pki.Identity{Rack: "rack1", Kind: pki.KindNode, Name: "n3", Role: pki.RoleNode}) {
		t.Fatalf("n3.crt: %+v %v", id, err)
	}
	if days := pair.Leaf.NotAfter.Sub(pair.Leaf.NotBefore).Hours() / 24; days < 365 || days > 366 {
		t.Errorf("a node certificate for %.1f days, want 365", days)
	}
	if st, err := os.Stat(filepath.Join(dir, "n3.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("n3.key: %v %v", st, err)
	}
	stdout, stderr, code := rackctl(t, "pki", "token", "node", "n3", "--dir", dir, "--days", "7")
	if code != 0 {
		t.Fatalf("token node: %s", stderr)
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	trust := pki.NewTrust(ca.Cert, "rack1", nil)
	tok := strings.TrimSpace(stdout)
	id, err = trust.VerifyToken(tok, time.Now())
	if err != nil || id != (pki.Identity{Rack: "rack1", Kind: pki.KindNode, Name: "n3", Role: pki.RoleNode}) {
		t.Fatalf("node token: %+v %v", id, err)
	}
	if _, err := trust.VerifyToken(tok, time.Now().Add(8*24*time.Hour)); err == nil {
		t.Error("a 7-day node token verified after 8 days")
	}
	_, serial, ok := strings.Cut(strings.TrimSpace(stderr), "serial ")
	if !ok {
		t.Fatalf("no serial on stderr: %q", stderr)
	}
	if _, stderr, code := rackctl(t, "pki", "revoke", "--dir", dir, serial); code != 0 {
		t.Fatalf("revoke the node token: %s", stderr)
	}
	rev, err := pki.LoadRevocations(filepath.Join(dir, pki.CRLFile), ca.Cert, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.NewTrust(ca.Cert, "rack1", rev).VerifyToken(tok, time.Now()); !errors.Is(err, pki.ErrToken) {
		t.Fatalf("a revoked node token: %v", err)
	}
	// --out writes the token to a new file of mode 0600, never replaced.
	file := filepath.Join(t.TempDir(), "token")
	stdout, stderr, code = rackctl(t, "pki", "token", "node", "n3", "--dir", dir, "--out", file)
	if code != 0 || stdout != "" || !strings.Contains(stderr, "written to "+file) {
		t.Fatalf("token --out: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := trust.VerifyToken(strings.TrimSpace(string(b)), time.Now()); err != nil || id.Kind != pki.KindNode {
		t.Fatalf("token from the file: %+v %v", id, err)
	}
	if _, stderr, code := rackctl(t, "pki", "token", "node", "n3", "--dir", dir, "--out", file); code == 0 || !strings.Contains(stderr, "exists") {
		t.Fatalf("token --out over an existing file: exit %d, %s", code, stderr)
	}
	if b2, _ := os.ReadFile(file); string(b2) != string(b) {
		t.Fatal("the token file was replaced")
	}
}
