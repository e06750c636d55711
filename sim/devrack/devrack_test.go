package devrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/sim"

	"github.com/racklet/rack/internal/testutil"
)

func startRack(t *testing.T) *Rack {
	t.Helper()
	level := slog.LevelWarn + 4
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Start(ctx, Config{
		Dir: t.TempDir(), Seed: 1, ObserveInterval: 100 * time.Millisecond, BudgetWatts: 30,
		Timings: fastBoot, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("closing the rack: %v", err)
		}
	})
	return r
}

var fastBoot = sim.Timings{Firmware: 50 * time.Millisecond, Bootstrap: 50 * time.Millisecond, OS: 100 * time.Millisecond}

// converged checks through the API that every node's observed power is
// its desired power.
func converged(ctx context.Context, r *Rack) error {
	ms := r.Members()
	if len(ms) == 0 {
		return errors.New("no member running")
	}
	c, err := client.New(ms[0].APIURL())
	if err != nil {
		return err
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return err
	}
	if len(nodes) != r.Slots() {
		return fmt.Errorf("%d nodes, want %d", len(nodes), r.Slots())
	}
	for _, n := range nodes {
		if n.Desired != n.Observed || n.CyclePending() {
			return fmt.Errorf("%s: desired %q, observed %q", n.Name, n.Desired, n.Observed)
		}
	}
	return nil
}

func TestDevRackPowerAndPulledLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole rack")
	}
	r := startRack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testutil.WaitFor(t, 30*time.Second, func() error { return converged(ctx, r) })

	// An operator turns n4 off through any member.
	c, err := client.New(r.Members()[1].APIURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetPower(ctx, "n4", events.PowerOff, false); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		st, err := r.Sim.Unit(4)
		if err != nil {
			return err
		}
		if st.Power != drivers.PowerOff {
			return fmt.Errorf("unit 4 is %s", st.Power)
		}
		return converged(ctx, r)
	})

	// Pull the power of the leader's unit: its member dies with it, a new
	// leader takes over, and the restored unit's member comes back.
	leader := r.Leader()
	if leader == nil {
		t.Fatal("no leader")
	}
	slot := r.MemberSlot(leader.Name())
	if err := r.Sim.PullSlotPower(slot); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if r.Member(leader.Name()) != nil {
			return fmt.Errorf("%s still runs on a unit without power", leader.Name())
		}
		if l := r.Leader(); l == nil {
			return errors.New("no new leader yet")
		}
		return nil
	})
	if err := r.Sim.RestoreSlotPower(slot); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		if r.Member(leader.Name()) == nil {
			return fmt.Errorf("%s not back", leader.Name())
		}
		return converged(ctx, r)
	})
}
