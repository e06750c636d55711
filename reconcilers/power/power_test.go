package power

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/sim"

	"github.com/racklet/rack/internal/testutil"
)

func TestConfig(t *testing.T) {
	log := eventlog.NewMem(0)
	defer log.Close()
	rack, err := sim.New(sim.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	good := Config{Log: log, Backplane: rack.Backplane(), Rack: "rack1", Member: "m1"}
	for _, tt := range []struct {
		name   string
		change func(*Config)
	}{
		{"no log", func(c *Config) { c.Log = nil }},
		{"no backplane", func(c *Config) { c.Backplane = nil }},
		{"bad rack", func(c *Config) { c.Rack = "Rack 1" }},
		{"no member", func(c *Config) { c.Member = "" }},
		{"negative interval", func(c *Config) { c.ObserveInterval = -time.Second }},
		{"negative budget", func(c *Config) { c.BudgetWatts = -1 }},
		{"inrush below steady", func(c *Config) { c.InrushWatts = 3 }},
		{"budget below one inrush", func(c *Config) { c.BudgetWatts = 5 }},
		{"negative failures", func(c *Config) { c.FailuresBeforeUnreachable = -1 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			if _, err := New(c); !errors.Is(err, ErrInvalid) {
				t.Fatalf("New = %v, want ErrInvalid", err)
			}
		})
	}
	r, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	c := r.cfg
	if c.ObserveInterval != time.Second || c.CallTimeout != 2*time.Second || c.UnitWatts != 4.2 || c.InrushWatts != 9 ||
		c.InrushWindow != 50*time.Millisecond || c.FailuresBeforeUnreachable != 5 || c.UnreachableRetry != 30*time.Second || c.BudgetWatts != 0 {
		t.Errorf("defaults: %+v", c)
	}
	// The runtime accepts it: inputs and outputs are disjoint and known.
	rt, err := reconcilers.New(reconcilers.Config{Log: log, Leadership: reconcilers.NewLeaderSwitch(false), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Register(r); err != nil {
		t.Fatalf("Register: %v", err)
	}
}

// TestPower drives nodes on and off through the runtime and checks the
// events, in order, and that the BMC acted only after the intent was
// committed.
func TestPower(t *testing.T) {
	for _, tt := range []struct {
		name    string
		startOn bool
		desired events.PowerState
		op      string
	}{
		{"off", true, events.PowerOff, opOff},
		{"on", false, events.PowerOn, opOn},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, sim.Config{Slots: 3, StartOn: tt.startOn}, testConfig())
			h.register(3, false)
			h.run(reconcilers.Backoff{})
			was := events.PowerOff
			if tt.startOn {
				was = events.PowerOn
			}
			h.converged("n2", 2, was) // observed before anything is desired
			seq := h.desire("n2", tt.desired, false)
			h.converged("n2", 2, tt.desired)

			evs := h.events("n2", seq+1, events.ActionStarted, events.ActionSucceeded, events.ActionFailed, events.NodePowerObserved)
			if len(evs) != 3 {
				t.Fatalf("events after the request: %v, want action.started, action.succeeded, power.observed", types(evs))
			}
			st := payload[*events.ActionStartedData](t, evs[0])
			if evs[0].Type != events.ActionStarted || st.Operation != tt.op || st.Reconciler != Name || st.Target != seq || st.Attempt != 1 || evs[0].Actor != Actor {
				t.Errorf("first event %s %+v actor %q", evs[0].Type, st, evs[0].Actor)
			}
			if evs[1].Type != events.ActionSucceeded || payload[*events.ActionSucceededData](t, evs[1]).Action != st.Action {
				t.Errorf("second event %s, want action.succeeded of %s", evs[1].Type, st.Action)
			}
			if evs[2].Type != events.NodePowerObserved || payload[*events.PowerObservedData](t, evs[2]).State != tt.desired {
				t.Errorf("third event %s, want power.observed %s", evs[2].Type, tt.desired)
			}
			if n := h.rec.actions(2); n != 1 {
				t.Errorf("%d BMC actions on slot 2, want 1", n)
			}
			if n := h.rec.actions(1) + h.rec.actions(3); n != 0 {
				t.Errorf("%d BMC actions on other slots", n)
			}
			if got := h.counter("racklet_power_actions_total", map[string]string{"operation": tt.op, "result": "succeeded"}); got != 1 {
				t.Errorf("actions metric = %v", got)
			}
		})
	}
}

func types(evs []events.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%d:%s", ev.Sequence, ev.Type))
	}
	return out
}

func TestCycle(t *testing.T) {
	for _, tt := range []struct {
		name    string
		startOn bool
	}{
		{"from on", true},
		{"from off", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, sim.Config{Slots: 2, StartOn: tt.startOn}, testConfig())
			h.register(2, false)
			h.run(reconcilers.Backoff{})
			seq := h.desire("n1", events.PowerCycle, false)
			testutil.WaitFor(t, testTimeout, func() error {
				n := h.node("n1")
				if n.CycleSequence != seq || n.CycleDoneSequence < n.CycleSequence || n.Observed != events.PowerOn {
					return fmt.Errorf("cycle %d done %d observed %q", n.CycleSequence, n.CycleDoneSequence, n.Observed)
				}
				return nil
			})
			if p := h.unitPower(1); p != drivers.PowerOn {
				t.Errorf("unit 1 is %s after the cycle", p)
			}
			cycles := h.rec.callsOf(1, opCycle)
			if len(cycles) != 1 || h.rec.actions(1) != 1 {
				t.Fatalf("BMC actions on slot 1: %d cycles, %d in all; want one cycle", len(cycles), h.rec.actions(1))
			}
			started := h.events("n1", seq, events.ActionStarted)
			if len(started) != 1 || payload[*events.ActionStartedData](t, started[0]).Target != seq {
				t.Errorf("action.started: %v", types(started))
			}
		})
	}
}

// TestDrift changes a unit's power behind the reconciler's back: it
// observes the change, records it, and drives the unit back.
func TestDrift(t *testing.T) {
	for _, tt := range []struct {
		name  string
		drift func(t *testing.T, h *harness)
	}{
		{"pulled slot power", func(t *testing.T, h *harness) {
			if err := h.rack.PullSlotPower(1); err != nil {
				t.Fatal(err)
			}
			// The BMC lives on the slot's power: wait for a failed read.
			testutil.WaitFor(t, testTimeout, func() error {
				for _, c := range h.rec.callsOf(1, drivers.OpPowerRead) {
					if c.err != nil {
						return nil
					}
				}
				return errNotYet
			})
			if err := h.rack.RestoreSlotPower(1); err != nil { // the unit stays off
				t.Fatal(err)
			}
		}},
		{"switched off out of band", func(t *testing.T, h *harness) {
			b, err := h.rack.Backplane().BMC(1) // not through the recorder
			if err != nil {
				t.Fatal(err)
			}
			if err := b.SetPower(context.Background(), drivers.PowerOff); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, sim.Config{Slots: 2, StartOn: true}, testConfig())
			h.register(2, false)
			h.desire("n1", events.PowerOn, false)
			h.run(reconcilers.Backoff{})
			h.converged("n1", 1, events.PowerOn)
			from := h.seq() + 1
			tt.drift(t, h)
			testutil.WaitFor(t, testTimeout, func() error {
				obs := h.events("n1", from, events.NodePowerObserved)
				if len(obs) < 2 || payload[*events.PowerObservedData](t, obs[0]).State != events.PowerOff ||
					payload[*events.PowerObservedData](t, obs[len(obs)-1]).State != events.PowerOn {
					return fmt.Errorf("observations since the drift: %v", types(obs))
				}
				return nil
			})
			h.converged("n1", 1, events.PowerOn)
			var ons int
			for _, ev := range h.events("n1", from, events.ActionStarted) {
				if payload[*events.ActionStartedData](t, ev).Operation == opOn {
					ons++
				}
			}
			if ons != 1 {
				t.Errorf("%d power.on actions since the drift, want 1", ons)
			}
		})
	}
}

func TestQuorumGuard(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 3, StartOn: true}, testConfig())
	h.register(3, true)
	// n2 is down: its unit is off, and the log knows it.
	b, err := h.rack.Backplane().BMC(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetPower(context.Background(), drivers.PowerOff); err != nil {
		t.Fatal(err)
	}
	h.append(events.NodePowerObserved, "n2", &events.PowerObservedData{State: events.PowerOff})
	h.run(reconcilers.Backoff{})
	h.converged("n1", 1, events.PowerOn)

	seq := h.desire("n1", events.PowerOff, false)
	testutil.WaitFor(t, testTimeout, func() error {
		if len(h.events("n1", seq, events.NodePowerRefused)) == 0 {
			return errors.New("no refusal yet")
		}
		return nil
	})
	// Let it look a few more times: still one refusal, and no action.
	reads := len(h.rec.callsOf(1, drivers.OpPowerRead))
	testutil.WaitFor(t, testTimeout, func() error {
		if n := len(h.rec.callsOf(1, drivers.OpPowerRead)); n < reads+3 {
			return fmt.Errorf("%d more reads", n-reads)
		}
		return nil
	})
	refused := h.events("n1", seq, events.NodePowerRefused)
	if len(refused) != 1 {
		t.Fatalf("%d refusals, want 1", len(refused))
	}
	d := payload[*events.PowerRefusedData](t, refused[0])
	if d.State != events.PowerOff || d.Target != seq || d.Reason == "" {
		t.Errorf("refusal %+v", d)
	}
	if n := h.node("n1"); n.Refusal == nil || n.Refusal.Sequence != refused[0].Sequence {
		t.Errorf("state refusal %+v", n.Refusal)
	}
	if p := h.unitPower(1); p != drivers.PowerOn || h.rec.actions(1) != 0 || len(h.events("n1", seq, events.ActionStarted)) != 0 {
		t.Fatalf("n1 was acted on: unit %s, %d BMC actions", p, h.rec.actions(1))
	}
	if got := h.counter("racklet_power_refusals_total", nil); got != 1 {
		t.Errorf("refusals metric = %v", got)
	}

	// Forced, it goes.
	forced := h.desire("n1", events.PowerOff, true)
	h.converged("n1", 1, events.PowerOff)
	if n := len(h.events("n1", forced, events.NodePowerRefused)); n != 0 {
		t.Errorf("%d refusals of the forced request", n)
	}
}

// TestBudget turns five units on at once with a budget that has room for
// two inrushes: they are staggered, and the simulated draw never exceeds
// the budget. The simulator and the reconciler share a manual clock, so
// inrush windows end only when the test moves time on.
func TestBudget(t *testing.T) {
	const units = 5
	clock := sim.NewManualClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	prof := sim.DefaultPower()
	prof.InrushDuration = 20 * time.Millisecond
	cfg := testConfig()
	cfg.BudgetWatts = 26 // 2 inrushes (18 W), not 3 (27 W); 4 on + 1 inrush is 25.8 W
	cfg.InrushWindow = 25 * time.Millisecond
	cfg.Now = clock.Now
	h := newHarness(t, sim.Config{Slots: units, Clock: clock, Power: prof}, cfg)
	// What the model leaves out: the rack's overhead and standby draw.
	rackBudget := cfg.BudgetWatts + prof.RackOverhead + units*prof.Standby
	h.register(units, false)

	var (
		mu      sync.Mutex
		maxDraw float64
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			w := h.rack.RackWatts()
			mu.Lock()
			maxDraw = max(maxDraw, w)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	defer func() {
		close(stop)
		<-sampled
	}()

	h.run(reconcilers.Backoff{}, reconcilers.Workers(units))
	var batch []events.Event
	for i := 1; i <= units; i++ {
		ev, err := events.New(events.Source("rack1", "test"), events.NodePowerDesired, fmt.Sprintf("n%d", i), &events.PowerDesiredData{State: events.PowerOn})
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, ev)
	}
	if _, err := h.log.Append(context.Background(), batch...); err != nil {
		t.Fatal(err)
	}

	unitsOn := func() int {
		n := 0
		for s := 1; s <= units; s++ {
			if h.unitPower(s) == drivers.PowerOn {
				n++
			}
		}
		return n
	}
	// Time stands still: two are admitted, the others wait, and keep
	// waiting.
	waits := func() float64 { return h.counter("racklet_power_budget_waits_total", nil) }
	testutil.WaitFor(t, testTimeout, func() error {
		if n, w := unitsOn(), waits(); n != 2 || w < units-2 {
			return fmt.Errorf("%d units on, %v budget waits", n, w)
		}
		return nil
	})
	w := waits()
	testutil.WaitFor(t, testTimeout, func() error {
		if got := waits(); got < w+units-2 {
			return fmt.Errorf("%v more budget waits", got-w)
		}
		return nil
	})
	if n := unitsOn(); n != 2 {
		t.Fatalf("%d units on while time stands still, want 2", n)
	}
	// Move time on until all are on.
	testutil.WaitFor(t, testTimeout, func() error {
		clock.Advance(5 * time.Millisecond)
		if n := unitsOn(); n != units {
			return fmt.Errorf("%d units on", n)
		}
		for i := 1; i <= units; i++ {
			if n := h.node(fmt.Sprintf("n%d", i)); n.Observed != events.PowerOn {
				return fmt.Errorf("node %s observed %q", n.Name, n.Observed)
			}
		}
		return nil
	})
	mu.Lock()
	got := maxDraw
	mu.Unlock()
	if got > rackBudget {
		t.Errorf("the rack drew %.2f W, more than the budget of %.2f W", got, rackBudget)
	}
	t.Logf("peak draw %.2f W of %.2f W", got, rackBudget)
}

// TestUnreachable breaks a BMC: retried with growing gaps, marked
// unreachable once after FailuresBeforeUnreachable failures, reachable
// again when healed.
func TestUnreachable(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault func(*sim.Rack, int) error
	}{
		{"disconnected", (*sim.Rack).DisconnectBMC},
		{"hung", (*sim.Rack).HangBMC},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const failures = 4
			cfg := testConfig()
			cfg.CallTimeout = 30 * time.Millisecond
			cfg.FailuresBeforeUnreachable = failures
			cfg.UnreachableRetry = 100 * time.Millisecond
			h := newHarness(t, sim.Config{Slots: 1, StartOn: true}, cfg)
			h.register(1, false)
			h.desire("n1", events.PowerOn, false)
			h.run(reconcilers.Backoff{Base: 20 * time.Millisecond, Max: 5 * time.Second})
			h.converged("n1", 1, events.PowerOn)

			from := h.seq() + 1
			before := len(h.rec.callsOf(1, drivers.OpPowerRead))
			if err := tt.fault(h.rack, 1); err != nil {
				t.Fatal(err)
			}
			var unreachable []events.Event
			testutil.WaitFor(t, testTimeout, func() error {
				if unreachable = h.events("n1", from, events.NodeUnreachable); len(unreachable) == 0 {
					return errors.New("not marked unreachable")
				}
				return nil
			})
			d := payload[*events.NodeUnreachableData](t, unreachable[0])
			if d.Failures != failures || d.Reason == "" {
				t.Errorf("node.unreachable %+v, want %d failures and a reason", d, failures)
			}
			if n := h.node("n1"); !n.Unreachable {
				t.Errorf("state: not unreachable")
			}
			// The failed reads that led there came with growing gaps
			// (backoff), not in a tight loop.
			var failed []call
			for _, c := range h.rec.callsOf(1, drivers.OpPowerRead)[before:] {
				if c.err != nil {
					failed = append(failed, c)
				}
			}
			if len(failed) < failures {
				t.Fatalf("%d failed reads, want at least %d", len(failed), failures)
			}
			first, last := failed[1].start.Sub(failed[0].end), failed[failures-1].start.Sub(failed[failures-2].end)
			if last <= first {
				t.Errorf("gaps between retries did not grow: first %s, last %s", first, last)
			}

			// It keeps trying, slowly, without marking it again.
			testutil.WaitFor(t, testTimeout, func() error {
				if n := len(h.rec.callsOf(1, drivers.OpPowerRead)) - before; n < failures+2 {
					return fmt.Errorf("%d reads since the fault", n)
				}
				return nil
			})
			if n := len(h.events("n1", from, events.NodeUnreachable)); n != 1 {
				t.Errorf("%d node.unreachable events, want 1", n)
			}

			if err := h.rack.HealBMC(1); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, testTimeout, func() error {
				if len(h.events("n1", from, events.NodeReachable)) == 0 {
					return errors.New("not reachable yet")
				}
				return nil
			})
			if n := h.node("n1"); n.Unreachable || n.Observed != events.PowerOn {
				t.Errorf("state after healing: unreachable %v, observed %s", n.Unreachable, n.Observed)
			}
			if u, r := len(h.events("n1", from, events.NodeUnreachable)), len(h.events("n1", from, events.NodeReachable)); u != 1 || r != 1 {
				t.Errorf("%d unreachable and %d reachable events, want one each", u, r)
			}
		})
	}
}

// reconcile calls Reconcile directly and fails the test on an error.
func (h *harness) reconcile(name string) reconcilers.Result {
	h.t.Helper()
	res, err := h.pr.Reconcile(context.Background(), reconcilers.Request{Name: name})
	if err != nil {
		h.t.Fatalf("Reconcile(%s): %v", name, err)
	}
	return res
}

// TestIdempotent reconciles until nothing changes, then twice more: the
// log does not grow.
func TestIdempotent(t *testing.T) {
	for _, tt := range []struct {
		name    string
		startOn bool
		setup   func(h *harness)
	}{
		{"nothing desired", true, func(h *harness) {}},
		{"on", false, func(h *harness) { h.desire("n1", events.PowerOn, false) }},
		{"off", true, func(h *harness) { h.desire("n1", events.PowerOff, false) }},
		{"cycled", true, func(h *harness) { h.desire("n1", events.PowerCycle, false) }},
		{"off after cycle", true, func(h *harness) {
			h.desire("n1", events.PowerCycle, false)
			h.desire("n1", events.PowerOff, false)
		}},
		{"refused", true, func(h *harness) {
			h.append(events.NodeRegistered, "n2", &events.NodeRegisteredData{Slot: 2, Member: "m2"})
			h.append(events.MemberJoined, "m1", &events.MemberJoinedData{Address: "m1:7481", Voter: true})
			h.append(events.MemberJoined, "m2", &events.MemberJoinedData{Address: "m2:7481", Voter: true})
			h.desire("n1", events.PowerOff, false)
		}},
		{"removed", true, func(h *harness) { h.append(events.NodeRemoved, "n1", &events.NodeRemovedData{}) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, sim.Config{Slots: 2, StartOn: tt.startOn}, testConfig())
			h.append(events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1, Member: "m1"})
			tt.setup(h)
			for range 3 {
				h.reconcile("n1")
			}
			seq, actions := h.seq(), h.rec.actions(1)
			for range 2 {
				res := h.reconcile("n1")
				if want := h.pr.cfg.ObserveInterval; tt.name != "removed" && res.RequeueAfter != want {
					t.Errorf("RequeueAfter %s, want %s", res.RequeueAfter, want)
				}
			}
			if got := h.seq(); got != seq {
				t.Errorf("the log grew from %d to %d: %v", seq, got, types(h.events("n1", seq+1)))
			}
			if got := h.rec.actions(1); got != actions {
				t.Errorf("%d more BMC actions", got-actions)
			}
		})
	}
}

// TestOffAfterCycle: an off asked for after a cycle wins.
func TestOffAfterCycle(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 1, StartOn: true}, testConfig())
	h.register(1, false)
	h.desire("n1", events.PowerCycle, false)
	h.desire("n1", events.PowerOff, false)
	for range 2 {
		h.reconcile("n1")
	}
	if p := h.unitPower(1); p != drivers.PowerOff || len(h.rec.callsOf(1, opCycle)) != 0 {
		t.Fatalf("unit %s, %d cycles", p, len(h.rec.callsOf(1, opCycle)))
	}
	// Then on: the pending cycle powers it on, and is done.
	h.desire("n1", events.PowerOn, false)
	h.reconcile("n1")
	if n := h.node("n1"); n.CyclePending() || n.Observed != events.PowerOn {
		t.Fatalf("cycle pending %v, observed %s", n.CyclePending(), n.Observed)
	}
}

// TestFencing: the intent is committed fenced when the log can; a member
// that is not the leader does not act.
func TestFencing(t *testing.T) {
	for _, tt := range []struct {
		name    string
		log     func(*eventlog.Mem) eventlog.Log
		wantErr error
	}{
		{"fenced leader", func(m *eventlog.Mem) eventlog.Log { return m }, nil},
		{"deposed leader", func(m *eventlog.Mem) eventlog.Log { return fencedOut{m} }, eventlog.ErrNotLeader},
		{"log without fencing", func(m *eventlog.Mem) eventlog.Log { return plainLog{m} }, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, sim.Config{Slots: 1, StartOn: true}, testConfig())
			cfg := testConfig()
			cfg.Log, cfg.Backplane = tt.log(h.log), h.rec
			pr, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			h.register(1, false)
			seq := h.desire("n1", events.PowerOff, false)
			_, err = pr.Reconcile(context.Background(), reconcilers.Request{Name: "n1"})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Reconcile = %v, want %v", err, tt.wantErr)
			}
			started := h.events("n1", seq, events.ActionStarted)
			if tt.wantErr != nil {
				if h.rec.actions(1) != 0 || len(started) != 0 || h.unitPower(1) != drivers.PowerOn {
					t.Fatalf("a deposed leader acted: %d BMC actions, %d action.started", h.rec.actions(1), len(started))
				}
				return
			}
			if h.rec.actions(1) != 1 || len(started) != 1 || h.unitPower(1) != drivers.PowerOff {
				t.Fatalf("%d BMC actions, %d action.started, unit %s", h.rec.actions(1), len(started), h.unitPower(1))
			}
		})
	}
}

// TestActionFails: a BMC that fails the action gets action.failed with
// Retry, and the error goes back to the runtime.
func TestActionFails(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 1, StartOn: true}, testConfig())
	h.register(1, false)
	h.reconcile("n1") // observed on
	// A stale BMC keeps answering reads; a hung one fails the command.
	seq := h.desire("n1", events.PowerOff, false)
	h.pr.cfg.CallTimeout = 20 * time.Millisecond
	b := &hangOnSet{BMC: mustBMC(t, h.rec, 1)}
	res, err := h.pr.act(context.Background(), h.node("n1"), b, opOff)
	if err == nil || !errors.Is(err, drivers.ErrTimeout) {
		t.Fatalf("act = %v, %v; want a timeout", res, err)
	}
	evs := h.events("n1", seq, events.ActionStarted, events.ActionFailed)
	if len(evs) != 2 || evs[1].Type != events.ActionFailed {
		t.Fatalf("events %v", types(evs))
	}
	if d := payload[*events.ActionFailedData](t, evs[1]); !d.Retry || d.Reason == "" || d.Action != payload[*events.ActionStartedData](t, evs[0]).Action {
		t.Errorf("action.failed %+v", d)
	}
	// The next try is attempt 2 of the same target.
	h.reconcile("n1")
	evs = h.events("n1", seq, events.ActionStarted)
	if len(evs) != 2 || payload[*events.ActionStartedData](t, evs[1]).Attempt != 2 {
		t.Errorf("second action.started: %v", types(evs))
	}
	if h.unitPower(1) != drivers.PowerOff {
		t.Errorf("unit still on")
	}
}

func mustBMC(t *testing.T, bp drivers.Backplane, slot int) drivers.BMC {
	t.Helper()
	b, err := bp.BMC(slot)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hangOnSet is a BMC whose SetPower hangs until its context ends.
type hangOnSet struct{ drivers.BMC }

func (b *hangOnSet) SetPower(ctx context.Context, s drivers.PowerState) error {
	<-ctx.Done()
	return drivers.ContextError(drivers.OpPowerSet, b.Slot(), ctx.Err())
}

func TestListAndGone(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 3}, testConfig())
	h.register(3, false)
	names, err := h.pr.List(context.Background())
	if err != nil || fmt.Sprint(names) != "[n1 n2 n3]" {
		t.Fatalf("List = %v, %v", names, err)
	}
	if res := h.reconcile("n9"); res != (reconcilers.Result{}) {
		t.Errorf("Reconcile of an unknown node = %+v", res)
	}
	h.append(events.NodeRegistered, "n0", &events.NodeRegisteredData{}) // no slot
	if _, err := h.pr.Reconcile(context.Background(), reconcilers.Request{Name: "n0"}); !reconcilers.IsTerminal(err) || !errors.Is(err, drivers.ErrNoSlot) {
		t.Errorf("Reconcile of a node without a slot = %v, want a terminal ErrNoSlot", err)
	}
}
