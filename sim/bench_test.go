package sim_test

import (
	"context"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/sim"
)

// BenchmarkBMC measures one BMC call through the simulated SMBus, without
// and with bus latency.
func BenchmarkBMC(b *testing.B) {
	for _, tc := range []struct {
		name    string
		latency time.Duration
	}{{"no-latency", 0}, {"latency-100us", 100 * time.Microsecond}} {
		b.Run(tc.name, func(b *testing.B) {
			r, err := sim.New(sim.Config{Slots: 5, Seed: 1, BusLatency: tc.latency, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			bmc, err := r.Backplane().BMC(1)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := bmc.SetPower(ctx, drivers.PowerOn); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := bmc.ReadSensors(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBusContention measures BMC calls from many goroutines sharing
// the one simulated SMBus.
func BenchmarkBusContention(b *testing.B) {
	r, err := sim.New(sim.Config{Slots: 5, Seed: 1, BusLatency: 10 * time.Microsecond, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	bp := r.Backplane()
	b.RunParallel(func(pb *testing.PB) {
		bmc, err := bp.BMC(1)
		if err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if _, err := bmc.PowerState(context.Background()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
