package cli

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/reconcilers/power"
	"github.com/racklet/rack/sim"
)

// TestPowerWaitWithReconciler runs `rackctl power … --wait` against the
// real power reconciler driving the simulator, whose power cycle is an
// instant reset: the node is never observed off during a cycle.
func TestPowerWaitWithReconciler(t *testing.T) {
	r := newRack(t)
	quiet := slog.New(slog.DiscardHandler)
	rack, err := sim.New(sim.Config{Slots: 2, StartOn: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rack.Close() })
	pr, err := power.New(power.Config{Log: r.log, Backplane: rack.Backplane(), Rack: "rack1", Member: "m1",
		ObserveInterval: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := reconcilers.New(reconcilers.Config{Log: r.log, Leadership: reconcilers.NewLeaderSwitch(true), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Register(pr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runtime: %v", err)
		}
	})

	for _, c := range []struct{ state, want string }{
		{"cycle", "node n2: power cycle done\n"},
		{"off", "node n2: power off done\n"},
		{"cycle", "node n2: power cycle done\n"}, // from off: powers it on
		{"on", "node n2: power on done\n"},
	} {
		out, errOut, code := r.run(t, "power", c.state, "n2", "--wait", "--wait-timeout", "30s")
		if code != 0 || !strings.HasSuffix(out, c.want) {
			t.Fatalf("power %s: exit %d, stdout %q, stderr %q", c.state, code, out, errOut)
		}
		u, err := rack.Unit(2)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"cycle": "on", "off": "off", "on": "on"}[c.state]; string(u.Power) != want {
			t.Fatalf("after power %s the unit is %s", c.state, u.Power)
		}
	}
}
