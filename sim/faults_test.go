package sim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/sim"
)

func wantKind(t *testing.T, err error, kind error, slot int) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want %v", err, kind)
	}
	var de *drivers.Error
	if !errors.As(err, &de) || de.Slot != slot {
		t.Fatalf("err = %v, want a *drivers.Error for slot %d", err, slot)
	}
}

func TestSlotPower(t *testing.T) {
	tests := []struct {
		name    string
		restore bool
		// after restoring: power state and edges
		wantPower drivers.PowerState
		wantEdges []edge
	}{
		{"restore policy off", false, drivers.PowerOff, nil},
		{"restore policy previous", true, drivers.PowerOn, []edge{{2, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e edges
			r, _ := newRack(t, sim.Config{Slots: 3, OnPower: e.hook, RestorePrevious: tc.restore})
			b := bmcOf(t, r, 2)
			must(t, b.SetPower(ctx(t), drivers.PowerOn))
			if got := e.take(); !slices.Equal(got, []edge{{2, true}}) {
				t.Fatalf("edges after power on = %v", got)
			}

			must(t, r.PullSlotPower(2))
			if got := e.take(); !slices.Equal(got, []edge{{2, false}}) {
				t.Fatalf("edges after pull = %v, want slot 2 off", got)
			}
			_, err := b.PowerState(ctx(t))
			wantKind(t, err, drivers.ErrUnreachable, 2)
			if present, err := r.Backplane().Present(ctx(t), 2); err != nil || !present {
				t.Errorf("Present(2) with power pulled = %v, %v; want true", present, err)
			}
			if u := unit(t, r, 2); u.Power != drivers.PowerOff || u.SlotPower || u.Watts != 0 {
				t.Errorf("unit with power pulled: %+v", u)
			}
			// The neighbours do not notice.
			if _, err := bmcOf(t, r, 1).PowerState(ctx(t)); err != nil {
				t.Errorf("slot 1: %v", err)
			}

			must(t, r.RestoreSlotPower(2))
			if got, err := b.PowerState(ctx(t)); err != nil || got != tc.wantPower {
				t.Errorf("after restore: %q, %v; want %q", got, err, tc.wantPower)
			}
			if got := e.take(); !slices.Equal(got, tc.wantEdges) {
				t.Errorf("edges after restore = %v, want %v", got, tc.wantEdges)
			}
			if got := r.Faults()[sim.FaultSlotPower]; got != 1 {
				t.Errorf("slot-power faults = %d, want 1", got)
			}
		})
	}
}

func TestRackPower(t *testing.T) {
	var e edges
	r, _ := newRack(t, sim.Config{Slots: 3, OnPower: e.hook, RestorePrevious: true})
	bp := r.Backplane()
	must(t, bmcOf(t, r, 1).SetPower(ctx(t), drivers.PowerOn))
	must(t, bmcOf(t, r, 3).SetPower(ctx(t), drivers.PowerOn))
	e.take()

	r.PullRackPower()
	if got := e.take(); !slices.Equal(got, []edge{{1, false}, {3, false}}) {
		t.Fatalf("edges after rack pull = %v", got)
	}
	for s := 1; s <= 3; s++ {
		_, err := bmcOf(t, r, s).ReadSensors(ctx(t))
		wantKind(t, err, drivers.ErrUnreachable, s)
	}
	_, err := bp.RMC().ReadRack(ctx(t))
	wantKind(t, err, drivers.ErrUnreachable, 0)
	_, err = bp.Present(ctx(t), 1)
	wantKind(t, err, drivers.ErrUnreachable, 1)

	// Slot 3 loses its own power too: it stays dark when the rack comes back.
	must(t, r.PullSlotPower(3))
	r.RestoreRackPower()
	if got := e.take(); !slices.Equal(got, []edge{{1, true}}) {
		t.Fatalf("edges after rack restore = %v, want slot 1 on", got)
	}
	must(t, r.RestoreSlotPower(3))
	if got := e.take(); !slices.Equal(got, []edge{{3, true}}) {
		t.Fatalf("edges after slot restore = %v, want slot 3 on", got)
	}
	if _, err := bp.RMC().ReadRack(ctx(t)); err != nil {
		t.Errorf("RMC after restore: %v", err)
	}
	if got := r.Faults(); got[sim.FaultRackPower] != 1 || got[sim.FaultSlotPower] != 1 {
		t.Errorf("faults = %v", got)
	}
}

func TestHungBMC(t *testing.T) {
	r, _ := newRack(t, sim.Config{Slots: 2})
	b := bmcOf(t, r, 1)
	must(t, r.HangBMC(1))
	calls := []struct {
		name string
		do   func(context.Context) error
	}{
		{"PowerState", func(c context.Context) error { _, err := b.PowerState(c); return err }},
		{"SetPower", func(c context.Context) error { return b.SetPower(c, drivers.PowerOn) }},
		{"PowerCycle", b.PowerCycle},
		{"ReadSensors", func(c context.Context) error { _, err := b.ReadSensors(c); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			cx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
			defer cancel()
			err := c.do(cx)
			wantKind(t, err, drivers.ErrTimeout, 1)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%v does not match context.DeadlineExceeded", err)
			}
		})
	}
	if u := unit(t, r, 1); u.Power != drivers.PowerOff {
		t.Errorf("a hung BMC acted: %+v", u)
	}
	if _, err := bmcOf(t, r, 2).PowerState(ctx(t)); err != nil {
		t.Errorf("slot 2 while slot 1 hangs: %v", err)
	}

	// Close releases a call that has no deadline.
	done := make(chan error, 1)
	go func() { _, err := b.PowerState(context.Background()); done <- err }()
	time.Sleep(time.Millisecond) // let it reach the BMC; the result is the same either way
	must(t, r.Close())
	err := <-done
	wantKind(t, err, drivers.ErrUnreachable, 1)
	if !errors.Is(err, sim.ErrClosed) {
		t.Errorf("after close: %v, want %v", err, sim.ErrClosed)
	}
	if got := r.Faults()[sim.FaultBMCHang]; got != 1 {
		t.Errorf("bmc-hang faults = %d, want 1", got)
	}
}

func TestSlowBMC(t *testing.T) {
	r, _ := newRack(t, sim.Config{Slots: 2})
	b := bmcOf(t, r, 1)

	// Slower than any deadline: the call times out and has no effect.
	must(t, r.SlowBMC(1, time.Hour))
	cx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	wantKind(t, b.SetPower(cx, drivers.PowerOn), drivers.ErrTimeout, 1)
	if u := unit(t, r, 1); u.Power != drivers.PowerOff || !slices.Contains(u.Faults, sim.FaultBMCSlow) {
		t.Errorf("unit after a timed-out slow call: %+v", u)
	}

	// Slow but within the deadline: the call succeeds.
	must(t, r.SlowBMC(1, time.Millisecond))
	must(t, b.SetPower(ctx(t), drivers.PowerOn))
	if got, err := b.PowerState(ctx(t)); err != nil || got != drivers.PowerOn {
		t.Errorf("slow BMC: %q, %v", got, err)
	}
	must(t, r.HealBMC(1))
	if u := unit(t, r, 1); len(u.Faults) != 0 {
		t.Errorf("faults after heal: %v", u.Faults)
	}
	if got := r.Faults()[sim.FaultBMCSlow]; got != 2 {
		t.Errorf("bmc-slow faults = %d, want 2", got)
	}
	if err := r.SlowBMC(1, -time.Second); err == nil {
		t.Error("negative extra latency accepted")
	}
}

func TestUnreachableBMC(t *testing.T) {
	r, _ := newRack(t, sim.Config{Slots: 2})
	b := bmcOf(t, r, 2)
	must(t, r.DisconnectBMC(2))
	for _, err := range []error{
		b.SetPower(ctx(t), drivers.PowerOn),
		func() error { _, err := b.PowerState(ctx(t)); return err }(),
		func() error { _, err := b.ReadSensors(ctx(t)); return err }(),
	} {
		wantKind(t, err, drivers.ErrUnreachable, 2)
	}
	if u := unit(t, r, 2); u.Power != drivers.PowerOff {
		t.Errorf("an unreachable BMC acted: %+v", u)
	}
	must(t, r.HealBMC(2))
	must(t, b.SetPower(ctx(t), drivers.PowerOn))
	if got := r.Faults()[sim.FaultBMCUnreachable]; got != 1 {
		t.Errorf("bmc-unreachable faults = %d, want 1", got)
	}
}

func TestStaleBMC(t *testing.T) {
	r, clk := newRack(t, sim.Config{Slots: 1})
	b := bmcOf(t, r, 1)
	st := b.(drivers.BootStager)
	must(t, b.SetPower(ctx(t), drivers.PowerOn))
	clk.Advance(time.Second)
	must(t, r.StaleBMC(1))
	before, err := b.ReadSensors(ctx(t))
	must(t, err)

	// The command reaches the unit; the reports do not change.
	must(t, b.SetPower(ctx(t), drivers.PowerOff))
	clk.Advance(time.Second)
	if u := unit(t, r, 1); u.Power != drivers.PowerOff {
		t.Fatalf("unit did not power off: %+v", u)
	}
	if got, err := b.PowerState(ctx(t)); err != nil || got != drivers.PowerOn {
		t.Errorf("stale power = %q, %v; want on", got, err)
	}
	if got, err := st.BootStage(ctx(t)); err != nil || got != drivers.StageReady {
		t.Errorf("stale stage = %q, %v; want ready", got, err)
	}
	if got, err := b.ReadSensors(ctx(t)); err != nil || got != before {
		t.Errorf("stale readings = %+v, %v; want %+v", got, err, before)
	}

	must(t, r.HealBMC(1))
	if got, err := b.PowerState(ctx(t)); err != nil || got != drivers.PowerOff {
		t.Errorf("healed power = %q, %v; want off", got, err)
	}
	if got := r.Faults()[sim.FaultBMCStale]; got != 1 {
		t.Errorf("bmc-stale faults = %d, want 1", got)
	}
}

// fakeNetwork records what the simulator asks of the network.
type fakeNetwork struct {
	mu     sync.Mutex
	calls  []string
	failed error
}

func (n *fakeNetwork) Partition(groups ...[]string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, fmt.Sprintf("partition %v", groups))
	return n.failed
}

func (n *fakeNetwork) Heal() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, "heal")
	return n.failed
}

func TestPartition(t *testing.T) {
	net := &fakeNetwork{}
	r, _ := newRack(t, sim.Config{Network: net})
	must(t, r.Partition([]string{"m1"}, []string{"m2", "m3"}))
	if got, want := r.Partitioned(), [][]string{{"m1"}, {"m2", "m3"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Partitioned() = %v, want %v", got, want)
	}
	must(t, r.HealNetwork())
	if got := r.Partitioned(); got != nil {
		t.Errorf("Partitioned() after heal = %v", got)
	}
	if want := []string{"partition [[m1] [m2 m3]]", "heal"}; !slices.Equal(net.calls, want) {
		t.Errorf("network calls = %q, want %q", net.calls, want)
	}
	if got := r.Faults()[sim.FaultPartition]; got != 1 {
		t.Errorf("partition faults = %d, want 1", got)
	}

	boom := errors.New("boom")
	net.failed = boom
	if err := r.Partition([]string{"m1"}); !errors.Is(err, boom) {
		t.Errorf("failing network: %v", err)
	}
	if got := r.Faults()[sim.FaultPartition]; got != 1 {
		t.Errorf("a failed partition was counted: %d", got)
	}

	bare, _ := newRack(t, sim.Config{})
	if err := bare.Partition([]string{"m1"}); !errors.Is(err, sim.ErrNoNetwork) {
		t.Errorf("no network: Partition: %v", err)
	}
	if err := bare.HealNetwork(); !errors.Is(err, sim.ErrNoNetwork) {
		t.Errorf("no network: HealNetwork: %v", err)
	}
}

func TestFaultAPIErrors(t *testing.T) {
	r, _ := newRack(t, sim.Config{Slots: 2, Empty: []int{2}})
	bmcFaults := map[string]func(int) error{
		"HangBMC":       r.HangBMC,
		"DisconnectBMC": r.DisconnectBMC,
		"StaleBMC":      r.StaleBMC,
		"SlowBMC":       func(s int) error { return r.SlowBMC(s, time.Millisecond) },
	}
	for name, f := range bmcFaults {
		if err := f(2); !errors.Is(err, sim.ErrEmptySlot) {
			t.Errorf("%s on an empty slot: %v, want %v", name, err, sim.ErrEmptySlot)
		}
		if err := f(3); !errors.Is(err, drivers.ErrNoSlot) {
			t.Errorf("%s out of range: %v, want %v", name, err, drivers.ErrNoSlot)
		}
	}
	for name, f := range map[string]func(int) error{
		"PullSlotPower": r.PullSlotPower, "RestoreSlotPower": r.RestoreSlotPower,
		"HealBMC": r.HealBMC, "InsertUnit": r.InsertUnit, "RemoveUnit": r.RemoveUnit,
	} {
		if err := f(0); !errors.Is(err, drivers.ErrNoSlot) {
			t.Errorf("%s(0): %v, want %v", name, err, drivers.ErrNoSlot)
		}
	}
	if got := r.Faults(); len(got) != 0 {
		t.Errorf("failed injections were counted: %v", got)
	}
}

func TestFaultsAreLogged(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	r, _ := newRack(t, sim.Config{Slots: 2, Logger: log})
	must(t, r.PullSlotPower(1))
	must(t, r.HangBMC(2))
	r.PullRackPower()
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, want := range []string{"kind=slot-power slot=1", "kind=bmc-hang slot=2", "kind=rack-power"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	want := map[sim.FaultKind]int{sim.FaultSlotPower: 1, sim.FaultBMCHang: 1, sim.FaultRackPower: 1}
	if got := r.Faults(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Faults() = %v, want %v", got, want)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestPresence(t *testing.T) {
	var e edges
	r, _ := newRack(t, sim.Config{Slots: 2, OnPower: e.hook})
	bp := r.Backplane()
	b := bmcOf(t, r, 1)
	must(t, b.SetPower(ctx(t), drivers.PowerOn))
	must(t, r.HangBMC(1))
	e.take()

	steps := []struct {
		name      string
		do        func() error
		wantErr   error
		present   bool
		reachable bool
		edges     []edge
	}{
		{"remove a powered unit", func() error { return r.RemoveUnit(1) }, nil, false, false, []edge{{1, false}}},
		{"remove again", func() error { return r.RemoveUnit(1) }, sim.ErrEmptySlot, false, false, nil},
		{"insert", func() error { return r.InsertUnit(1) }, nil, true, true, nil},
		{"insert again", func() error { return r.InsertUnit(1) }, sim.ErrOccupied, true, true, nil},
	}
	for _, st := range steps {
		if err := st.do(); !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
		}
		if got, err := bp.Present(ctx(t), 1); err != nil || got != st.present {
			t.Errorf("%s: Present = %v, %v; want %v", st.name, got, err, st.present)
		}
		// The new unit has a new, healthy BMC: it answers, and it is off.
		got, err := b.PowerState(ctx(t))
		if st.reachable && (err != nil || got != drivers.PowerOff) {
			t.Errorf("%s: PowerState = %q, %v; want off", st.name, got, err)
		}
		if !st.reachable {
			wantKind(t, err, drivers.ErrUnreachable, 1)
		}
		if got := e.take(); !slices.Equal(got, st.edges) {
			t.Errorf("%s: edges = %v, want %v", st.name, got, st.edges)
		}
	}
}

// TestHookReentry: a hook may call back into the rack, even to change power;
// the edges still come out in order.
func TestHookReentry(t *testing.T) {
	var e edges
	var r *sim.Rack
	hook := func(slot int, on bool) {
		e.hook(slot, on)
		if slot == 1 && !on {
			if _, err := r.Unit(2); err != nil {
				t.Error(err)
			}
			if err := r.PullSlotPower(2); err != nil {
				t.Error(err)
			}
		}
	}
	r, _ = newRack(t, sim.Config{Slots: 2, OnPower: hook, StartOn: true})
	must(t, r.PullSlotPower(1))
	if got, want := e.take(), []edge{{1, false}, {2, false}}; !slices.Equal(got, want) {
		t.Errorf("edges = %v, want %v", got, want)
	}
}
