package smbus_test

import (
	"errors"
	"testing"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/sim"
)

// TestBootSource drives the next-boot register through the optional
// drivers.BootSourceSetter capability.
func TestBootSource(t *testing.T) {
	rg := newRig(t, sim.Config{Slots: 2, Empty: []int{2}}, sim.FirmwareConfig{}, false)
	ctx := ctxT(t)
	b := slotBMC(t, rg, 1)
	var bs drivers.BootSourceSetter = b
	for _, src := range []drivers.BootSource{drivers.BootLocal, drivers.BootNetwork} {
		if err := bs.SetBootSource(ctx, src); err != nil {
			t.Fatalf("SetBootSource(%s): %v", src, err)
		}
		if got, err := bs.BootSource(ctx); err != nil || got != src {
			t.Fatalf("BootSource = %q, %v; want %q", got, err, src)
		}
	}
	if raw, err := b.NextBoot(ctx); err != nil || raw != firmware.BootNetwork {
		t.Errorf("register = %v, %v", raw, err)
	}
	if err := bs.SetBootSource(ctx, "usb"); !errors.Is(err, drivers.ErrRefused) {
		t.Errorf("SetBootSource(usb) = %v, want refused", err)
	}
	// A source set by hand that the drivers do not name is reported, not guessed.
	if err := b.SetNextBoot(ctx, firmware.BootUSB); err != nil {
		t.Fatal(err)
	}
	if got, err := bs.BootSource(ctx); !errors.Is(err, drivers.ErrRefused) {
		t.Errorf("BootSource with usb set = %q, %v; want refused", got, err)
	}
	if err := drivers.BootSourceSetter(slotBMC(t, rg, 2)).SetBootSource(ctx, drivers.BootLocal); !errors.Is(err, drivers.ErrUnreachable) {
		t.Errorf("empty slot: %v", err)
	}
}
