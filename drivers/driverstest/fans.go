package driverstest

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
)

// energyMonotonic: a BMC's energy accumulator (Readings.Joules), if it has
// one, never goes back while the unit keeps its power, and grows while the
// unit draws.
func (s *suite) energyMonotonic(t *testing.T, r Rig) {
	b := bmc(t, r, firstOccupied(t, r))
	if err := b.SetPower(ctxT(t), drivers.PowerOn); err != nil {
		t.Fatal(err)
	}
	first, err := b.ReadSensors(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if first.Joules == 0 {
		t.Skip("the BMC's power monitor has no energy accumulator")
	}
	last := first
	deadline := time.Now().Add(s.h.Settle)
	for {
		rd, err := b.ReadSensors(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if rd.Joules < last.Joules || math.IsNaN(rd.Joules) {
			t.Fatalf("slot %d: energy went from %v J to %v J", b.Slot(), last.Joules, rd.Joules)
		}
		last = rd
		if rd.Joules > first.Joules {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %d: energy stayed at %v J for %v while the unit was on", b.Slot(), rd.Joules, s.h.Settle)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fans checks the RMC's optional drivers.FanController: plausible
// readings, refusals of bad duties, the duty read back, speeds that follow
// the duty, and contexts honoured.
func (s *suite) fans(t *testing.T, r Rig) {
	fc, ok := r.Backplane.RMC().(drivers.FanController)
	if !ok {
		t.Skip("the RMC has no fan controller")
	}
	fs, err := fc.Fans(ctxT(t))
	if errors.Is(err, drivers.ErrRefused) {
		t.Skip("the rack has no fans")
	}
	if err != nil {
		t.Fatalf("Fans: %v", err)
	}
	if len(fs) == 0 {
		t.Fatal("Fans returned no fans and no error")
	}
	for i, f := range fs {
		if f.Fan != i+1 {
			t.Errorf("fan %d is numbered %d", i+1, f.Fan)
		}
		if f.RPM < 0 || f.RPM > 50_000 || math.IsNaN(f.RPM) {
			t.Errorf("fan %d: %v RPM is not plausible", f.Fan, f.RPM)
		}
		if !(f.DutyPercent >= 0 && f.DutyPercent <= 100) {
			t.Errorf("fan %d: duty %v%% is not in 0..100", f.Fan, f.DutyPercent)
		}
	}
	for _, bad := range []float64{-1, 101, math.NaN()} {
		err := fc.SetFanDuty(ctxT(t), bad)
		if !errors.Is(err, drivers.ErrRefused) {
			t.Errorf("SetFanDuty(%v): %v, want %v", bad, err, drivers.ErrRefused)
		}
	}

	mean := func() float64 {
		fs, err := fc.Fans(ctxT(t))
		if err != nil {
			t.Fatalf("Fans: %v", err)
		}
		sum := 0.0
		for _, f := range fs {
			sum += f.RPM
		}
		return sum / float64(len(fs))
	}
	// Full speed, then off: the speed falls below half of full.
	if err := fc.SetFanDuty(ctxT(t), 100); err != nil {
		t.Fatalf("SetFanDuty(100): %v", err)
	}
	full := 0.0
	deadline := time.Now().Add(s.h.Settle)
	for full = mean(); full <= 0; full = mean() {
		if time.Now().After(deadline) {
			t.Fatal("fans at 100% do not turn")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := fc.SetFanDuty(ctxT(t), 0); err != nil {
		t.Fatalf("SetFanDuty(0): %v", err)
	}
	if d := fcDuty(t, fc); d != 0 {
		t.Errorf("duty read back %v%%, want 0", d)
	}
	deadline = time.Now().Add(s.h.Settle)
	for mean() >= full/2 {
		if time.Now().After(deadline) {
			t.Fatalf("fans at 0%% still turn at more than half of %v RPM", full)
		}
		time.Sleep(5 * time.Millisecond)
	}

	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := fc.Fans(ctx); !errors.Is(err, drivers.ErrTimeout) {
		t.Errorf("Fans with an expired context: %v, want %v", err, drivers.ErrTimeout)
	}
	if err := fc.SetFanDuty(ctx, 50); !errors.Is(err, drivers.ErrTimeout) {
		t.Errorf("SetFanDuty with an expired context: %v, want %v", err, drivers.ErrTimeout)
	}
}

func fcDuty(t *testing.T, fc drivers.FanController) float64 {
	t.Helper()
	fs, err := fc.Fans(ctxT(t))
	if err != nil {
		t.Fatalf("Fans: %v", err)
	}
	return fs[0].DutyPercent
}
