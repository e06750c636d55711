package presence_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/internal/testutil"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/reconcilers/power"
	"github.com/racklet/rack/reconcilers/presence"
	"github.com/racklet/rack/sim"
)

const testTimeout = 15 * time.Second

var quiet = slog.New(slog.DiscardHandler)

type harness struct {
	t    *testing.T
	log  *eventlog.Mem
	rack *sim.Rack
}

// newHarness starts the power and presence reconcilers on a simulated rack
// of 4 slots; before they run, setup may append events.
func newHarness(t *testing.T, sc sim.Config, pc presence.Config, setup func(h *harness, pc *presence.Config)) *harness {
	t.Helper()
	log := eventlog.NewMem(0)
	t.Cleanup(func() { _ = log.Close() })
	sc.Slots, sc.Logger = 4, quiet
	rack, err := sim.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rack.Close() })
	h := &harness{t: t, log: log, rack: rack}
	if setup != nil {
		setup(h, &pc)
	}
	pr, err := power.New(power.Config{Log: log, Backplane: rack.Backplane(), Rack: "rack1", Member: "m1",
		ObserveInterval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	pc.Log, pc.Backplane, pc.Rack, pc.Member, pc.Logger, pc.Interval = log, rack.Backplane(), "rack1", "m1", quiet, 20*time.Millisecond
	pres, err := presence.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := reconcilers.New(reconcilers.Config{Log: log, Leadership: reconcilers.NewLeaderSwitch(true), Logger: quiet,
		Backoff: reconcilers.Backoff{Base: 10 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: 0.2}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []reconcilers.Reconciler{pr, pres} {
		if err := rt.Register(r); err != nil {
			t.Fatal(err)
		}
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
	return h
}

func (h *harness) append(typ events.Type, subject string, p events.Payload) uint64 {
	h.t.Helper()
	ev, err := events.New(events.Source("rack1", "test"), typ, subject, p)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := h.log.Append(context.Background(), ev)
	if err != nil {
		h.t.Fatal(err)
	}
	return out[0].Sequence
}

func (h *harness) state() *state.State {
	h.t.Helper()
	st, err := h.log.State(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *harness) events(subject string, types ...events.Type) []events.Event {
	h.t.Helper()
	evs, err := h.log.Read(context.Background(), 1, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []events.Event
	for _, ev := range evs {
		keep := len(types) == 0
		for _, t := range types {
			keep = keep || ev.Type == t
		}
		if ev.Subject == subject && keep {
			out = append(out, ev)
		}
	}
	return out
}

// waitNode waits until f accepts node name (nil if not registered).
func (h *harness) waitNode(name string, f func(n *state.Node) error) {
	h.t.Helper()
	testutil.WaitFor(h.t, testTimeout, func() error { return f(h.state().Nodes[name]) })
}

func TestConfig(t *testing.T) {
	log := eventlog.NewMem(0)
	defer log.Close()
	rack, err := sim.New(sim.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	good := presence.Config{Log: log, Backplane: rack.Backplane(), Rack: "rack1", Member: "m1"}
	for _, tt := range []struct {
		name   string
		change func(*presence.Config)
	}{
		{"no log", func(c *presence.Config) { c.Log = nil }},
		{"no backplane", func(c *presence.Config) { c.Backplane = nil }},
		{"bad member", func(c *presence.Config) { c.Member = "M1" }},
		{"negative grace", func(c *presence.Config) { c.MemberGrace = -time.Second }},
		{"cycle by default", func(c *presence.Config) { c.DefaultPower = events.PowerCycle }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			if _, err := presence.New(c); !errors.Is(err, presence.ErrInvalid) {
				t.Fatalf("New = %v, want ErrInvalid", err)
			}
		})
	}
	r, err := presence.New(good)
	if err != nil {
		t.Fatal(err)
	}
	names, err := r.List(context.Background())
	if err != nil || len(names) != 5 || names[0] != "slot-1" || names[4] != "slot-5" {
		t.Errorf("List = %v, %v", names, err)
	}
}

// TestInsert: units found in slots with no node are registered, powered
// as the default says; a unit inserted into an empty slot later too.
func TestInsert(t *testing.T) {
	for _, tt := range []struct {
		name  string
		power events.PowerState
	}{
		{"default on", ""},
		{"default off", events.PowerOff},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := events.PowerOn
			if tt.power != "" {
				want = tt.power
			}
			h := newHarness(t, sim.Config{Empty: []int{3, 4}}, presence.Config{DefaultPower: tt.power}, nil)
			for _, name := range []string{"n1", "n2"} {
				h.waitNode(name, func(n *state.Node) error {
					if n == nil || !n.Present || n.Desired != want || n.Observed != want {
						return fmt.Errorf("node %s: %+v", name, n)
					}
					return nil
				})
			}
			if n := h.state().Nodes["n3"]; n != nil {
				t.Fatalf("empty slot 3 has node %+v", n)
			}

			if err := h.rack.InsertUnit(3); err != nil {
				t.Fatal(err)
			}
			h.waitNode("n3", func(n *state.Node) error {
				if n == nil || n.Slot != 3 || !n.Present || n.Desired != want || n.Observed != want {
					return fmt.Errorf("n3: %+v", n)
				}
				return nil
			})
			u, err := h.rack.Unit(3)
			if err != nil || string(u.Power) != string(want) {
				t.Errorf("unit 3: %+v, %v", u, err)
			}
			evs := h.events("n3", events.NodeRegistered, events.NodeInserted, events.NodePowerDesired)
			if len(evs) != 3 || evs[0].Type != events.NodeRegistered || evs[1].Type != events.NodeInserted || evs[2].Type != events.NodePowerDesired {
				t.Fatalf("events of n3: %+v", evs)
			}
			for _, ev := range evs {
				if ev.Actor != presence.Actor {
					t.Errorf("event %d %s actor %q", ev.Sequence, ev.Type, ev.Actor)
				}
			}
			if evs[2].Sequence != evs[0].Sequence+2 {
				t.Errorf("registration not in one batch: sequences %d, %d, %d", evs[0].Sequence, evs[1].Sequence, evs[2].Sequence)
			}
		})
	}
}

// TestRemove: a unit pulled out removes its node; a node registered for
// an empty slot before its unit arrives is left alone, and marked present
// when the unit is inserted.
func TestRemove(t *testing.T) {
	h := newHarness(t, sim.Config{StartOn: true, Empty: []int{4}}, presence.Config{}, func(h *harness, _ *presence.Config) {
		h.append(events.NodeRegistered, "spare", &events.NodeRegisteredData{Slot: 4})
	})
	h.waitNode("n2", func(n *state.Node) error {
		if n == nil || !n.Present {
			return fmt.Errorf("n2: %+v", n)
		}
		return nil
	})
	if err := h.rack.RemoveUnit(2); err != nil {
		t.Fatal(err)
	}
	h.waitNode("n2", func(n *state.Node) error {
		if n != nil {
			return fmt.Errorf("n2 still registered: %+v", n)
		}
		return nil
	})
	removed := h.events("n2", events.NodeRemoved)
	if len(removed) != 1 || removed[0].Actor != presence.Actor {
		t.Fatalf("node.removed: %+v", removed)
	}
	if n := h.state().Nodes["spare"]; n == nil || n.Present {
		t.Fatalf("spare, registered for empty slot 4: %+v", n)
	}
	if err := h.rack.InsertUnit(4); err != nil {
		t.Fatal(err)
	}
	h.waitNode("spare", func(n *state.Node) error {
		if n == nil || !n.Present {
			return fmt.Errorf("spare: %+v", n)
		}
		return nil
	})
	if n := h.state().Nodes["n4"]; n != nil {
		t.Errorf("slot 4 registered twice: %+v", n)
	}
}

// recordMembers removes members by recording member.left in the log, as
// raftlog's membership sync does after a Raft configuration change.
type recordMembers struct {
	log eventlog.Log
	mu  sync.Mutex
	at  map[string]time.Time
}

func (m *recordMembers) RemoveMember(ctx context.Context, name string) error {
	ev, err := events.New(events.Source("rack1", "m1"), events.MemberLeft, name, &events.MemberLeftData{Reason: "removed from the raft configuration"})
	if err != nil {
		return err
	}
	if _, err := m.log.Append(ctx, ev); err != nil {
		return err
	}
	m.mu.Lock()
	m.at[name] = time.Now()
	m.mu.Unlock()
	return nil
}

// TestMemberHostRemoved: pulling the unit of a member's node makes the
// quorum guard count the member down at once, and removes the member
// after the grace period; a member whose unit is back in time stays.
func TestMemberHostRemoved(t *testing.T) {
	h := newHarness(t, sim.Config{StartOn: true}, presence.Config{MemberGrace: time.Hour,
		MemberOf: func(slot int) string {
			if slot <= 3 {
				return fmt.Sprintf("m%d", slot)
			}
			return ""
		}}, func(h *harness, pc *presence.Config) {
		pc.Members = &recordMembers{log: h.log, at: map[string]time.Time{}}
		for i := 1; i <= 3; i++ {
			m := fmt.Sprintf("m%d", i)
			h.append(events.MemberJoined, m, &events.MemberJoinedData{Address: m, Voter: true})
		}
	})
	h.waitNode("n3", func(n *state.Node) error {
		if n == nil || n.Member != "m3" || !n.Present || n.Observed != events.PowerOn {
			return fmt.Errorf("n3: %+v", n)
		}
		return nil
	})
	if err := h.rack.RemoveUnit(3); err != nil {
		t.Fatal(err)
	}
	h.waitNode("n3", func(n *state.Node) error {
		if n != nil {
			return fmt.Errorf("n3 still registered")
		}
		return nil
	})
	st := h.state()
	g := st.Members["m3"].HostGone
	if g == nil || g.Node != "n3" || g.Slot != 3 {
		t.Fatalf("m3 host gone: %+v", g)
	}
	if err := st.QuorumGuard("n2"); !errors.Is(err, state.ErrQuorumGuard) {
		t.Errorf("guard for n2 with m3's unit pulled out: %v, want a refusal", err)
	}
	// Back within the grace period: the member stays.
	if err := h.rack.InsertUnit(3); err != nil {
		t.Fatal(err)
	}
	h.waitNode("n3", func(n *state.Node) error {
		if n == nil || n.Member != "m3" || n.Observed != events.PowerOn {
			return fmt.Errorf("n3: %+v", n)
		}
		return nil
	})
	if g := h.state().Members["m3"].HostGone; g != nil {
		t.Errorf("m3's host is back, but HostGone = %+v", g)
	}
	if err := h.state().QuorumGuard("n2"); err != nil {
		t.Errorf("guard for n2 with m3 back: %v", err)
	}
}

// TestMemberRemovedAfterGrace: a member whose unit stays out is removed
// once the grace period has passed since its node's removal, not before;
// the quorum guard counts it down meanwhile.
func TestMemberRemovedAfterGrace(t *testing.T) {
	grace := 300 * time.Millisecond
	var members *recordMembers
	h := newHarness(t, sim.Config{StartOn: true}, presence.Config{MemberGrace: grace, MemberOf: func(slot int) string { return fmt.Sprintf("m%d", slot) }},
		func(h *harness, pc *presence.Config) {
			members = &recordMembers{log: h.log, at: map[string]time.Time{}}
			pc.Members = members
			for i := 1; i <= 4; i++ {
				m := fmt.Sprintf("m%d", i)
				h.append(events.MemberJoined, m, &events.MemberJoinedData{Address: m, Voter: true})
			}
		})
	h.waitNode("n4", func(n *state.Node) error {
		if n == nil || n.Member != "m4" || !n.Present {
			return fmt.Errorf("n4: %+v", n)
		}
		return nil
	})
	if err := h.rack.RemoveUnit(4); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, testTimeout, func() error {
		if m, ok := h.state().Members["m4"]; ok {
			return fmt.Errorf("m4 still a member (host gone %+v)", m.HostGone)
		}
		return nil
	})
	removed := h.events("n4", events.NodeRemoved)
	if len(removed) != 1 {
		t.Fatalf("node.removed of n4: %+v", removed)
	}
	members.mu.Lock()
	at := members.at["m4"]
	members.mu.Unlock()
	if gone := removed[0].Time; at.Sub(gone) < grace {
		t.Errorf("m4 removed %v after its node, before the grace period of %v", at.Sub(gone), grace)
	}
	for _, m := range []string{"m1", "m2", "m3"} {
		if _, ok := h.state().Members[m]; !ok {
			t.Errorf("member %s removed too", m)
		}
	}
}
