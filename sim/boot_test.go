package sim_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/sim"
)

// TestBootPaths: the stages a unit goes through, by boot source, as its
// BMC reports them and as the simulator's truth has them.
func TestBootPaths(t *testing.T) {
	tm := sim.Timings{Firmware: 10 * time.Second, Bootstrap: 20 * time.Second, OS: 10 * time.Second}
	type step struct {
		at       time.Duration // since power-on
		reported drivers.BootStage
		truth    drivers.BootStage
	}
	for _, tt := range []struct {
		name   string
		source drivers.BootSource // "" never set
		bad    bool
		steps  []step
	}{
		{"never set", "", false, []step{
			{0, drivers.StageFirmware, drivers.StageFirmware},
			{10 * time.Second, drivers.StageBootstrap, drivers.StageBootstrap},
			{29 * time.Second, drivers.StageBootstrap, drivers.StageBootstrap},
			{30 * time.Second, drivers.StageOS, drivers.StageOS},
			{40 * time.Second, drivers.StageReady, drivers.StageReady},
		}},
		{"network", drivers.BootNetwork, false, []step{
			{0, drivers.StageFirmware, drivers.StageFirmware},
			{24 * time.Second, drivers.StageBootstrap, drivers.StageBootstrap},
			{25 * time.Second, drivers.StageImageVerified, drivers.StageBootstrap},
			{30 * time.Second, drivers.StageOS, drivers.StageOS},
			{40 * time.Second, drivers.StageReady, drivers.StageReady},
		}},
		{"local", drivers.BootLocal, false, []step{
			{0, drivers.StageFirmware, drivers.StageFirmware},
			{10 * time.Second, drivers.StageOS, drivers.StageOS},
			{20 * time.Second, drivers.StageReady, drivers.StageReady},
		}},
		{"network bad image", drivers.BootNetwork, true, []step{
			{0, drivers.StageFirmware, drivers.StageFirmware},
			{10 * time.Second, drivers.StageBootstrap, drivers.StageBootstrap},
			{time.Hour, drivers.StageBootstrap, drivers.StageBootstrap},
		}},
		{"local ignores a bad network image", drivers.BootLocal, true, []step{
			{20 * time.Second, drivers.StageReady, drivers.StageReady},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, clk := newRack(t, sim.Config{Slots: 1, Timings: tm})
			b := bmcOf(t, r, 1)
			bs := b.(drivers.BootSourceSetter)
			if tt.source != "" {
				must(t, bs.SetBootSource(ctx(t), tt.source))
			}
			if tt.bad {
				must(t, r.FailNetworkBoot(1))
			}
			want := tt.source
			if want == "" {
				want = drivers.BootNetwork
			}
			if got, err := bs.BootSource(ctx(t)); err != nil || got != want {
				t.Fatalf("BootSource = %q, %v; want %q", got, err, want)
			}
			must(t, b.SetPower(ctx(t), drivers.PowerOn))
			start := time.Duration(0)
			for _, s := range tt.steps {
				clk.Advance(s.at - start)
				start = s.at
				got, err := b.(drivers.BootStager).BootStage(ctx(t))
				if err != nil || got != s.reported {
					t.Fatalf("at %v: BMC reports %q, %v; want %q", s.at, got, err, s.reported)
				}
				if u := unit(t, r, 1); u.Stage != s.truth {
					t.Fatalf("at %v: the unit is in %q, want %q", s.at, u.Stage, s.truth)
				}
			}
		})
	}
}

// TestBootSettingsTakeEffectAtPowerOn: changing the source or the image's
// fate never changes a boot under way; the next power-on or cycle uses it.
func TestBootSettingsTakeEffectAtPowerOn(t *testing.T) {
	tm := sim.Timings{Firmware: 10 * time.Second, Bootstrap: 20 * time.Second, OS: 10 * time.Second}
	r, clk := newRack(t, sim.Config{Slots: 2, Timings: tm, StartOn: true})
	b := bmcOf(t, r, 1)
	must(t, b.(drivers.BootSourceSetter).SetBootSource(ctx(t), drivers.BootLocal))
	must(t, r.FailNetworkBoot(1))
	if u := unit(t, r, 1); u.Stage != drivers.StageReady {
		t.Fatalf("a ready unit is in %q after its settings changed", u.Stage)
	}
	must(t, b.PowerCycle(ctx(t)))
	clk.Advance(tm.Firmware)
	if u := unit(t, r, 1); u.Stage != drivers.StageOS {
		t.Fatalf("after a cycle with source local: %q, want os", u.Stage)
	}
	must(t, b.(drivers.BootSourceSetter).SetBootSource(ctx(t), drivers.BootNetwork))
	must(t, b.PowerCycle(ctx(t)))
	clk.Advance(time.Hour)
	if u := unit(t, r, 1); u.Stage != drivers.StageBootstrap {
		t.Fatalf("a network boot of a bad image: %q, want stuck in bootstrap", u.Stage)
	}
	must(t, r.HealNetworkBoot(1))
	if u := unit(t, r, 1); u.Stage != drivers.StageBootstrap {
		t.Fatalf("healing changed the boot under way: %q", u.Stage)
	}
	must(t, b.PowerCycle(ctx(t)))
	clk.Advance(tm.Total())
	if u := unit(t, r, 1); u.Stage != drivers.StageReady {
		t.Fatalf("after the heal and a cycle: %q, want ready", u.Stage)
	}
	if n := r.Faults()[sim.FaultBadOSImage]; n != 1 {
		t.Errorf("%d bad-os-image faults counted", n)
	}

	// A unit swapped in comes with default settings.
	must(t, r.FailNetworkBoot(2))
	must(t, r.RemoveUnit(2))
	must(t, r.InsertUnit(2))
	b2 := bmcOf(t, r, 2)
	must(t, b2.SetPower(ctx(t), drivers.PowerOn))
	clk.Advance(tm.Total())
	if u := unit(t, r, 2); u.Stage != drivers.StageReady {
		t.Fatalf("a new unit: %q, want ready", u.Stage)
	}

	// Refusals and empty slots.
	err := b.(drivers.BootSourceSetter).SetBootSource(ctx(t), "usb")
	if !errors.Is(err, drivers.ErrRefused) || !strings.Contains(err.Error(), "usb") {
		t.Errorf("SetBootSource(usb) = %v", err)
	}
	must(t, r.RemoveUnit(2))
	if err := bmcOf(t, r, 2).(drivers.BootSourceSetter).SetBootSource(ctx(t), drivers.BootLocal); !errors.Is(err, drivers.ErrUnreachable) {
		t.Errorf("SetBootSource on an empty slot = %v", err)
	}
	if err := r.FailNetworkBoot(2); !errors.Is(err, sim.ErrEmptySlot) {
		t.Errorf("FailNetworkBoot on an empty slot = %v", err)
	}
	if err := r.FailNetworkBoot(9); !errors.Is(err, drivers.ErrNoSlot) {
		t.Errorf("FailNetworkBoot(9) = %v", err)
	}
}
