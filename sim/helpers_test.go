package sim_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/sim"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// exact is a profile without noise, inrush or thermal lag, so readings are
// exact figures.
func exact(cfg sim.Config) sim.Config {
	p := sim.DefaultPower()
	p.NoiseWatts = 0
	cfg.Power = p
	th := sim.DefaultThermal()
	th.NoiseCelsius = 0
	th.Tau = 0
	cfg.Thermal = th
	return cfg
}

// edges records OnPower calls.
type edges struct {
	mu  sync.Mutex
	got []edge
}

type edge struct {
	Slot int
	On   bool
}

func (e *edges) hook(slot int, on bool) {
	e.mu.Lock()
	e.got = append(e.got, edge{slot, on})
	e.mu.Unlock()
}

func (e *edges) take() []edge {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.got
	e.got = nil
	return g
}

// newRack builds a rack on a manual clock with no bus latency.
func newRack(t *testing.T, cfg sim.Config) (*sim.Rack, *sim.ManualClock) {
	t.Helper()
	clk := sim.NewManualClock(t0)
	cfg.Clock = clk
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	r, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, clk
}

func bmcOf(t *testing.T, r *sim.Rack, slot int) drivers.BMC {
	t.Helper()
	b, err := r.Backplane().BMC(slot)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func unit(t *testing.T, r *sim.Rack, slot int) sim.UnitStatus {
	t.Helper()
	u, err := r.Unit(slot)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
