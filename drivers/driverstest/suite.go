// Package driverstest is the conformance suite every drivers.Backplane
// implementation passes: the simulator, and later the SMBus, Redfish and
// GPIO drivers. A driver's test calls Run with a Harness that builds a fresh
// rack for each subtest.
package driverstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
)

// Harness builds the rack under test.
type Harness struct {
	// New returns a fresh rack for one subtest. It registers its own
	// cleanup with t.Cleanup.
	New func(t *testing.T) Rig
	// Settle bounds how long the suite waits for a state that takes time to
	// show (a power cycle completing). Default 5s. It is a bound for a
	// failing driver, not a timing the suite asserts.
	Settle time.Duration
}

// Rig is one fresh rack.
type Rig struct {
	Backplane drivers.Backplane
	// Empty is a slot without a compute unit, or 0 if the rack has none;
	// the presence and empty-slot checks then skip.
	Empty int
	// Faults injects faults, or nil if the driver cannot; the fault checks
	// then skip.
	Faults Faults
}

// Faults is what the suite needs of a driver's fault injection.
type Faults interface {
	// Hang makes the slot's BMC stop completing calls (they block until
	// the caller's context is done).
	Hang(slot int) error
	// Unreachable makes the slot's BMC stop answering (NAK).
	Unreachable(slot int) error
	// Heal clears every fault of the slot's BMC.
	Heal(slot int) error
}

// callGuard bounds a single call made by the suite: a call still running
// after it is a driver that ignores its context. Generous on purpose.
const callGuard = 30 * time.Second

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("driverstest: Harness.New is nil")
	}
	if h.Settle <= 0 {
		h.Settle = 5 * time.Second
	}
	s := &suite{h: h}
	tests := []struct {
		name string
		run  func(t *testing.T, r Rig)
	}{
		{"SlotsInRange", s.slotsInRange},
		{"Presence", s.presence},
		{"EmptySlotUnreachable", s.emptySlot},
		{"PowerRoundTrips", s.powerRoundTrips},
		{"PowerRefusesBadState", s.refusesBadState},
		{"SensorsPlausible", s.sensorsPlausible},
		{"SensorsFollowPower", s.sensorsFollowPower},
		{"BootStage", s.bootStage},
		{"RackReadings", s.rackReadings},
		{"ExpiredContext", s.expiredContext},
		{"CanceledContext", s.canceledContext},
		{"HungBMCHonoursDeadline", s.hungBMC},
		{"UnreachableBMC", s.unreachableBMC},
		{"Concurrent", s.concurrent},
		{"EnergyNeverDecreases", s.energyMonotonic},
		{"Fans", s.fans},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.New(t)
			if r.Backplane == nil {
				t.Fatal("driverstest: Rig.Backplane is nil")
			}
			if r.Backplane.Slots() < 1 {
				t.Fatalf("Slots() = %d, want at least 1", r.Backplane.Slots())
			}
			tc.run(t, r)
		})
	}
}

type suite struct{ h Harness }

// occupied lists the slots that hold a unit, as the rig declares them.
func occupied(r Rig) []int {
	var s []int
	for i := 1; i <= r.Backplane.Slots(); i++ {
		if i != r.Empty {
			s = append(s, i)
		}
	}
	return s
}

func firstOccupied(t *testing.T, r Rig) int {
	t.Helper()
	s := occupied(r)
	if len(s) == 0 {
		t.Skip("rack has no occupied slot")
	}
	return s[0]
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callGuard)
	t.Cleanup(cancel)
	return ctx
}

func bmc(t *testing.T, r Rig, slot int) drivers.BMC {
	t.Helper()
	b, err := r.Backplane.BMC(slot)
	if err != nil {
		t.Fatalf("BMC(%d): %v", slot, err)
	}
	if b.Slot() != slot {
		t.Fatalf("BMC(%d).Slot() = %d", slot, b.Slot())
	}
	return b
}

// wantDriverError checks that err is a *drivers.Error of the given kind for
// the given slot.
func wantDriverError(t *testing.T, err error, kind error, slot int) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	var de *drivers.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %q (%T) is not a *drivers.Error", err, err)
	}
	if de.Slot != slot {
		t.Fatalf("error %q has slot %d, want %d", err, de.Slot, slot)
	}
	if de.Op == "" {
		t.Fatalf("error %q has no op", err)
	}
}

func (s *suite) slotsInRange(t *testing.T, r Rig) {
	n := r.Backplane.Slots()
	for _, slot := range []int{-1, 0, n + 1} {
		if _, err := r.Backplane.BMC(slot); !errors.Is(err, drivers.ErrNoSlot) {
			t.Errorf("BMC(%d): err = %v, want %v", slot, err, drivers.ErrNoSlot)
		}
		if _, err := r.Backplane.Present(ctxT(t), slot); !errors.Is(err, drivers.ErrNoSlot) {
			t.Errorf("Present(%d): err = %v, want %v", slot, err, drivers.ErrNoSlot)
		}
	}
	for slot := 1; slot <= n; slot++ {
		bmc(t, r, slot)
	}
	if r.Backplane.RMC() == nil {
		t.Error("RMC() is nil")
	}
}

func (s *suite) presence(t *testing.T, r Rig) {
	for slot := 1; slot <= r.Backplane.Slots(); slot++ {
		got, err := r.Backplane.Present(ctxT(t), slot)
		if err != nil {
			t.Fatalf("Present(%d): %v", slot, err)
		}
		if want := slot != r.Empty; got != want {
			t.Errorf("Present(%d) = %v, want %v", slot, got, want)
		}
	}
}

func (s *suite) emptySlot(t *testing.T, r Rig) {
	if r.Empty == 0 {
		t.Skip("rack has no empty slot")
	}
	b := bmc(t, r, r.Empty)
	_, err := b.PowerState(ctxT(t))
	wantDriverError(t, err, drivers.ErrUnreachable, r.Empty)
	err = b.SetPower(ctxT(t), drivers.PowerOn)
	wantDriverError(t, err, drivers.ErrUnreachable, r.Empty)
	_, err = b.ReadSensors(ctxT(t))
	wantDriverError(t, err, drivers.ErrUnreachable, r.Empty)
}

// waitPower polls until the BMC reports want, for at most Settle.
func (s *suite) waitPower(t *testing.T, b drivers.BMC, want drivers.PowerState) {
	t.Helper()
	deadline := time.Now().Add(s.h.Settle)
	var got drivers.PowerState
	var err error
	for {
		got, err = b.PowerState(ctxT(t))
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %d: power = %q (err %v), want %q", b.Slot(), got, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *suite) powerRoundTrips(t *testing.T, r Rig) {
	b := bmc(t, r, firstOccupied(t, r))
	steps := []struct {
		name string
		do   func(ctx context.Context) error
		want drivers.PowerState
	}{
		{"off", func(ctx context.Context) error { return b.SetPower(ctx, drivers.PowerOff) }, drivers.PowerOff},
		{"off again", func(ctx context.Context) error { return b.SetPower(ctx, drivers.PowerOff) }, drivers.PowerOff},
		{"on", func(ctx context.Context) error { return b.SetPower(ctx, drivers.PowerOn) }, drivers.PowerOn},
		{"on again", func(ctx context.Context) error { return b.SetPower(ctx, drivers.PowerOn) }, drivers.PowerOn},
		{"cycle while on", b.PowerCycle, drivers.PowerOn},
		{"off after cycle", func(ctx context.Context) error { return b.SetPower(ctx, drivers.PowerOff) }, drivers.PowerOff},
		{"cycle while off", b.PowerCycle, drivers.PowerOn},
		{"off at end", func(ctx context.Context) error { return b.SetPower(ctx, drivers.PowerOff) }, drivers.PowerOff},
	}
	for _, st := range steps {
		if err := st.do(ctxT(t)); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		s.waitPower(t, b, st.want)
	}
}

func (s *suite) refusesBadState(t *testing.T, r Rig) {
	slot := firstOccupied(t, r)
	b := bmc(t, r, slot)
	for _, bad := range []drivers.PowerState{"", "cycle", "standby"} {
		err := b.SetPower(ctxT(t), bad)
		wantDriverError(t, err, drivers.ErrRefused, slot)
	}
}

// plausible bounds for a Raspberry Pi class unit.
const (
	maxUnitWatts = 30
	minCelsius   = -20
	maxCelsius   = 110
)

func sample(t *testing.T, b drivers.BMC, n int) (watts float64) {
	t.Helper()
	for range n {
		rd, err := b.ReadSensors(ctxT(t))
		if err != nil {
			t.Fatalf("slot %d: ReadSensors: %v", b.Slot(), err)
		}
		if rd.Watts < 0 || rd.Watts > maxUnitWatts {
			t.Fatalf("slot %d: %.3f W is not plausible", b.Slot(), rd.Watts)
		}
		if rd.Celsius < minCelsius || rd.Celsius > maxCelsius {
			t.Fatalf("slot %d: %.3f °C is not plausible", b.Slot(), rd.Celsius)
		}
		watts += rd.Watts
	}
	return watts / float64(n)
}

func (s *suite) sensorsPlausible(t *testing.T, r Rig) {
	for _, slot := range occupied(r) {
		b := bmc(t, r, slot)
		for _, p := range []drivers.PowerState{drivers.PowerOff, drivers.PowerOn} {
			if err := b.SetPower(ctxT(t), p); err != nil {
				t.Fatalf("slot %d: SetPower(%s): %v", slot, p, err)
			}
			sample(t, b, 3)
		}
	}
}

func (s *suite) sensorsFollowPower(t *testing.T, r Rig) {
	b := bmc(t, r, firstOccupied(t, r))
	if err := b.SetPower(ctxT(t), drivers.PowerOff); err != nil {
		t.Fatal(err)
	}
	off := sample(t, b, 5)
	if err := b.SetPower(ctxT(t), drivers.PowerOn); err != nil {
		t.Fatal(err)
	}
	on := sample(t, b, 5)
	if on <= off {
		t.Errorf("mean draw on = %.3f W, off = %.3f W; want on > off", on, off)
	}
	if err := b.SetPower(ctxT(t), drivers.PowerOff); err != nil {
		t.Fatal(err)
	}
	if again := sample(t, b, 5); again >= on {
		t.Errorf("mean draw after power off = %.3f W, want below %.3f W", again, on)
	}
}

func (s *suite) bootStage(t *testing.T, r Rig) {
	b := bmc(t, r, firstOccupied(t, r))
	st, ok := b.(drivers.BootStager)
	if !ok {
		t.Skip("BMC has no boot stages")
	}
	if err := b.SetPower(ctxT(t), drivers.PowerOff); err != nil {
		t.Fatal(err)
	}
	if got, err := st.BootStage(ctxT(t)); err != nil || got != drivers.StageOff {
		t.Fatalf("stage after power off = %q, %v; want %q", got, err, drivers.StageOff)
	}
	if err := b.SetPower(ctxT(t), drivers.PowerOn); err != nil {
		t.Fatal(err)
	}
	got, err := st.BootStage(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	switch got {
	case drivers.StageFirmware, drivers.StageBootstrap, drivers.StageOS, drivers.StageReady:
	default:
		t.Fatalf("stage after power on = %q", got)
	}
}

func (s *suite) rackReadings(t *testing.T, r Rig) {
	read := func() drivers.RackReadings {
		t.Helper()
		rd, err := r.Backplane.RMC().ReadRack(ctxT(t))
		if err != nil {
			t.Fatalf("ReadRack: %v", err)
		}
		if rd.InletCelsius < minCelsius || rd.InletCelsius > 60 {
			t.Fatalf("inlet %.3f °C is not plausible", rd.InletCelsius)
		}
		if rd.Watts < 0 || rd.Watts > maxUnitWatts*float64(r.Backplane.Slots())+100 {
			t.Fatalf("rack draw %.3f W is not plausible", rd.Watts)
		}
		return rd
	}
	slots := occupied(r)
	for _, slot := range slots {
		if err := bmc(t, r, slot).SetPower(ctxT(t), drivers.PowerOff); err != nil {
			t.Fatal(err)
		}
	}
	off := read()
	if len(slots) == 0 {
		return
	}
	for _, slot := range slots {
		if err := bmc(t, r, slot).SetPower(ctxT(t), drivers.PowerOn); err != nil {
			t.Fatal(err)
		}
	}
	if on := read(); on.Watts <= off.Watts {
		t.Errorf("rack draw with units on = %.3f W, off = %.3f W; want more when on", on.Watts, off.Watts)
	}
}

// calls is every BMC call, by name, for checks that apply to all of them.
func calls(b drivers.BMC) []struct {
	name string
	do   func(ctx context.Context) error
} {
	cs := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"PowerState", func(ctx context.Context) error { _, err := b.PowerState(ctx); return err }},
		{"SetPower", func(ctx context.Context) error { return b.SetPower(ctx, drivers.PowerOn) }},
		{"PowerCycle", b.PowerCycle},
		{"ReadSensors", func(ctx context.Context) error { _, err := b.ReadSensors(ctx); return err }},
	}
	if st, ok := b.(drivers.BootStager); ok {
		cs = append(cs, struct {
			name string
			do   func(ctx context.Context) error
		}{"BootStage", func(ctx context.Context) error { _, err := st.BootStage(ctx); return err }})
	}
	return cs
}

// guarded runs do and fails the test if it outlives the guard: a driver
// that ignores its context would otherwise hang the suite.
func guarded(t *testing.T, name string, do func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- do() }()
	select {
	case err := <-done:
		return err
	case <-time.After(callGuard):
		t.Fatalf("%s did not return %v after its context's deadline", name, callGuard)
		return nil
	}
}

func (s *suite) expiredContext(t *testing.T, r Rig) {
	slot := firstOccupied(t, r)
	b := bmc(t, r, slot)
	for _, c := range calls(b) {
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		err := guarded(t, c.name, func() error { return c.do(ctx) })
		cancel()
		wantDriverError(t, err, drivers.ErrTimeout, slot)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: error %q does not match context.DeadlineExceeded", c.name, err)
		}
	}
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := r.Backplane.RMC().ReadRack(ctx); !errors.Is(err, drivers.ErrTimeout) {
		t.Errorf("ReadRack with expired context: err = %v, want %v", err, drivers.ErrTimeout)
	}
	if _, err := r.Backplane.Present(ctx, slot); !errors.Is(err, drivers.ErrTimeout) {
		t.Errorf("Present with expired context: err = %v, want %v", err, drivers.ErrTimeout)
	}
}

func (s *suite) canceledContext(t *testing.T, r Rig) {
	slot := firstOccupied(t, r)
	b := bmc(t, r, slot)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, c := range calls(b) {
		err := guarded(t, c.name, func() error { return c.do(ctx) })
		wantDriverError(t, err, context.Canceled, slot)
	}
}

func (s *suite) hungBMC(t *testing.T, r Rig) {
	if r.Faults == nil {
		t.Skip("driver has no fault injection")
	}
	slots := occupied(r)
	if len(slots) == 0 {
		t.Skip("rack has no occupied slot")
	}
	slot := slots[0]
	b := bmc(t, r, slot)
	if err := r.Faults.Hang(slot); err != nil {
		t.Fatalf("Hang(%d): %v", slot, err)
	}
	for _, c := range calls(b) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		err := guarded(t, c.name, func() error { return c.do(ctx) })
		cancel()
		wantDriverError(t, err, drivers.ErrTimeout, slot)
	}
	// A hung BMC does not take the others down with it.
	if len(slots) > 1 {
		other := bmc(t, r, slots[1])
		err := guarded(t, "PowerState of another slot", func() error { _, err := other.PowerState(ctxT(t)); return err })
		if err != nil {
			t.Errorf("slot %d while slot %d hangs: %v", slots[1], slot, err)
		}
	}
	if err := r.Faults.Heal(slot); err != nil {
		t.Fatalf("Heal(%d): %v", slot, err)
	}
	if _, err := b.PowerState(ctxT(t)); err != nil {
		t.Errorf("after heal: %v", err)
	}
}

func (s *suite) unreachableBMC(t *testing.T, r Rig) {
	if r.Faults == nil {
		t.Skip("driver has no fault injection")
	}
	slot := firstOccupied(t, r)
	b := bmc(t, r, slot)
	if err := r.Faults.Unreachable(slot); err != nil {
		t.Fatalf("Unreachable(%d): %v", slot, err)
	}
	for _, c := range calls(b) {
		err := guarded(t, c.name, func() error { return c.do(ctxT(t)) })
		wantDriverError(t, err, drivers.ErrUnreachable, slot)
		if !drivers.Retryable(err) {
			t.Errorf("%s: %v is not retryable", c.name, err)
		}
	}
	if err := r.Faults.Heal(slot); err != nil {
		t.Fatalf("Heal(%d): %v", slot, err)
	}
	if _, err := b.PowerState(ctxT(t)); err != nil {
		t.Errorf("after heal: %v", err)
	}
}

// concurrent drives every slot from several goroutines at once; run with
// -race it finds unguarded state in the driver.
func (s *suite) concurrent(t *testing.T, r Rig) {
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for slot := 1; slot <= r.Backplane.Slots(); slot++ {
		for w := range 2 {
			wg.Go(func() {
				b, err := r.Backplane.BMC(slot)
				if err != nil {
					errs <- err
					return
				}
				ctx, cancel := context.WithTimeout(t.Context(), callGuard)
				defer cancel()
				for i := range 5 {
					p := drivers.PowerOn
					if (i+w)%2 == 1 {
						p = drivers.PowerOff
					}
					err := b.SetPower(ctx, p)
					if _, e := b.PowerState(ctx); err == nil {
						err = e
					}
					if _, e := b.ReadSensors(ctx); err == nil {
						err = e
					}
					if _, e := r.Backplane.Present(ctx, slot); err == nil {
						err = e
					}
					if _, e := r.Backplane.RMC().ReadRack(ctx); err == nil {
						err = e
					}
					if err != nil && !(slot == r.Empty && errors.Is(err, drivers.ErrUnreachable)) {
						errs <- fmt.Errorf("slot %d: %w", slot, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
