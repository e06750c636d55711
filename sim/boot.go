package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/racklet/rack/drivers"
)

// The boot model. A unit boots, at every power-on or reset, along the path
// its BMC's next boot source gives:
//
//   - network (set explicitly): firmware → bootstrap → os → ready, the
//     last quarter of bootstrap reported as image-verified by the BMC
//     (the boot environment has checked the image). If the unit was told
//     its image is bad (FailNetworkBoot), the boot environment refuses it
//     and the unit stays in bootstrap until its power changes.
//   - local: firmware → os → ready (no boot environment).
//   - never set (a fresh unit, as before boot sources existed): the
//     network path without the image-verified report, so a BMC reports
//     only the stages of the firmware register map.
//
// Stage durations are Config.Timings. The boot source and the bad-image
// fault belong to the unit: a unit inserted in a slot starts with neither.
// The emulated firmware's next-boot register (FirmwareBus) is its own
// state and does not steer this model.

// FaultBadOSImage counts FailNetworkBoot calls.
const FaultBadOSImage FaultKind = "bad-os-image"

// unitBoot is a unit's boot model state: the settings for its next boot,
// and those the boot in progress took at power-on (changing the settings
// never changes a boot under way).
type unitBoot struct {
	next drivers.BootSource // set through the BMC; "" until set
	bad  bool               // the boot environment refuses the image

	source  drivers.BootSource // of the boot in progress
	failing bool               // the boot in progress stops in bootstrap
}

// powerOn starts a boot with the current settings.
func (b *unitBoot) powerOn() {
	b.source = b.next
	b.failing = b.bad && b.next != drivers.BootLocal
}

// stageSpan is one stage of a boot path; stuck means it lasts until the
// power changes.
type stageSpan struct {
	stage drivers.BootStage
	d     time.Duration
}

const stuck = time.Duration(-1)

// bootPath is the sequence of stages the unit goes through after power-on.
func (r *Rack) bootPath(u *unit) []stageSpan {
	tm := r.cfg.Timings
	switch {
	case u.boot.source == drivers.BootLocal:
		return []stageSpan{{drivers.StageFirmware, tm.Firmware}, {drivers.StageOS, tm.OS}}
	case u.boot.failing:
		return []stageSpan{{drivers.StageFirmware, tm.Firmware}, {drivers.StageBootstrap, stuck}}
	}
	return []stageSpan{{drivers.StageFirmware, tm.Firmware}, {drivers.StageBootstrap, tm.Bootstrap}, {drivers.StageOS, tm.OS}}
}

// reportedStage is the stage the unit's BMC reports at now: the model's
// stage, with the end of a verified network boot's bootstrap reported as
// image-verified.
func (r *Rack) reportedStage(u *unit, now time.Time) drivers.BootStage {
	st, end := r.stageAt(u, now)
	if st == drivers.StageBootstrap && u.boot.source == drivers.BootNetwork && !u.boot.failing && !end.IsZero() &&
		end.Sub(now) <= r.cfg.Timings.Bootstrap/4 {
		return drivers.StageImageVerified
	}
	return st
}

var _ drivers.BootSourceSetter = (*bmc)(nil)

// SetBootSource sets the unit's next boot source; it takes effect at the
// next power-on or cycle.
func (b *bmc) SetBootSource(ctx context.Context, s drivers.BootSource) error {
	if !s.Valid() {
		return &drivers.Error{Op: drivers.OpBootSourceSet, Slot: b.slot, Err: drivers.ErrRefused,
			Cause: fmt.Errorf("boot source %q is not network or local", string(s))}
	}
	return b.r.transact(ctx, drivers.OpBootSourceSet, b.slot, b.slot, func(now time.Time) error {
		b.r.units[b.slot-1].boot.next = s
		return nil
	})
}

// BootSource reads the unit's next boot source (network if never set).
func (b *bmc) BootSource(ctx context.Context) (drivers.BootSource, error) {
	var s drivers.BootSource
	err := b.r.transact(ctx, drivers.OpBootSourceRead, b.slot, b.slot, func(now time.Time) error {
		s = b.r.units[b.slot-1].boot.next
		if s == "" {
			s = drivers.BootNetwork
		}
		return nil
	})
	return s, err
}

// FailNetworkBoot tells the unit in slot that its OS image is bad: from
// its next network boot on, its boot environment refuses the image and the
// unit stays in bootstrap until its power changes. A boot in progress is
// not affected. HealNetworkBoot undoes it for the boots after it;
// replacing the unit does too.
func (r *Rack) FailNetworkBoot(slot int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, err := r.unitLocked(slot)
	if err != nil {
		return fmt.Errorf("sim: fail network boot: %w", err)
	}
	if !u.present {
		return fmt.Errorf("sim: fail network boot: slot %d: %w", slot, ErrEmptySlot)
	}
	u.boot.bad = true
	r.injectedLocked(FaultBadOSImage, "slot", slot)
	return nil
}

// HealNetworkBoot clears FailNetworkBoot: the next network boot succeeds.
func (r *Rack) HealNetworkBoot(slot int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, err := r.unitLocked(slot)
	if err != nil {
		return fmt.Errorf("sim: heal network boot: %w", err)
	}
	if u.boot.bad {
		r.clearedLocked(FaultBadOSImage, "slot", slot)
	}
	u.boot.bad = false
	return nil
}
