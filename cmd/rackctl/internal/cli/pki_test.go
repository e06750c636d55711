package cli

import (
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
		{"unknown kind", []string{"pki", "issue", "robot", "r2", "--dir", dir}, 2, nil, []string{"invalid kind"}},
		{"show", []string{"pki", "show", filepath.Join(out, "alice.crt")}, 0, []string{"role operator", "kind client", "name alice"}, nil},
		{"show the CA", []string{"pki", "show", filepath.Join(dir, "ca.crt")}, 0, []string{`CA "racklet rack1 CA"`}, nil},
		{"token", []string{"pki", "token", "dash", "--role", "viewer", "--dir", dir}, 0, []string{"eyJ"}, []string{"token for client dash (role viewer), serial "}},
		{"token with a bad role", []string{"pki", "token", "dash", "--role", "member", "--dir", dir}, 2, nil, []string{"viewer, operator or admin"}},
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
