package cli

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/pki"
)

// TestSecuredControlPlane runs rackctl against an API that requires the
// rack's certificates, with files made by rackctl pki.
func TestSecuredControlPlane(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"pki", "init", "--dir", dir, "--rack", "rack1"},
		{"pki", "issue", "member", "m1", "--dir", dir, "--host", "127.0.0.1"},
		{"pki", "issue", "client", "alice", "--role", "operator", "--dir", dir},
		{"pki", "issue", "client", "bob", "--role", "viewer", "--dir", dir},
	} {
		if _, stderr, code := rackctl(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, stderr)
		}
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	trust := pki.NewTrust(ca.Cert, "rack1", nil)
	memberPair, _, err := pki.LoadKeyPair(filepath.Join(dir, "m1.crt"), filepath.Join(dir, "m1.key"))
	if err != nil {
		t.Fatal(err)
	}
	mem := eventlog.NewMem(0)
	t.Cleanup(func() { _ = mem.Close() })
	srv, err := api.New(api.Config{Rack: "rack1", Member: "m1", Log: mem, Cluster: fakeCluster{}, Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv)
	ts.TLS = api.ServerTLS(trust, memberPair)
	ts.StartTLS()
	t.Cleanup(ts.Close)

	run := func(env map[string]string, args ...string) (string, string, int) {
		var out, errb syncBuffer
		env[ServerEnv] = ts.URL
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		code := Main(ctx, args, &out, &errb, func(k string) string { return env[k] })
		return out.String(), errb.String(), code
	}
	alice := map[string]string{CAEnv: filepath.Join(dir, "ca.crt"), CertEnv: filepath.Join(dir, "alice.crt"), KeyEnv: filepath.Join(dir, "alice.key")}
	bob := map[string]string{CAEnv: filepath.Join(dir, "ca.crt"), CertEnv: filepath.Join(dir, "bob.crt"), KeyEnv: filepath.Join(dir, "bob.key")}
	if _, stderr, code := run(alice, "register", "node", "n1", "--slot", "1"); code != 0 {
		t.Fatalf("operator register: %s", stderr)
	}
	if stdout, stderr, code := run(bob, "get", "nodes"); code != 0 || !strings.Contains(stdout, "n1") {
		t.Fatalf("viewer get nodes: %d %s %s", code, stdout, stderr)
	}
	if _, stderr, code := run(bob, "power", "off", "n1"); code != 1 || !strings.Contains(stderr, "needs role operator") {
		t.Fatalf("viewer power off: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run(map[string]string{CAEnv: filepath.Join(dir, "ca.crt")}, "get", "nodes"); code != 1 || !strings.Contains(stderr, "client certificate") {
		t.Fatalf("no client certificate: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run(map[string]string{}, "get", "nodes"); code != 1 || !strings.Contains(stderr, "certificate") {
		t.Fatalf("not trusting the rack CA: exit %d, %s", code, stderr)
	}
	tok, _, code := rackctl(t, "pki", "token", "dash", "--role", "viewer", "--dir", dir)
	if code != 0 {
		t.Fatal("token")
	}
	if stdout, stderr, code := run(map[string]string{CAEnv: filepath.Join(dir, "ca.crt"), TokenEnv: strings.TrimSpace(tok)}, "get", "nodes"); code != 0 || !strings.Contains(stdout, "n1") {
		t.Fatalf("token get nodes: %d %s", code, stderr)
	}
	if _, stderr, code := run(map[string]string{CertEnv: filepath.Join(dir, "alice.crt")}, "get", "nodes"); code != 2 || !strings.Contains(stderr, "--client-cert and --client-key go together") {
		t.Fatalf("cert without key: exit %d, %s", code, stderr)
	}
	evs, err := mem.Read(context.Background(), 1, 10)
	if err != nil || len(evs) != 1 || evs[0].Actor != "client/alice" {
		t.Fatalf("events %v %v, want one registration by client/alice", evs, err)
	}
}
