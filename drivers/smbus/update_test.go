package smbus_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/drivers/smbus"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/sim"
)

var signer = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

var trusted = firmware.NewKeyring(signer.Public().(ed25519.PublicKey))

// signed is an image of n bytes and its manifest.
func signed(t *testing.T, n int, sv uint32) ([]byte, firmware.Manifest) {
	t.Helper()
	image := make([]byte, n)
	for i := range image {
		image[i] = byte(i*7 + int(sv))
	}
	m, err := firmware.Sign(image, firmware.ManifestFields{Component: firmware.ComponentBMC, Version: firmware.FirmwareVersion{Major: 2, Patch: uint16(sv)}, SecurityVersion: sv}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return image, m
}

var fast = firmware.UpdateOptions{HealthTimeout: 2 * time.Second, PollInterval: 2 * time.Millisecond}

// steps records Update's reports.
type steps struct {
	mu  sync.Mutex
	got []string
}

func (s *steps) report(step string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		step += " failed"
	}
	s.got = append(s.got, step)
}

func (s *steps) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func wantSlots(t *testing.T, b *smbus.BMC, want firmware.ImageSlots, counter firmware.AntiRollback) {
	t.Helper()
	got, err := b.ImageSlots(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("image slots %+v, want %+v", got, want)
	}
	if c, err := b.AntiRollback(ctxT(t)); err != nil || c != counter {
		t.Errorf("anti-rollback counter %d (%v), want %d", c, err, counter)
	}
}

var initial = firmware.ImageSlots{A: firmware.Image{State: firmware.ImageGood, SecurityVersion: 1}}

func TestUpdate(t *testing.T) {
	all := []string{"verify-manifest", "check-anti-rollback", "begin", "write", "device-verify", "switch", "reboot", "health-check", "confirm"}
	tests := []struct {
		name   string
		size   int
		sv     uint32
		break_ bool
		want   error
		steps  []string
		slots  firmware.ImageSlots
		count  firmware.AntiRollback
	}{
		{"good update", 1000, 5, false, nil, all,
			firmware.ImageSlots{Active: firmware.SlotB, Next: firmware.SlotB, A: initial.A, B: firmware.Image{State: firmware.ImageGood, SecurityVersion: 5}}, 5},
		{"one-chunk image, same security version", 1, 1, false, nil, all,
			firmware.ImageSlots{Active: firmware.SlotB, Next: firmware.SlotB, A: initial.A, B: firmware.Image{State: firmware.ImageGood, SecurityVersion: 1}}, 1},
		{"failed health check", 500, 5, true, firmware.ErrHealthCheck,
			[]string{"verify-manifest", "check-anti-rollback", "begin", "write", "device-verify", "switch", "reboot", "health-check failed", "rollback", "reboot"},
			firmware.ImageSlots{A: initial.A, B: firmware.Image{State: firmware.ImageBad, SecurityVersion: 5}}, 1},
		{"rollback attack", 500, 0, false, firmware.ErrAntiRollback,
			[]string{"verify-manifest", "check-anti-rollback failed"}, initial, 1},
		{"too large for the slot", 70000, 5, false, firmware.ErrImageSize,
			[]string{"verify-manifest", "check-anti-rollback", "begin failed"}, initial, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, sim.Config{Slots: 2, Seed: 1, StartOn: true}, sim.FirmwareConfig{SlotCapacity: 65536}, false)
			b := slotBMC(t, rg, 1)
			if tc.break_ {
				if err := rg.bus.BreakTrial(1); err != nil {
					t.Fatal(err)
				}
			}
			image, m := signed(t, tc.size, tc.sv)
			var st steps
			err := firmware.UpdateWith(ctxT(t), b, image, m, trusted, fast, st.report)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Update: %v, want %v", err, tc.want)
			}
			if got := st.list(); !slices.Equal(got, tc.steps) {
				t.Errorf("steps %q, want %q", got, tc.steps)
			}
			wantSlots(t, b, tc.slots, tc.count)
			if tc.want == nil && !bytes.Equal(rg.bus.Image(1, firmware.SlotB), image) {
				t.Error("the device does not hold the image in slot B")
			}
			if st, err := b.BootStage(ctxT(t)); err != nil || (tc.want != nil && tc.break_ && st == drivers.StageOff) {
				t.Errorf("boot stage after the update: %s, %v", st, err)
			}
		})
	}
}

// After an update to B, the next one goes to A; an older image is refused
// by the driver and, sent anyway, by the device, and nothing changes.
func TestUpdateTwiceAndRollbackAttack(t *testing.T) {
	rg := newRig(t, sim.Config{Slots: 2, Seed: 1, StartOn: true}, sim.FirmwareConfig{}, false)
	b := slotBMC(t, rg, 2)
	addr, _ := firmware.BMCAddr(2)
	for _, sv := range []uint32{3, 6} {
		image, m := signed(t, 300, sv)
		if err := firmware.UpdateWith(ctxT(t), b, image, m, trusted, fast, nil); err != nil {
			t.Fatalf("update to %d: %v", sv, err)
		}
	}
	after := firmware.ImageSlots{A: firmware.Image{State: firmware.ImageGood, SecurityVersion: 6}, B: firmware.Image{State: firmware.ImageGood, SecurityVersion: 3}}
	wantSlots(t, b, after, 6)

	old, m := signed(t, 300, 4)
	if err := firmware.UpdateWith(ctxT(t), b, old, m, trusted, fast, nil); !errors.Is(err, firmware.ErrAntiRollback) {
		t.Fatalf("update to an older security version: %v", err)
	}
	// The device refuses it too, at once (a write and a status read).
	before := rg.bus.Transactions(addr)
	err := b.BeginImage(ctxT(t), firmware.ImageBegin{Size: 300, SecurityVersion: 4})
	var se *firmware.StatusError
	if !errors.Is(err, drivers.ErrRefused) || !errors.Is(err, firmware.ErrAntiRollback) || !errors.As(err, &se) || se.Code != firmware.StatusAntiRollback || se.Reg != firmware.RegImageBegin {
		t.Fatalf("device's refusal: %v", err)
	}
	if drivers.Retryable(err) {
		t.Errorf("refusal %v is retryable", err)
	}
	if n := rg.bus.Transactions(addr) - before; n != 2 {
		t.Errorf("refusal took %d transactions, want 2", n)
	}
	wantSlots(t, b, after, 6)
}

// The device's own checks, driven step by step.
func TestImageRefusals(t *testing.T) {
	rg := newRig(t, sim.Config{Slots: 1, Seed: 1, StartOn: true}, sim.FirmwareConfig{}, false)
	b := slotBMC(t, rg, 1)
	ctx := ctxT(t)
	refused := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, drivers.ErrRefused) || !errors.Is(err, want) {
			t.Errorf("%s: %v, want refused with %v", what, err, want)
		}
	}
	refused("data before begin", b.WriteImage(ctx, 0, []byte{1}), firmware.ErrImageState)
	refused("switch with nothing staged", b.ImageCommand(ctx, firmware.ImageSwitch), firmware.ErrImageState)
	refused("confirm without trial", b.ImageCommand(ctx, firmware.ImageConfirm), firmware.ErrImageState)
	refused("rollback without trial", b.ImageCommand(ctx, firmware.ImageRollback), firmware.ErrImageState)
	refused("chunk too long", b.WriteImage(ctx, 0, make([]byte, firmware.ImageChunkLen+1)), firmware.ErrValue)
	if err := b.BeginImage(ctx, firmware.ImageBegin{Size: 10, SecurityVersion: 2}); err != nil {
		t.Fatal(err)
	}
	refused("chunk beyond the image", b.WriteImage(ctx, 5, make([]byte, 6)), firmware.ErrImageSize)
	if err := b.WriteImage(ctx, 0, bytes.Repeat([]byte{1}, 10)); err != nil {
		t.Fatal(err)
	}
	refused("wrong digest", b.VerifyImage(ctx, sha256.Sum256(bytes.Repeat([]byte{2}, 10))), firmware.ErrDigestMismatch)
	refused("switch to a bad image", b.ImageCommand(ctx, firmware.ImageSwitch), firmware.ErrImageState)
	wantSlots(t, b, firmware.ImageSlots{A: initial.A, B: firmware.Image{State: firmware.ImageBad, SecurityVersion: 2}}, 1)
}

// interrupted pulls the slot's power before chunk n of the image.
type interrupted struct {
	*smbus.BMC
	rack *sim.Rack
	slot int
	n    int
}

func (d *interrupted) WriteImage(ctx context.Context, off uint32, chunk []byte) error {
	if d.n--; d.n == 0 {
		if err := d.rack.PullSlotPower(d.slot); err != nil {
			return err
		}
	}
	return d.BMC.WriteImage(ctx, off, chunk)
}

func TestPowerLoss(t *testing.T) {
	t.Run("mid-write", func(t *testing.T) {
		rg := newRig(t, sim.Config{Slots: 2, Seed: 1, StartOn: true}, sim.FirmwareConfig{}, false)
		b := slotBMC(t, rg, 2)
		image, m := signed(t, 1000, 2)
		var st steps
		err := firmware.UpdateWith(ctxT(t), &interrupted{b, rg.rack, 2, 10}, image, m, trusted, fast, st.report)
		if !errors.Is(err, drivers.ErrUnreachable) || !slices.Contains(st.list(), "write failed") {
			t.Fatalf("update losing power: %v, steps %q", err, st.list())
		}
		if err := rg.rack.RestoreSlotPower(2); err != nil {
			t.Fatal(err)
		}
		loading := firmware.ImageSlots{A: initial.A, B: firmware.Image{State: firmware.ImageLoading, SecurityVersion: 2}}
		wantSlots(t, b, loading, 1) // still on A, B half written
		if err := firmware.UpdateWith(ctxT(t), b, image, m, trusted, fast, nil); err != nil {
			t.Fatalf("retry: %v", err)
		}
		wantSlots(t, b, firmware.ImageSlots{Active: firmware.SlotB, Next: firmware.SlotB, A: initial.A, B: firmware.Image{State: firmware.ImageGood, SecurityVersion: 2}}, 2)
	})
	for _, how := range []string{"pulled power", "power off", "second reboot"} {
		t.Run("during trial, "+how, func(t *testing.T) {
			rg := newRig(t, sim.Config{Slots: 1, Seed: 1, StartOn: true}, sim.FirmwareConfig{}, false)
			b := slotBMC(t, rg, 1)
			image, m := signed(t, 100, 3)
			// The health check is where the trial boot is lost.
			opts := fast
			opts.HealthCheck = func(ctx context.Context) error {
				slots, err := b.ImageSlots(ctx)
				if err != nil || slots.Active != firmware.SlotB || slots.B.State != firmware.ImageTrial {
					return fmt.Errorf("not on trial: %+v, %v", slots, err)
				}
				switch how {
				case "pulled power":
					if err := rg.rack.PullSlotPower(1); err != nil {
						return err
					}
					return rg.rack.RestoreSlotPower(1)
				case "power off":
					return b.SetPower(ctx, drivers.PowerOff)
				}
				return b.PowerCycle(ctx)
			}
			var st steps
			err := firmware.UpdateWith(ctxT(t), b, image, m, trusted, opts, st.report)
			if !errors.Is(err, firmware.ErrHealthCheck) || !errors.Is(err, firmware.ErrImageState) {
				t.Fatalf("update: %v", err)
			}
			// The device rolled back by itself: Update sent no rollback.
			want := []string{"verify-manifest", "check-anti-rollback", "begin", "write", "device-verify", "switch", "reboot", "health-check failed", "rollback"}
			if got := st.list(); !slices.Equal(got, want) {
				t.Errorf("steps %q, want %q", got, want)
			}
			wantSlots(t, b, firmware.ImageSlots{A: initial.A, B: firmware.Image{State: firmware.ImageBad, SecurityVersion: 3}}, 1)
		})
	}
}

// Corrupt frames during an update are retried; the update succeeds.
func TestUpdateWireFaults(t *testing.T) {
	rg := newRig(t, sim.Config{Slots: 1, Seed: 1, StartOn: true}, sim.FirmwareConfig{}, false)
	b := slotBMC(t, rg, 1)
	addr, _ := firmware.BMCAddr(1)
	image, m := signed(t, 200, 2)
	if _, err := b.ImageSlots(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var st steps
	report := func(step string, err error) {
		st.report(step, err)
		if step == firmware.StepBegin {
			_ = rg.bus.InjectWire(addr, sim.WireCorruptPEC, 2)
		}
		if step == firmware.StepWrite {
			_ = rg.bus.InjectWire(addr, sim.WireNAK, 2)
		}
	}
	if err := firmware.UpdateWith(ctxT(t), b, image, m, trusted, fast, report); err != nil {
		t.Fatalf("update: %v (steps %q)", err, st.list())
	}
	if !bytes.Equal(rg.bus.Image(1, firmware.SlotB), image) {
		t.Error("image corrupted on the way")
	}
}
