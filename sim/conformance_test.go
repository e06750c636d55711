package sim_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/racklet/rack/drivers/driverstest"
	"github.com/racklet/rack/sim"
)

// quiet is a logger for tests that do not look at the log.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// faults adapts the simulator's fault API to the suite's.
type faults struct{ r *sim.Rack }

func (f faults) Hang(slot int) error        { return f.r.HangBMC(slot) }
func (f faults) Unreachable(slot int) error { return f.r.DisconnectBMC(slot) }
func (f faults) Heal(slot int) error        { return f.r.HealBMC(slot) }

func TestConformance(t *testing.T) {
	tests := []struct {
		name string
		cfg  sim.Config
	}{
		{"fast", sim.Config{Slots: 4, Empty: []int{3}, Seed: 1, BusLatency: 50 * time.Microsecond}},
		{"no latency, start on", sim.Config{Slots: 3, Empty: []int{1}, Seed: 2, StartOn: true}},
		{"fans", sim.Config{Slots: 2, Seed: 4, BusLatency: 50 * time.Microsecond, Fans: sim.DefaultFans()}},
		{"realistic", func() sim.Config {
			c := sim.Realistic(3, 3)
			c.BusLatency = 100 * time.Microsecond
			return c
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			empty := 0
			if len(tc.cfg.Empty) > 0 {
				empty = tc.cfg.Empty[0]
			}
			driverstest.Run(t, driverstest.Harness{
				New: func(t *testing.T) driverstest.Rig {
					cfg := tc.cfg
					cfg.Logger = quiet
					r, err := sim.New(cfg)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { r.Close() })
					return driverstest.Rig{Backplane: r.Backplane(), Empty: empty, Faults: faults{r}}
				},
			})
		})
	}
}
