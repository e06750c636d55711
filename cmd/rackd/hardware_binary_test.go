package main

import (
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

// TestBinaryHardwareSim runs rackd proper with a driver (--driver sim: a
// simulated rack inside the process), its settings from a --config file
// with hardware keys beside the member's: the presence reconciler
// registers every slot's unit, rackctl powers one off through the power
// reconciler, the fan reconciler records the configured policy and
// publishes telemetry, and SIGTERM stops reconcilers and member with
// status 0. Bad hardware settings are refused before anything starts.
func TestBinaryHardwareSim(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	goBin := findGo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	dir := t.TempDir()
	bin := buildBinaries(ctx, t, goBin, filepath.Join(dir, "bin"))

	// Refused settings: a clear error, exit status 1, nothing started.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--driver", "gpio"}, `invalid driver "gpio"`},
		{[]string{"--driver", "sim", "--slots", "4", "--slot-members", "9=m1"}, "invalid slot-members 9=m1"},
		{[]string{"--driver", "sim", "--default-power", "maybe"}, `invalid default-power "maybe"`},
		{[]string{"--driver", "sim", "--firmware-dir", dir}, "firmware-dir needs at least one firmware-pubkey"},
		{[]string{"--driver", "sim", "--observe-interval", "-1s"}, "invalid observe-interval"},
		{[]string{"--driver", "sim", "--boot-key", filepath.Join(dir, "missing.pub")}, "boot-key: "},
		{[]string{"--driver", "sim", "--fan-policy", filepath.Join(dir, "missing.yaml")}, "reading the fan policy"},
		{[]string{"--driver", "smbus", "--i2c-bus", "/dev/i2c-racklet-missing"}, `driver smbus: opening the I2C bus "/dev/i2c-racklet-missing"`},
	} {
		args := append([]string{"--name", "m1", "--data-dir", filepath.Join(dir, "refused"), "--insecure", "--bootstrap"}, tc.args...)
		out, err := exec.CommandContext(ctx, bin.rackd, args...).CombinedOutput()
		if code := exitCode(err); code != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("rackd %s: exit %d, output %q; want 1 and %q", strings.Join(tc.args, " "), code, out, tc.want)
		}
	}

	ports := freePorts(t, 3)
	policy := filepath.Join(dir, "fans.yaml")
	if err := os.WriteFile(policy, []byte("mode: curve\ncurve:\n  - {celsius: 31, duty: 20}\n  - {celsius: 61, duty: 100}\ncriticalCelsius: 87\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "rackd.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `name: m1
rack: rack1
data-dir: %s
http: %s
nats: %s
nats-cluster: %s
bootstrap: true
insecure: true
driver: sim
slots: 4
slot-members: {"1": m1}
observe-interval: 200ms
presence-interval: 200ms
fan-interval: 200ms
fan-policy: %s
`, filepath.Join(dir, "data"), ports[0], ports[1], ports[2], policy), 0o644); err != nil {
		t.Fatal(err)
	}
	rk := &binRack{t: t, bin: bin, dir: dir, procs: map[string]*rackdProc{}}
	t.Cleanup(rk.cleanup)
	p := &rackdProc{name: "m1", http: ports[0], args: []string{"--config", config, "--log-level", "info"}}
	rk.procs[p.name] = p
	rk.order = append(rk.order, p.name)
	rk.start(ctx, p)
	server := "http://" + p.http

	// Presence registers the four units; slot 1's hosts m1.
	waitFor(ctx, t, 60*time.Second, func() error {
		if ok, st := rk.exited(p.name); ok {
			t.Fatalf("rackd exited: %s", st)
		}
		out, err := rk.rackctl(ctx, server, "get", "nodes", "-o", "json")
		if err != nil {
			return err
		}
		var nodes []state.Node
		if err := json.Unmarshal(out, &nodes); err != nil {
			return fmt.Errorf("decoding nodes: %v", err)
		}
		if len(nodes) != 4 {
			return fmt.Errorf("%d nodes registered, want 4", len(nodes))
		}
		for _, n := range nodes {
			if n.Observed != events.PowerOn {
				return fmt.Errorf("node %s observed %q, want on", n.Name, n.Observed)
			}
			if want := map[bool]string{true: "m1", false: ""}[n.Slot == 1]; n.Member != want {
				return fmt.Errorf("node %s (slot %d) hosts member %q, want %q", n.Name, n.Slot, n.Member, want)
			}
		}
		return nil
	})

	if _, err := rk.rackctl(ctx, server, "power", "off", "n3", "--wait"); err != nil {
		t.Fatal(err)
	}
	out, err := rk.rackctl(ctx, server, "get", "node", "n3", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var n3 state.Node
	if err := json.Unmarshal(out, &n3); err != nil {
		t.Fatal(err)
	}
	if n3.Desired != events.PowerOff || n3.Observed != events.PowerOff || n3.LastAction == nil {
		t.Fatalf("n3 after power off --wait: desired %q, observed %q, last action %+v; want off, off and the action", n3.Desired, n3.Observed, n3.LastAction)
	}

	// The fan policy from the file is in the log, and telemetry flows.
	waitFor(ctx, t, 30*time.Second, func() error {
		out, err := rk.rackctl(ctx, server, "get", "fans", "-o", "json")
		if err != nil {
			return err
		}
		s := string(out)
		if !strings.Contains(s, `"criticalCelsius": 87`) || !strings.Contains(s, `"celsius": 61`) {
			return fmt.Errorf("get fans does not show the configured curve: %s", s)
		}
		if !strings.Contains(s, `"rpm"`) {
			return fmt.Errorf("get fans shows no fan readings yet: %s", s)
		}
		return nil
	})

	rk.terminate(p.name)
	b, err := os.ReadFile(p.stderrPaths[len(p.stderrPaths)-1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `msg="driving the rack's hardware" driver=sim slots=4`) {
		t.Errorf("rackd's log does not say it drives the hardware:\n%s", b)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
