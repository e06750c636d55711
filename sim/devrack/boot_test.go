package devrack

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/internal/testutil"
	"github.com/racklet/rack/sim/imagehost"
)

// TestDevRackBootAndHotSwap boots a node from a signed image on the whole
// rack (Raft over NATS, the API, the reconcilers on the leader), then
// pulls out the unit of a member's node: the node is removed at once, the
// member after the grace period; the unit put back is registered, powered
// on, and its member joins the cluster again afresh.
func TestDevRackBootAndHotSwap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole rack")
	}
	images, err := imagehost.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(images.Close)
	level := slog.LevelWarn + 4
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Start(sctx, Config{
		Dir: t.TempDir(), Seed: 1, Slots: 4, ObserveInterval: 100 * time.Millisecond, Timings: fastBoot,
		Boot: BootConfig{Keyring: images.Keyring(), RootCAs: images.Roots(), PollInterval: 20 * time.Millisecond,
			PresenceInterval: 100 * time.Millisecond, MemberGrace: time.Second},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testutil.WaitFor(t, 30*time.Second, func() error { return converged(ctx, r) })
	c := anyClient(t, r)

	// Boot n4 (no member on it) from a signed image.
	img, err := images.Publish("os/good.img", []byte("the rack's OS"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := c.SetBoot(ctx, "n4", api.BootRequest{Source: events.BootNetwork, Image: img.URL, Digest: img.Digest, KeyID: img.KeyID})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		n, err := anyClient(t, r).Node(ctx, "n4")
		if err != nil {
			return err
		}
		if b := n.Boot; b == nil || b.DesiredSequence != ev.Sequence || b.Phase != state.BootReady {
			return fmt.Errorf("n4 boot %+v", b)
		}
		return nil
	})

	// Pull the unit of slot 3 (member m3's node).
	if err := r.Sim.RemoveUnit(3); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		c := anyClient(t, r)
		if _, err := c.Node(ctx, "n3"); err == nil {
			return fmt.Errorf("n3 still registered")
		}
		ms, err := c.Members(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Name == "m3" {
				return fmt.Errorf("m3 still in the raft configuration")
			}
		}
		// The leader's membership sync records member.left after the
		// configuration change, not with it.
		evs, _, err := c.Events(ctx, client.EventQuery{Subject: "m3", Type: "member.left"})
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return fmt.Errorf("no member.left of m3 in the log yet")
		}
		return nil
	})

	// Put it back: registered with its member, powered on, and m3 joins.
	if err := r.Sim.InsertUnit(3); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		c := anyClient(t, r)
		n, err := c.Node(ctx, "n3")
		if err != nil {
			return err
		}
		if n.Member != "m3" || !n.Present || n.Observed != events.PowerOn {
			return fmt.Errorf("n3: %+v", n)
		}
		ms, err := c.Members(ctx)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(ms, func(m api.MemberInfo) bool { return m.Name == "m3" && m.Voter }) {
			return fmt.Errorf("m3 is not a voter again: %+v", ms)
		}
		return converged(ctx, r)
	})
	if got := len(r.Members()); got != 3 {
		t.Errorf("%d members running, want 3", got)
	}
}

// anyClient is a client of a running member.
func anyClient(t *testing.T, r *Rack) *client.Client {
	t.Helper()
	ms := r.Members()
	if len(ms) == 0 {
		t.Fatal("no member running")
	}
	var urls []string
	for _, m := range ms {
		urls = append(urls, m.APIURL())
	}
	c, err := client.New(urls[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddEndpoints(urls[1:]...); err != nil {
		t.Fatal(err)
	}
	return c
}
