package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// TestBinaryDevSecureByDefault runs `rackd dev` as a newcomer would (one
// command, secure by default) and rackctl against it with the client
// certificate it generated: the rackctl.env file it writes is all rackctl
// needs. Without that certificate, or without the rack's CA, rackctl is
// refused. SIGTERM shuts the whole simulated rack down with status 0.
func TestBinaryDevSecureByDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	goBin := findGo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	dir := t.TempDir()
	bin := buildBinaries(ctx, t, goBin, filepath.Join(dir, "bin"))
	rk := &binRack{t: t, bin: bin, dir: dir, procs: map[string]*rackdProc{}}
	t.Cleanup(rk.cleanup)
	// A key file that cannot be read stops rackd dev before the rack starts.
	out, err := exec.CommandContext(ctx, bin.rackd, "dev", "--boot-key", filepath.Join(dir, "missing.pub")).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "boot-key: ") {
		t.Fatalf("rackd dev with a missing --boot-key: exit %d, %q; want 1 and the flag named", code, out)
	}

	dataDir := filepath.Join(dir, "dev")
	p := &rackdProc{name: "dev", dataDir: dataDir, args: []string{
		"dev", "--data-dir", dataDir, "--http-port", "0", "--nats-port", "0", "--log-level", "info",
	}}
	rk.procs[p.name] = p
	rk.order = append(rk.order, p.name)
	rk.start(ctx, p)

	// rackd dev writes rackctl.env once the rack is up.
	envFile := filepath.Join(dataDir, "pki", "rackctl.env")
	var env map[string]string
	waitFor(ctx, t, 90*time.Second, func() error {
		if ok, state := rk.exited(p.name); ok {
			t.Fatalf("rackd dev exited: %s", state)
		}
		b, err := os.ReadFile(envFile)
		if err != nil {
			return err
		}
		env, err = parseEnvFile(string(b))
		return err
	})
	for _, k := range []string{"RACK_SERVER", "RACK_CA", "RACK_CERT", "RACK_KEY"} {
		if env[k] == "" {
			t.Fatalf("%s sets no %s: %v", envFile, k, env)
		}
	}
	if !strings.HasPrefix(env["RACK_SERVER"], "https://127.0.0.1:") {
		t.Fatalf("RACK_SERVER=%s, want an https loopback URL", env["RACK_SERVER"])
	}
	if st, err := os.Stat(envFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: mode %v (%v), want 0600: it names the admin's private key", envFile, st.Mode().Perm(), err)
	}

	// With the generated admin certificate: reads and a power command.
	var nodes []state.Node
	waitFor(ctx, t, 60*time.Second, func() error {
		out, err := runRackctl(ctx, bin.rackctl, env, "get", "nodes", "-o", "json")
		if err != nil {
			return err
		}
		nodes = nil
		if err := json.Unmarshal(out, &nodes); err != nil {
			return fmt.Errorf("decoding rackctl get nodes: %v\n%s", err, out)
		}
		if len(nodes) != 5 {
			return fmt.Errorf("rackctl get nodes lists %d nodes, want the 5 of the simulated rack", len(nodes))
		}
		return nil
	})
	if _, err := runRackctl(ctx, bin.rackctl, env, "power", "off", "n5", "--wait"); err != nil {
		t.Fatalf("powering n5 off with the generated certificate: %v", err)
	}
	out, err = runRackctl(ctx, bin.rackctl, env, "get", "node", "n5", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var n5 state.Node
	if err := json.Unmarshal(out, &n5); err != nil {
		t.Fatalf("decoding rackctl get node n5: %v\n%s", err, out)
	}
	if n5.Desired != events.PowerOff || n5.Observed != events.PowerOff {
		t.Fatalf("n5 after power off --wait: desired %q, observed %q; want off and off", n5.Desired, n5.Observed)
	}

	// Without the client certificate, or without the rack's CA: refused.
	noCert := map[string]string{"RACK_SERVER": env["RACK_SERVER"], "RACK_CA": env["RACK_CA"]}
	if _, err := runRackctl(ctx, bin.rackctl, noCert, "get", "nodes"); err == nil {
		t.Fatal("rackctl without a client certificate was served")
	} else if !strings.Contains(err.Error(), "unauthenticated") {
		t.Fatalf("without a client certificate: %v; want the API's unauthenticated answer", err)
	}
	noCA := map[string]string{"RACK_SERVER": env["RACK_SERVER"], "RACK_CERT": env["RACK_CERT"], "RACK_KEY": env["RACK_KEY"]}
	if _, err := runRackctl(ctx, bin.rackctl, noCA, "get", "nodes"); err == nil {
		t.Fatal("rackctl trusting only the system's CAs accepted the rack's self-made CA")
	} else if !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("without the rack's CA: %v; want a certificate verification error", err)
	}

	rk.terminate(p.name)
}

// parseEnvFile reads rackd dev's rackctl.env: one "export K=V K=V" line.
func parseEnvFile(s string) (map[string]string, error) {
	line := strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(line, "export ")
	if !ok {
		return nil, fmt.Errorf("rackctl.env is %q, want one export line", line)
	}
	env := map[string]string{}
	for _, kv := range strings.Fields(rest) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("rackctl.env: %q is not K=V", kv)
		}
		env[k] = v
	}
	return env, nil
}

// runRackctl runs rackctl with only the RACK_* variables in env set (none
// inherited from the test's environment).
func runRackctl(ctx context.Context, rackctl string, env map[string]string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	full := append([]string{"--timeout", "30s"}, args...)
	cmd := exec.CommandContext(ctx, rackctl, full...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RACK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &cliError{args: full, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}
