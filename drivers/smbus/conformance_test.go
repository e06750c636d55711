package smbus_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/racklet/rack/drivers/driverstest"
	"github.com/racklet/rack/drivers/smbus"
	"github.com/racklet/rack/sim"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// plainBus hides the emulated bus's TxContext, so the driver takes the
// path it takes on real hardware (Tx it cannot interrupt).
type plainBus struct{ i2c.Bus }

// faults adapts the simulator's BMC faults to the suite's.
type faults struct{ r *sim.Rack }

func (f faults) Hang(slot int) error        { return f.r.HangBMC(slot) }
func (f faults) Unreachable(slot int) error { return f.r.DisconnectBMC(slot) }
func (f faults) Heal(slot int) error        { return f.r.HealBMC(slot) }

// rig is a simulated rack, its emulated bus and the driver on it.
type rig struct {
	rack *sim.Rack
	bus  *sim.FirmwareBus
	bp   *smbus.Backplane
}

func newRig(t *testing.T, cfg sim.Config, fw sim.FirmwareConfig, plain bool) rig {
	t.Helper()
	cfg.Logger = quiet
	r, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	bus, err := r.FirmwareBus(fw)
	if err != nil {
		t.Fatal(err)
	}
	var b i2c.Bus = bus
	if plain {
		b = plainBus{bus}
	}
	bp, err := smbus.New(smbus.Config{Bus: b, Slots: r.Slots(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return rig{rack: r, bus: bus, bp: bp}
}

func TestConformance(t *testing.T) {
	tests := []struct {
		name  string
		cfg   sim.Config
		plain bool
	}{
		{"fast", sim.Config{Slots: 4, Empty: []int{3}, Seed: 1, BusLatency: 50 * time.Microsecond}, false},
		{"no latency, start on", sim.Config{Slots: 3, Empty: []int{1}, Seed: 2, StartOn: true}, false},
		{"plain Tx", sim.Config{Slots: 3, Empty: []int{2}, Seed: 3, BusLatency: 50 * time.Microsecond}, true},
		{"realistic", func() sim.Config {
			c := sim.Realistic(3, 4)
			c.BusLatency = 100 * time.Microsecond
			return c
		}(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			empty := 0
			if len(tc.cfg.Empty) > 0 {
				empty = tc.cfg.Empty[0]
			}
			driverstest.Run(t, driverstest.Harness{
				New: func(t *testing.T) driverstest.Rig {
					rg := newRig(t, tc.cfg, sim.FirmwareConfig{}, tc.plain)
					return driverstest.Rig{Backplane: rg.bp, Empty: empty, Faults: faults{rg.rack}}
				},
			})
		})
	}
}
