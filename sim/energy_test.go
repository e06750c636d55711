package sim_test

import (
	"math"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/sim"
)

func within(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)+1e-9
}

// TestEnergyIntegratesTheDraw: the energy counts are the exact integral of
// the modelled draw (inrush, every boot stage, standby, overhead, fans and
// the watchdog), and the monitors report them times their gain.
func TestEnergyIntegratesTheDraw(t *testing.T) {
	cfg := exact(sim.Config{Slots: 2, Fans: quietFans()})
	r, clk := newRack(t, cfg)
	p, fp := cfg.Power, cfg.Fans
	tm := sim.FastTimings()
	fc := fanController(t, r)
	b1 := bmcOf(t, r, 1)

	// 10 s of standby, fans at 100%.
	clk.Advance(10 * time.Second)
	// Unit 1 on, then an hour; fans at 50% from the start of that hour.
	must(t, b1.SetPower(ctx(t), drivers.PowerOn))
	must(t, fc.SetFanDuty(ctx(t), 50))
	clk.Advance(time.Hour)

	unit1 := 10*p.Standby + p.Inrush*p.InrushDuration.Seconds() +
		p.Firmware*(tm.Firmware-p.InrushDuration).Seconds() + p.Bootstrap*tm.Bootstrap.Seconds() + p.OS*tm.OS.Seconds() +
		p.Ready*(time.Hour-tm.Total()).Seconds()
	unit2 := p.Standby * (time.Hour + 10*time.Second).Seconds()
	// Fans: 100% for 10 s, 50% until the watchdog fires, 100% after.
	fan := func(d float64) float64 { return float64(fp.Count) * fp.Watts * d * d * d }
	wd := fp.Watchdog.Seconds()
	fans := fan(1)*10 + fan(0.5)*wd + fan(1)*(3600-wd)
	rack := unit1 + unit2 + p.RackOverhead*3610 + fans

	if got := unit(t, r, 1).Joules; !within(got, unit1, 1e-12) {
		t.Errorf("unit 1: %v J, want %v J", got, unit1)
	}
	if got := unit(t, r, 2).Joules; !within(got, unit2, 1e-12) {
		t.Errorf("unit 2: %v J, want %v J", got, unit2)
	}
	if got := r.RackJoules(); !within(got, rack, 1e-12) {
		t.Errorf("rack: %v J, want %v J", got, rack)
	}

	// The monitors count the same, times their gains.
	gains, rmcGain := r.Gains()
	rd, err := b1.ReadSensors(ctx(t))
	must(t, err)
	if !within(rd.Joules, unit1*gains[0], 1e-12) {
		t.Errorf("BMC 1 reads %v J, want %v J (gain %v)", rd.Joules, unit1*gains[0], gains[0])
	}
	rr, err := r.Backplane().RMC().ReadRack(ctx(t))
	must(t, err)
	if !within(rr.Joules, rack*rmcGain, 1e-12) {
		t.Errorf("RMC reads %v J, want %v J (gain %v)", rr.Joules, rack*rmcGain, rmcGain)
	}
	for i, g := range append(gains, rmcGain) {
		if math.Abs(g-1) > 6*p.EnergyGainError {
			t.Errorf("monitor %d: gain %v is more than 6σ off", i, g)
		}
	}
}

// TestEnergyOfPulledSlotsAndStaleMonitors: a slot without power counts
// nothing, its count stays (it does not reset), and a stale BMC keeps
// reporting the count it had.
func TestEnergyOfPulledSlotsAndStaleMonitors(t *testing.T) {
	cfg := exact(sim.Config{Slots: 2, StartOn: true})
	cfg.Power.EnergyGainError = 0
	r, clk := newRack(t, cfg)
	p := cfg.Power
	clk.Advance(time.Minute)
	must(t, r.PullSlotPower(1))
	clk.Advance(time.Minute)
	must(t, r.RestoreSlotPower(1))
	clk.Advance(time.Minute)
	if got, want := unit(t, r, 1).Joules, p.Ready*60+p.Standby*60; !within(got, want, 1e-12) {
		t.Errorf("slot 1: %v J, want %v J (ready a minute, no power a minute, standby a minute)", got, want)
	}

	b2 := bmcOf(t, r, 2)
	before, err := b2.ReadSensors(ctx(t))
	must(t, err)
	must(t, r.StaleBMC(2))
	clk.Advance(time.Minute)
	stale, err := b2.ReadSensors(ctx(t))
	must(t, err)
	if stale != before {
		t.Errorf("stale BMC reads %+v, want what it had: %+v", stale, before)
	}
	must(t, r.HealBMC(2))
	fresh, err := b2.ReadSensors(ctx(t))
	must(t, err)
	if want := p.Ready * 240; !within(fresh.Joules, want, 1e-12) {
		t.Errorf("healed BMC reads %v J, want %v J", fresh.Joules, want)
	}

	// Removing and inserting a unit keeps the slot's count.
	must(t, r.RemoveUnit(2))
	clk.Advance(time.Minute)
	must(t, r.InsertUnit(2))
	clk.Advance(time.Minute)
	if got, want := unit(t, r, 2).Joules, p.Ready*240+p.Standby*60; !within(got, want, 1e-12) {
		t.Errorf("slot 2 after a swap: %v J, want %v J", got, want)
	}
}
