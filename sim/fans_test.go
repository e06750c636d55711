package sim_test

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/sim"
)

// quietFans are DefaultFans without tachometer noise.
func quietFans() sim.FanProfile {
	f := sim.DefaultFans()
	f.NoiseRPM = 0
	return f
}

func fanController(t *testing.T, r *sim.Rack) drivers.FanController {
	t.Helper()
	fc, ok := r.Backplane().RMC().(drivers.FanController)
	if !ok {
		t.Fatal("the simulator's RMC is not a drivers.FanController")
	}
	return fc
}

func readFans(t *testing.T, fc drivers.FanController) []drivers.FanReading {
	t.Helper()
	fs, err := fc.Fans(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestFanSpeedFollowsDutyWithLag(t *testing.T) {
	cfg := exact(sim.Config{Slots: 1, StartOn: true, Fans: quietFans()})
	r, clk := newRack(t, cfg)
	fc := fanController(t, r)
	p := cfg.Fans

	fs := readFans(t, fc)
	if len(fs) != p.Count {
		t.Fatalf("%d fans, want %d", len(fs), p.Count)
	}
	for i, f := range fs {
		if f.Fan != i+1 || f.RPM != p.MaxRPM || f.DutyPercent != 100 {
			t.Errorf("fan at power-up: %+v, want fan %d at %v RPM and 100%%", f, i+1, p.MaxRPM)
		}
	}

	must(t, fc.SetFanDuty(ctx(t), 40))
	target := p.MaxRPM * 0.4
	clk.Advance(p.Tau)
	// One time constant: 63% of the way.
	want := target + (p.MaxRPM-target)*math.Exp(-1)
	for _, f := range readFans(t, fc) {
		if !near(f.RPM, want) || f.DutyPercent != 40 {
			t.Errorf("one tau after 40%%: %+v, want %.1f RPM", f, want)
		}
	}
	clk.Advance(20 * p.Tau)
	for _, f := range readFans(t, fc) {
		if math.Abs(f.RPM-target) > 0.01 {
			t.Errorf("settled at 40%%: %v RPM, want %v", f.RPM, target)
		}
	}

	for _, bad := range []float64{-1, 100.5, math.NaN(), math.Inf(1)} {
		if err := fc.SetFanDuty(ctx(t), bad); !errors.Is(err, drivers.ErrRefused) {
			t.Errorf("SetFanDuty(%v): %v, want %v", bad, err, drivers.ErrRefused)
		}
	}
}

func TestFanWatchdog(t *testing.T) {
	cfg := exact(sim.Config{Slots: 1, StartOn: true, Fans: quietFans()})
	r, clk := newRack(t, cfg)
	fc := fanController(t, r)
	must(t, fc.SetFanDuty(ctx(t), 30))
	clk.Advance(cfg.Fans.Watchdog - time.Millisecond)
	if d := readFans(t, fc)[0].DutyPercent; d != 30 {
		t.Fatalf("just before the watchdog: duty %v, want 30", d)
	}
	clk.Advance(time.Millisecond)
	if d := readFans(t, fc)[0].DutyPercent; d != 100 {
		t.Fatalf("watchdog expired: duty %v, want 100", d)
	}
	// Setting the duty again feeds it.
	must(t, fc.SetFanDuty(ctx(t), 30))
	if d := r.Fans()[0].Duty; d != 30 {
		t.Fatalf("after a new duty: %v, want 30", d)
	}
	// Rack power: no duty, no speed; back on, the RMC starts at 100%.
	r.PullRackPower()
	if _, err := fc.Fans(ctx(t)); !errors.Is(err, drivers.ErrUnreachable) {
		t.Errorf("fans without rack power: %v, want unreachable", err)
	}
	clk.Advance(time.Second)
	if f := r.Fans()[0]; f.Duty != 0 || f.RPM > 1 {
		t.Errorf("fan without rack power: %+v", f)
	}
	r.RestoreRackPower()
	if d := readFans(t, fc)[0].DutyPercent; d != 100 {
		t.Errorf("after rack power is back: duty %v, want 100", d)
	}
}

func TestStuckFan(t *testing.T) {
	cfg := exact(sim.Config{Slots: 1, StartOn: true, Fans: quietFans()})
	r, clk := newRack(t, cfg)
	fc := fanController(t, r)
	must(t, r.StickFan(2))
	fs := readFans(t, fc)
	if fs[1].RPM != 0 || fs[1].DutyPercent != 100 {
		t.Errorf("stuck fan: %+v, want 0 RPM while driven at 100%%", fs[1])
	}
	if fs[0].RPM != cfg.Fans.MaxRPM {
		t.Errorf("the other fans: %+v", fs[0])
	}
	clk.Advance(time.Second)
	if got := r.Fans()[1]; !got.Stuck || got.RPM != 0 {
		t.Errorf("truth: %+v", got)
	}
	must(t, r.HealFan(2))
	clk.Advance(cfg.Fans.Tau)
	if rpm := readFans(t, fc)[1].RPM; !near(rpm, cfg.Fans.MaxRPM*(1-math.Exp(-1))) {
		t.Errorf("healed fan after one tau: %v RPM", rpm)
	}
	for _, n := range []int{0, 5} {
		if err := r.StickFan(n); !errors.Is(err, sim.ErrNoFan) {
			t.Errorf("StickFan(%d): %v, want %v", n, err, sim.ErrNoFan)
		}
	}
	if got := r.Faults()[sim.FaultFanStuck]; got != 1 {
		t.Errorf("fan-stuck faults = %d, want 1", got)
	}
}

func TestNoFans(t *testing.T) {
	r, _ := newRack(t, exact(sim.Config{Slots: 1}))
	fc := fanController(t, r)
	if _, err := fc.Fans(ctx(t)); !errors.Is(err, drivers.ErrRefused) {
		t.Errorf("Fans on a rack without fans: %v, want refused", err)
	}
	if err := fc.SetFanDuty(ctx(t), 50); !errors.Is(err, drivers.ErrRefused) {
		t.Errorf("SetFanDuty on a rack without fans: %v, want refused", err)
	}
	if len(r.Fans()) != 0 {
		t.Errorf("Fans() = %v", r.Fans())
	}
}

func TestBadFanProfile(t *testing.T) {
	for _, f := range []sim.FanProfile{
		{Count: -1}, {Count: sim.MaxFans + 1}, {Count: 2}, {Count: 2, MaxRPM: 1000, Cooling: 1},
		{Count: 2, MaxRPM: 1000, Tau: -1}, {Count: 1, MaxRPM: math.Inf(1)},
	} {
		if _, err := sim.New(sim.Config{Fans: f, Logger: quiet}); err == nil {
			t.Errorf("New accepted fans %+v", f)
		}
	}
}

// TestAirflowCools: the fans' duty moves every unit's temperature, a stuck
// fan takes its share of the airflow away, and a heated unit runs hotter.
func TestAirflowCools(t *testing.T) {
	cfg := exact(sim.Config{Slots: 2, StartOn: true, Fans: quietFans()})
	r, clk := newRack(t, cfg)
	fc := fanController(t, r)
	th, p, fp := cfg.Thermal, cfg.Power, cfg.Fans
	rise := th.RisePerWatt * p.Ready
	tests := []struct {
		name  string
		do    func()
		slot1 float64
	}{
		{"full airflow", func() {}, th.Inlet + rise*(1-fp.Cooling)},
		{"half duty", func() { must(t, fc.SetFanDuty(ctx(t), 50)) }, th.Inlet + rise*(1-fp.Cooling*0.5)},
		{"no airflow", func() { must(t, fc.SetFanDuty(ctx(t), 0)) }, th.Inlet + rise},
		{"one of four stuck at full duty", func() {
			must(t, fc.SetFanDuty(ctx(t), 100))
			must(t, r.StickFan(1))
		}, th.Inlet + rise*(1-fp.Cooling*0.75)},
		{"heated unit", func() { must(t, r.HeatUnit(1, 3)) }, th.Inlet + 3*rise*(1-fp.Cooling*0.75)},
		{"heat cleared", func() { must(t, r.HeatUnit(1, 1)) }, th.Inlet + rise*(1-fp.Cooling*0.75)},
	}
	for _, tc := range tests {
		tc.do()
		clk.Advance(time.Millisecond) // Tau 0: the temperature jumps as soon as time passes
		if got := unit(t, r, 1).Celsius; !near(got, tc.slot1) {
			t.Errorf("%s: slot 1 at %v °C, want %v", tc.name, got, tc.slot1)
		}
	}
	if err := r.HeatUnit(1, 0.5); err == nil {
		t.Error("HeatUnit accepted a factor below 1")
	}
}

func TestFanDeterminism(t *testing.T) {
	run := func(seed uint64) []float64 {
		r, clk := newRack(t, sim.Config{Slots: 2, Seed: seed, StartOn: true, Fans: sim.DefaultFans()})
		fc := fanController(t, r)
		var out []float64
		for i := range 5 {
			must(t, fc.SetFanDuty(ctx(t), float64(20*i)))
			clk.Advance(70 * time.Millisecond)
			for _, f := range readFans(t, fc) {
				out = append(out, f.RPM)
			}
			rd, err := bmcOf(t, r, 1).ReadSensors(ctx(t))
			must(t, err)
			out = append(out, rd.Celsius, rd.Joules)
		}
		return out
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different readings:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Error("different seeds, same readings")
	}
}
