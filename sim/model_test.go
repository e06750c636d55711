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

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  sim.Config
	}{
		{"negative slots", sim.Config{Slots: -1}},
		{"too many slots", sim.Config{Slots: sim.MaxSlots + 1}},
		{"empty slot out of range", sim.Config{Slots: 2, Empty: []int{3}}},
		{"negative latency", sim.Config{BusLatency: -time.Second}},
		{"negative timing", sim.Config{Timings: sim.Timings{Firmware: -1}}},
		{"negative noise", sim.Config{Power: sim.PowerProfile{Ready: 1, NoiseWatts: -1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sim.New(tc.cfg); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
	r, err := sim.New(sim.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if r.Slots() != 5 {
		t.Errorf("default slots = %d, want 5", r.Slots())
	}
}

func TestBootStages(t *testing.T) {
	cfg := exact(sim.Config{Slots: 1})
	r, clk := newRack(t, cfg)
	b := bmcOf(t, r, 1)
	st := b.(drivers.BootStager)
	p := cfg.Power

	if got, err := st.BootStage(ctx(t)); err != nil || got != drivers.StageOff {
		t.Fatalf("before power on: %q, %v", got, err)
	}
	must(t, b.SetPower(ctx(t), drivers.PowerOn))
	// FastTimings: firmware 10ms, bootstrap 20ms, os 20ms; inrush 2ms.
	tests := []struct {
		at    time.Duration
		stage drivers.BootStage
		watts float64
	}{
		{0, drivers.StageFirmware, p.Inrush},
		{time.Millisecond, drivers.StageFirmware, p.Inrush},
		{2 * time.Millisecond, drivers.StageFirmware, p.Firmware},
		{10*time.Millisecond - 1, drivers.StageFirmware, p.Firmware},
		{10 * time.Millisecond, drivers.StageBootstrap, p.Bootstrap},
		{30*time.Millisecond - 1, drivers.StageBootstrap, p.Bootstrap},
		{30 * time.Millisecond, drivers.StageOS, p.OS},
		{50*time.Millisecond - 1, drivers.StageOS, p.OS},
		{50 * time.Millisecond, drivers.StageReady, p.Ready},
		{time.Hour, drivers.StageReady, p.Ready},
	}
	start := t0
	for _, tc := range tests {
		clk.Advance(start.Add(tc.at).Sub(clk.Now()))
		got, err := st.BootStage(ctx(t))
		if err != nil || got != tc.stage {
			t.Errorf("at %v: stage %q, %v; want %q", tc.at, got, err, tc.stage)
		}
		rd, err := b.ReadSensors(ctx(t))
		if err != nil || rd.Watts != tc.watts {
			t.Errorf("at %v: %v W, %v; want %v W", tc.at, rd.Watts, err, tc.watts)
		}
		if u := unit(t, r, 1); u.Stage != tc.stage || u.Power != drivers.PowerOn {
			t.Errorf("at %v: unit %+v", tc.at, u)
		}
	}

	// A power cycle restarts the boot from firmware.
	must(t, b.PowerCycle(ctx(t)))
	if got, _ := st.BootStage(ctx(t)); got != drivers.StageFirmware {
		t.Errorf("after cycle: stage %q, want firmware", got)
	}
	must(t, b.SetPower(ctx(t), drivers.PowerOff))
	if got, _ := st.BootStage(ctx(t)); got != drivers.StageOff {
		t.Errorf("after power off: stage %q, want off", got)
	}
}

func TestPowerDraw(t *testing.T) {
	cfg := exact(sim.Config{Slots: 4, Empty: []int{4}})
	p := cfg.Power
	th := cfg.Thermal
	tests := []struct {
		name    string
		prepare func(t *testing.T, r *sim.Rack)
		watts   float64 // slot 1 true draw
		rack    float64 // rack true draw
	}{
		{"all off", func(*testing.T, *sim.Rack) {}, p.Standby, p.RackOverhead + 3*p.Standby},
		{"slot 1 ready", func(t *testing.T, r *sim.Rack) {
			must(t, bmcOf(t, r, 1).SetPower(ctx(t), drivers.PowerOn))
		}, p.Ready, p.RackOverhead + p.Ready + 2*p.Standby},
		{"slot 1 pulled", func(t *testing.T, r *sim.Rack) {
			must(t, bmcOf(t, r, 1).SetPower(ctx(t), drivers.PowerOn))
			must(t, r.PullSlotPower(1))
		}, 0, p.RackOverhead + 2*p.Standby},
		{"all ready", func(t *testing.T, r *sim.Rack) {
			for s := 1; s <= 3; s++ {
				must(t, bmcOf(t, r, s).SetPower(ctx(t), drivers.PowerOn))
			}
		}, p.Ready, p.RackOverhead + 3*p.Ready},
		{"rack pulled", func(t *testing.T, r *sim.Rack) { r.PullRackPower() }, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, clk := newRack(t, cfg)
			tc.prepare(t, r)
			clk.Advance(time.Minute)
			u := unit(t, r, 1)
			if !near(u.Watts, tc.watts) {
				t.Errorf("slot 1 draws %v W, want %v W", u.Watts, tc.watts)
			}
			if want := th.Inlet + th.RisePerWatt*tc.watts; !near(u.Celsius, want) {
				t.Errorf("slot 1 at %v °C, want %v °C", u.Celsius, want)
			}
			if got := r.RackWatts(); !near(got, tc.rack) {
				t.Errorf("rack draws %v W, want %v W", got, tc.rack)
			}
			if tc.rack == 0 {
				return
			}
			rd, err := r.Backplane().RMC().ReadRack(ctx(t))
			if err != nil || !near(rd.Watts, tc.rack) || rd.InletCelsius != th.Inlet {
				t.Errorf("RMC reads %+v, %v; want %v W at %v °C", rd, err, tc.rack, th.Inlet)
			}
		})
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestTemperatureFollowsPower(t *testing.T) {
	cfg := exact(sim.Config{Slots: 1})
	cfg.Thermal.Tau = time.Second
	r, clk := newRack(t, cfg)
	th, p := cfg.Thermal, cfg.Power
	idle := th.Inlet + th.RisePerWatt*p.Standby
	if got := unit(t, r, 1).Celsius; !near(got, idle) {
		t.Fatalf("at start %v °C, want %v", got, idle)
	}
	must(t, bmcOf(t, r, 1).SetPower(ctx(t), drivers.PowerOn))
	clk.Advance(time.Hour)
	hot := th.Inlet + th.RisePerWatt*p.Ready
	if got := unit(t, r, 1).Celsius; !near(got, hot) {
		t.Fatalf("after an hour on: %v °C, want %v", got, hot)
	}
	must(t, bmcOf(t, r, 1).SetPower(ctx(t), drivers.PowerOff))
	clk.Advance(time.Second) // one time constant: 1/e of the way left
	want := idle + (hot-idle)/math.E
	if got := unit(t, r, 1).Celsius; math.Abs(got-want) > 1e-6 {
		t.Fatalf("one tau after power off: %v °C, want %v", got, want)
	}
	r.SetInletTemperature(35)
	clk.Advance(time.Hour)
	if got, want := unit(t, r, 1).Celsius, 35+th.RisePerWatt*p.Standby; !near(got, want) {
		t.Fatalf("after inlet rise: %v °C, want %v", got, want)
	}
}

// script drives a rack through a fixed sequence and returns every reading.
func script(t *testing.T, seed uint64) []float64 {
	r, clk := newRack(t, sim.Config{Slots: 3, Seed: seed})
	bp := r.Backplane()
	var out []float64
	read := func() {
		for s := 1; s <= 3; s++ {
			rd, err := bmcOf(t, r, s).ReadSensors(ctx(t))
			must(t, err)
			out = append(out, rd.Watts, rd.Celsius)
		}
		rr, err := bp.RMC().ReadRack(ctx(t))
		must(t, err)
		out = append(out, rr.Watts, rr.InletCelsius)
	}
	read()
	for s := 1; s <= 3; s++ {
		must(t, bmcOf(t, r, s).SetPower(ctx(t), drivers.PowerOn))
		clk.Advance(7 * time.Millisecond)
		read()
	}
	clk.Advance(time.Second)
	read()
	must(t, r.PullSlotPower(2))
	must(t, bmcOf(t, r, 3).PowerCycle(ctx(t)))
	clk.Advance(25 * time.Millisecond)
	read2 := func() {
		for _, s := range []int{1, 3} {
			rd, err := bmcOf(t, r, s).ReadSensors(ctx(t))
			must(t, err)
			out = append(out, rd.Watts, rd.Celsius)
		}
	}
	read2()
	must(t, r.StaleBMC(1))
	read2()
	return out
}

func TestSeedDeterminism(t *testing.T) {
	a, b, c := script(t, 42), script(t, 42), script(t, 43)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different readings:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("different seeds, same readings: %v", a)
	}
}

func TestManualClock(t *testing.T) {
	c := sim.NewManualClock(t0)
	c.Advance(time.Second)
	c.Advance(-time.Hour)
	if got := c.Now(); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("Now() = %v, want %v", got, t0.Add(time.Second))
	}
}

func TestStartOn(t *testing.T) {
	r, _ := newRack(t, sim.Config{Slots: 2, Empty: []int{2}, StartOn: true})
	if u := unit(t, r, 1); u.Power != drivers.PowerOn || u.Stage != drivers.StageReady {
		t.Errorf("slot 1 at start: %+v, want on and ready", u)
	}
	if u := unit(t, r, 2); u.Present || u.Power != drivers.PowerOff {
		t.Errorf("empty slot 2 at start: %+v", u)
	}
	if _, err := r.Unit(3); !errors.Is(err, drivers.ErrNoSlot) {
		t.Errorf("Unit(3): %v, want %v", err, drivers.ErrNoSlot)
	}
}
