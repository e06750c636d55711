package smbus_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/sim"
)

// UpdateOptions.Before is called before every step, in order, and stops
// the update before the step it fails, which is then neither run nor
// reported.
func TestUpdateBefore(t *testing.T) {
	all := []string{"verify-manifest", "check-anti-rollback", "begin", "write", "device-verify", "switch", "reboot", "health-check", "confirm"}
	stop := errors.New("not the leader")
	for _, stopAt := range []string{"", "begin", "switch", "confirm"} {
		t.Run("stop at "+stopAt, func(t *testing.T) {
			rg := newRig(t, sim.Config{Slots: 1, Seed: 1, StartOn: true}, sim.FirmwareConfig{}, false)
			b := slotBMC(t, rg, 1)
			image, m := signed(t, 200, 3)
			var before []string
			opts := fast
			opts.Before = func(ctx context.Context, step string) error {
				before = append(before, step)
				if step == stopAt {
					return stop
				}
				return nil
			}
			var st steps
			err := firmware.UpdateWith(ctxT(t), b, image, m, trusted, opts, st.report)
			want := all
			if stopAt != "" {
				want = all[:slices.Index(all, stopAt)+1]
			}
			if !slices.Equal(before, want) {
				t.Fatalf("Before saw %q, want %q", before, want)
			}
			if reported := st.list(); !slices.Equal(reported, want[:len(want)-min(1, len(stopAt))]) {
				t.Fatalf("reported %q", reported)
			}
			if (stopAt == "") != (err == nil) || (stopAt != "" && !errors.Is(err, stop)) {
				t.Fatalf("UpdateWith = %v", err)
			}
			slots, err := b.ImageSlots(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			switch stopAt {
			case "begin":
				if slots != initial {
					t.Fatalf("slots %+v: the device was touched", slots)
				}
			case "switch":
				if slots.Next != firmware.SlotA || slots.B.State != firmware.ImageStaged {
					t.Fatalf("slots %+v, want B staged, not switched", slots)
				}
			case "confirm":
				// The trial runs unconfirmed: ResumeWith finishes it.
				if slots.Active != firmware.SlotB || slots.B.State != firmware.ImageTrial {
					t.Fatalf("slots %+v, want B on trial", slots)
				}
				var rs steps
				m.Signature = nil // ResumeWith needs only the security version
				if err := firmware.ResumeWith(ctxT(t), b, m, fast, rs.report); err != nil {
					t.Fatal(err)
				}
				if got := rs.list(); !slices.Equal(got, []string{"health-check", "confirm"}) {
					t.Fatalf("resume steps %q", got)
				}
				wantSlots(t, b, firmware.ImageSlots{Active: firmware.SlotB, Next: firmware.SlotB, A: initial.A, B: firmware.Image{State: firmware.ImageGood, SecurityVersion: 3}}, 3)
				if v, err := b.FirmwareVersion(ctxT(t)); err != nil || v != m.Version {
					t.Fatalf("version %v (%v), want %v", v, err, m.Version)
				}
			}
		})
	}
}

// ResumeWith refuses a device that runs no trial of the image.
func TestResumeWithoutTrial(t *testing.T) {
	rg := newRig(t, sim.Config{Slots: 1, Seed: 1, StartOn: true}, sim.FirmwareConfig{}, false)
	b := slotBMC(t, rg, 1)
	_, m := signed(t, 200, 3)
	if err := firmware.ResumeWith(ctxT(t), b, m, fast, nil); !errors.Is(err, firmware.ErrImageState) {
		t.Fatalf("ResumeWith = %v, want ErrImageState", err)
	}
	wantSlots(t, b, initial, 1)
}
