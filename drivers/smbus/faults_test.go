package smbus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/drivers/smbus"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/sim"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func slotBMC(t *testing.T, rg rig, slot int) *smbus.BMC {
	t.Helper()
	b, err := rg.bp.SlotBMC(slot)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func truePower(t *testing.T, rg rig, slot int) drivers.PowerState {
	t.Helper()
	u, err := rg.rack.Unit(slot)
	if err != nil {
		t.Fatal(err)
	}
	return u.Power
}

func TestWireFaults(t *testing.T) {
	const slot = 2
	addr, _ := firmware.BMCAddr(slot)
	read := func(ctx context.Context, b *smbus.BMC) error { _, err := b.PowerState(ctx); return err }
	write := func(ctx context.Context, b *smbus.BMC) error { return b.SetPower(ctx, drivers.PowerOn) }
	tests := []struct {
		name  string
		fault sim.WireFault
		count int
		call  func(context.Context, *smbus.BMC) error
		write bool
		want  []error // nil: the call succeeds
		txs   int     // transactions the call makes
	}{
		{"bad PEC once, read", sim.WireCorruptPEC, 1, read, false, nil, 2},
		{"bad PEC always, read", sim.WireCorruptPEC, sim.Always, read, false, []error{drivers.ErrUnreachable, firmware.ErrPEC}, 3},
		{"bad PEC twice, read", sim.WireCorruptPEC, 2, read, false, nil, 3},
		{"short read once", sim.WireShortRead, 1, read, false, nil, 2},
		{"short read always", sim.WireShortRead, sim.Always, read, false, []error{drivers.ErrUnreachable, firmware.ErrLength}, 3},
		{"NAK once, read", sim.WireNAK, 1, read, false, nil, 2},
		{"NAK always, read", sim.WireNAK, sim.Always, read, false, []error{drivers.ErrUnreachable, firmware.ErrNAK}, 3},
		{"bad PEC once, write", sim.WireCorruptPEC, 1, write, true, nil, 2},
		{"bad PEC always, write", sim.WireCorruptPEC, sim.Always, write, true, []error{drivers.ErrUnreachable, firmware.ErrNAK, firmware.ErrPEC}, 3},
		{"NAK once, write", sim.WireNAK, 1, write, true, nil, 2},
		{"NAK always, write", sim.WireNAK, sim.Always, write, true, []error{drivers.ErrUnreachable, firmware.ErrNAK}, 3},
		{"short read always, write passes", sim.WireShortRead, sim.Always, write, true, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, sim.Config{Slots: 3, Seed: 1}, sim.FirmwareConfig{}, false)
			b := slotBMC(t, rg, slot)
			// The first call reads the version register: get it done.
			if _, err := b.PowerState(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if err := rg.bus.InjectWire(addr, tc.fault, tc.count); err != nil {
				t.Fatal(err)
			}
			before := rg.bus.Transactions(addr)
			err := tc.call(ctxT(t), b)
			if got := rg.bus.Transactions(addr) - before; got != tc.txs {
				t.Errorf("%d transactions, want %d", got, tc.txs)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("call failed: %v", err)
				}
			} else {
				for _, w := range tc.want {
					if !errors.Is(err, w) {
						t.Errorf("error %v is not %v", err, w)
					}
				}
				var de *drivers.Error
				if !errors.As(err, &de) || de.Slot != slot || de.Op == "" {
					t.Errorf("error %v is not a *drivers.Error for slot %d", err, slot)
				}
				if !drivers.Retryable(err) {
					t.Errorf("error %v is not retryable", err)
				}
			}
			if tc.write {
				want := drivers.PowerOff
				if err == nil {
					want = drivers.PowerOn
				}
				if got := truePower(t, rg, slot); got != want {
					t.Errorf("unit power = %s, want %s", got, want)
				}
			}
			// Cleared, the BMC answers again (re-checking its version).
			rg.bus.ClearWire(addr)
			if _, err := b.PowerState(ctxT(t)); err != nil {
				t.Errorf("after clearing: %v", err)
			}
		})
	}
}

func TestRMCWireFaults(t *testing.T) {
	rg := newRig(t, sim.Config{Slots: 3, Empty: []int{3}, Seed: 1}, sim.FirmwareConfig{}, false)
	for _, f := range []sim.WireFault{sim.WireCorruptPEC, sim.WireShortRead, sim.WireNAK} {
		if err := rg.bus.InjectWire(firmware.RMCAddr, f, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := rg.bp.RMC().ReadRack(ctxT(t)); err != nil {
			t.Errorf("%s once: ReadRack: %v", f, err)
		}
		if err := rg.bus.InjectWire(firmware.RMCAddr, f, 1); err != nil {
			t.Fatal(err)
		}
		if ok, err := rg.bp.Present(ctxT(t), 2); err != nil || !ok {
			t.Errorf("%s once: Present(2) = %v, %v", f, ok, err)
		}
	}
	if err := rg.bus.InjectWire(firmware.RMCAddr, sim.WireCorruptPEC, sim.Always); err != nil {
		t.Fatal(err)
	}
	_, err := rg.bp.Present(ctxT(t), 3)
	var de *drivers.Error
	if !errors.Is(err, drivers.ErrUnreachable) || !errors.Is(err, firmware.ErrPEC) || !errors.As(err, &de) || de.Slot != 3 || de.Op != drivers.OpPresence {
		t.Errorf("Present with a corrupt RMC: %v", err)
	}
	if got := rg.rack.Faults()[sim.FaultWire]; got != 7 {
		t.Errorf("%d wire faults counted, want 7", got)
	}
}

func TestVersionMismatch(t *testing.T) {
	rg := newRig(t, sim.Config{Slots: 2, Seed: 1}, sim.FirmwareConfig{Protocol: 2}, false)
	calls := []struct {
		name string
		slot int
		do   func(ctx context.Context) error
	}{
		{"PowerState", 1, func(ctx context.Context) error { _, err := slotBMC(t, rg, 1).PowerState(ctx); return err }},
		{"SetPower", 2, func(ctx context.Context) error { return slotBMC(t, rg, 2).SetPower(ctx, drivers.PowerOn) }},
		{"ReadRack", 0, func(ctx context.Context) error { _, err := rg.bp.RMC().ReadRack(ctx); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.do(ctxT(t))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "smbus: firmware speaks protocol v2, driver speaks v1") {
				t.Errorf("error %q does not name the versions", err)
			}
			var ve *smbus.VersionError
			if !errors.As(err, &ve) || ve.Firmware != 2 || ve.Driver != firmware.ProtocolVersion {
				t.Errorf("error %v: VersionError %+v", err, ve)
			}
			var de *drivers.Error
			if !errors.Is(err, smbus.ErrVersion) || !errors.Is(err, drivers.ErrRefused) || !errors.As(err, &de) || de.Slot != c.slot {
				t.Errorf("error %v is not a refused version mismatch for slot %d", err, c.slot)
			}
			if drivers.Retryable(err) {
				t.Errorf("error %v is retryable", err)
			}
		})
	}
	if got := truePower(t, rg, 2); got != drivers.PowerOff {
		t.Errorf("SetPower went through to firmware of another version: power %s", got)
	}
}

// A BMC that holds the bus past the bus's own time limit: every attempt
// times out, and the call fails with ErrTimeout well before its context.
func TestBusTimeout(t *testing.T) {
	for _, plain := range []bool{false, true} {
		rg := newRig(t, sim.Config{Slots: 2, Seed: 1}, sim.FirmwareConfig{Timeout: 10 * time.Millisecond}, plain)
		if err := rg.rack.HangBMC(1); err != nil {
			t.Fatal(err)
		}
		_, err := slotBMC(t, rg, 1).PowerState(ctxT(t))
		if !errors.Is(err, drivers.ErrTimeout) || !errors.Is(err, firmware.ErrBusTimeout) {
			t.Errorf("plain %v: hung BMC: %v", plain, err)
		}
		if !strings.Contains(err.Error(), "3 attempts") {
			t.Errorf("plain %v: error %q does not count the attempts", plain, err)
		}
	}
}

func TestRegistersBeyondDrivers(t *testing.T) {
	rg := newRig(t, sim.Config{Slots: 4, Empty: []int{2, 4}, Seed: 1},
		sim.FirmwareConfig{Version: firmware.FirmwareVersion{Major: 2, Minor: 1, Patch: 7}}, false)
	ctx := ctxT(t)
	b := slotBMC(t, rg, 1)
	if v, err := b.FirmwareVersion(ctx); err != nil || v.String() != "2.1.7" {
		t.Errorf("BMC firmware version = %v, %v", v, err)
	}
	if v, err := rg.bp.SlotRMC().FirmwareVersion(ctx); err != nil || v.String() != "2.1.7" {
		t.Errorf("RMC firmware version = %v, %v", v, err)
	}
	if src, err := b.NextBoot(ctx); err != nil || src != firmware.BootNetwork {
		t.Errorf("next boot = %v, %v; want network", src, err)
	}
	if err := b.SetNextBoot(ctx, firmware.BootUSB); err != nil {
		t.Fatal(err)
	}
	if src, err := b.NextBoot(ctx); err != nil || src != firmware.BootUSB {
		t.Errorf("next boot after set = %v, %v; want usb", src, err)
	}
	if src, err := slotBMC(t, rg, 3).NextBoot(ctx); err != nil || src != firmware.BootNetwork {
		t.Errorf("slot 3's next boot = %v, %v; want network (its own)", src, err)
	}
	if err := b.SetNextBoot(ctx, 9); !errors.Is(err, drivers.ErrRefused) || !errors.Is(err, firmware.ErrValue) {
		t.Errorf("SetNextBoot(9): %v", err)
	}
	want := firmware.ImageSlots{Active: firmware.SlotA, Next: firmware.SlotA, A: firmware.Image{State: firmware.ImageGood, SecurityVersion: 1}}
	if s, err := b.ImageSlots(ctx); err != nil || s != want {
		t.Errorf("image slots = %+v, %v; want %+v", s, err, want)
	}
	if a, err := b.AntiRollback(ctx); err != nil || a != 1 {
		t.Errorf("anti-rollback = %d, %v", a, err)
	}
	if p, err := rg.bp.SlotRMC().Presence(ctx); err != nil || p != firmware.Presence(0).With(1).With(3) {
		t.Errorf("presence = %b, %v", p, err)
	}
	if _, err := slotBMC(t, rg, 2).NextBoot(ctx); !errors.Is(err, drivers.ErrUnreachable) {
		t.Errorf("empty slot's next boot: %v", err)
	}
}

// The same rack, driven through the wire and in process, is one rack.
func TestBothDrivers(t *testing.T) {
	rg := newRig(t, sim.Config{Slots: 2, Seed: 1}, sim.FirmwareConfig{}, false)
	ctx := ctxT(t)
	wire := slotBMC(t, rg, 1)
	direct, err := rg.rack.Backplane().BMC(1)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
		want drivers.PowerState
	}{
		{"on over the wire", func() error { return wire.SetPower(ctx, drivers.PowerOn) }, drivers.PowerOn},
		{"off in process", func() error { return direct.SetPower(ctx, drivers.PowerOff) }, drivers.PowerOff},
		{"cycle over the wire", func() error { return wire.PowerCycle(ctx) }, drivers.PowerOn},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		for _, b := range []drivers.BMC{wire, direct} {
			if got, err := b.PowerState(ctx); err != nil || got != st.want {
				t.Errorf("%s: %T says %s, %v; want %s", st.name, b, got, err, st.want)
			}
		}
	}
	if st, err := wire.BootStage(ctx); err != nil || st == drivers.StageOff {
		t.Errorf("stage over the wire after cycle = %s, %v", st, err)
	}
}

func TestNewRejects(t *testing.T) {
	r, err := sim.New(sim.Config{Slots: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	bus, err := r.FirmwareBus(sim.FirmwareConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []smbus.Config{
		{Slots: 2},
		{Bus: bus, Slots: 0},
		{Bus: bus, Slots: firmware.MaxSlots + 1},
		{Bus: bus, Slots: 2, Attempts: -1},
	} {
		if _, err := smbus.New(cfg); err == nil {
			t.Errorf("New(%+v) did not fail", cfg)
		}
	}
	big, err := sim.New(sim.Config{Slots: firmware.MaxSlots + 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	if _, err := big.FirmwareBus(sim.FirmwareConfig{}); err == nil {
		t.Error("a firmware bus for more slots than addresses")
	}
}
