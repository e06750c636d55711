package firmware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/racklet/rack/drivers"
)

// ImageDevice is a controller's side of the A/B image update
// (imageregs.go). drivers/smbus's BMC implements it.
type ImageDevice interface {
	ImageSlots(ctx context.Context) (ImageSlots, error)
	AntiRollback(ctx context.Context) (AntiRollback, error)
	BeginImage(ctx context.Context, b ImageBegin) error
	// WriteImage writes one chunk of 1..ImageChunkLen bytes at offset.
	WriteImage(ctx context.Context, offset uint32, chunk []byte) error
	VerifyImage(ctx context.Context, digest ImageDigest) error
	ImageCommand(ctx context.Context, c ImageCommand) error
}

// Unit is the optional capability of an ImageDevice that runs on a compute
// unit's HAT: rebooting the unit and reading its boot stage. Update uses
// it for the default reboot and health check.
type Unit interface {
	PowerCycle(ctx context.Context) error
	BootStage(ctx context.Context) (drivers.BootStage, error)
}

// The steps of Update, as its report callback names them.
const (
	StepVerifyManifest = "verify-manifest"
	StepAntiRollback   = "check-anti-rollback"
	StepBegin          = "begin"
	StepWrite          = "write"
	StepDeviceVerify   = "device-verify"
	StepSwitch         = "switch"
	StepReboot         = "reboot"
	StepHealthCheck    = "health-check"
	StepConfirm        = "confirm"
	StepRollback       = "rollback"
)

// ErrHealthCheck: the new image did not pass its health check; the update
// was rolled back.
var ErrHealthCheck = errors.New("firmware: health check failed")

// UpdateOptions tune Update. The zero value updates a BMC with the
// defaults.
type UpdateOptions struct {
	// Component is what the device runs (default ComponentBMC).
	Component Component
	// Reboot boots the switched image (default: the device's
	// Unit.PowerCycle).
	Reboot func(ctx context.Context) error
	// HealthCheck passes when the new image works (default: the device's
	// Unit.BootStage reaches ready). It runs under HealthTimeout.
	HealthCheck func(ctx context.Context) error
	// HealthTimeout bounds the health check (default 2 minutes).
	HealthTimeout time.Duration
	// PollInterval is the pause between boot stage reads of the default
	// health check (default 1s).
	PollInterval time.Duration
	// Before, if set, is called before each step starts (before anything
	// of it reaches the device): a reconciler commits its intent there. If
	// it fails, the update stops before the step, which is not reported,
	// and returns the error (wrapped). Before the health check's steps an
	// earlier trial may already be running: stopping there leaves it to
	// end unconfirmed, which rolls it back at the next boot.
	Before func(ctx context.Context, step string) error
}

// Update installs image, described by m, on dev with UpdateOptions' defaults
// (see UpdateWith).
func Update(ctx context.Context, dev ImageDevice, image []byte, m Manifest, trusted Keyring, report func(step string, err error)) error {
	return UpdateWith(ctx, dev, image, m, trusted, UpdateOptions{}, report)
}

// UpdateWith installs image, described by m, on dev: it verifies the
// manifest against trusted (for opts.Component); checks the image's
// security version against the device's anti-rollback counter and that
// no earlier update awaits its trial; begins loading, writes the image
// into the inactive slot chunk by chunk, has the device verify its digest
// and switch to it; reboots the unit; and runs the health check, which
// also requires the device to have booted the new slot on trial. If it
// passes, Update confirms the image (the device raises its anti-rollback
// counter) and checks the result; if not, it rolls back, reboots into the
// confirmed image and fails with ErrHealthCheck.
//
// report, if not nil, is called once for every step taken, with the
// step's error or nil; opts.Before, if set, before each step starts. If ctx ends after the switch, the device falls back
// to its confirmed image by itself at the next boot, since the trial is
// never confirmed.
func UpdateWith(ctx context.Context, dev ImageDevice, image []byte, m Manifest, trusted Keyring, opts UpdateOptions, report func(step string, err error)) error {
	r := newRun(ctx, opts, report)
	opts, err := opts.withDefaults(dev)
	if err := r.start(StepVerifyManifest); err != nil {
		return err
	}
	if err != nil {
		return r.step(StepVerifyManifest, err)
	}
	if err := r.step(StepVerifyManifest, Verify(image, m, trusted, opts.Component)); err != nil {
		return err
	}

	if err := r.start(StepAntiRollback); err != nil {
		return err
	}
	slots, err := checkDevice(ctx, dev, m)
	if err := r.step(StepAntiRollback, err); err != nil {
		return err
	}
	target := 1 - slots.Active

	if err := r.start(StepBegin); err != nil {
		return err
	}
	if err := r.step(StepBegin, dev.BeginImage(ctx, ImageBegin{Size: m.Size, SecurityVersion: m.SecurityVersion, Version: m.Version})); err != nil {
		return err
	}
	if err := r.start(StepWrite); err != nil {
		return err
	}
	for off := 0; off < len(image); off += ImageChunkLen {
		if err := dev.WriteImage(ctx, uint32(off), image[off:min(off+ImageChunkLen, len(image))]); err != nil {
			return r.step(StepWrite, fmt.Errorf("at offset %d of %d: %w", off, len(image), err))
		}
	}
	_ = r.step(StepWrite, nil)
	if err := r.start(StepDeviceVerify); err != nil {
		return err
	}
	if err := r.step(StepDeviceVerify, dev.VerifyImage(ctx, ImageDigest(m.SHA256))); err != nil {
		return err
	}
	if err := r.start(StepSwitch); err != nil {
		return err
	}
	if err := r.step(StepSwitch, dev.ImageCommand(ctx, ImageSwitch)); err != nil {
		return err
	}
	if err := r.start(StepReboot); err != nil {
		return err
	}
	if err := r.step(StepReboot, opts.Reboot(ctx)); err != nil {
		return err
	}
	return r.finish(dev, target, m.SecurityVersion, opts)
}

// ResumeWith finishes an update that was interrupted after its reboot
// (the updater died, or lost its leadership): dev runs the image m
// describes on trial. It runs the health check, then confirms the image
// or rolls it back, as UpdateWith does after its reboot, reporting the
// same steps. It fails with ErrImageState if dev does not run an image of
// m's security version on trial; ErrHealthCheck if the image failed its
// health check and was rolled back.
func ResumeWith(ctx context.Context, dev ImageDevice, m Manifest, opts UpdateOptions, report func(step string, err error)) error {
	r := newRun(ctx, opts, report)
	opts, err := opts.withDefaults(dev)
	if err != nil {
		return fmt.Errorf("firmware update: resuming: %w", err)
	}
	slots, err := dev.ImageSlots(ctx)
	if err != nil {
		return fmt.Errorf("firmware update: resuming: %w", err)
	}
	if act := imageOf(slots, slots.Active); act.State != ImageTrial || act.SecurityVersion != m.SecurityVersion {
		return fmt.Errorf("firmware update: resuming: %w: device runs slot %v (%v, security version %d), not a trial of security version %d",
			ErrImageState, slots.Active, act.State, act.SecurityVersion, m.SecurityVersion)
	}
	return r.finish(dev, slots.Active, m.SecurityVersion, opts)
}

// run is one UpdateWith or ResumeWith: its context, hook and report.
type run struct {
	ctx    context.Context
	before func(ctx context.Context, step string) error
	report func(step string, err error)
}

func newRun(ctx context.Context, opts UpdateOptions, report func(string, error)) *run {
	if report == nil {
		report = func(string, error) {}
	}
	return &run{ctx: ctx, before: opts.Before, report: report}
}

// start calls the Before hook of a step.
func (r *run) start(name string) error {
	if r.before == nil {
		return nil
	}
	if err := r.before(r.ctx, name); err != nil {
		return fmt.Errorf("firmware update: before %s: %w", name, err)
	}
	return nil
}

// step reports a step's outcome and wraps its error.
func (r *run) step(name string, err error) error {
	r.report(name, err)
	if err != nil {
		return fmt.Errorf("firmware update: %s: %w", name, err)
	}
	return nil
}

// finish runs the health check of the trial of target, then confirms it
// or rolls it back.
func (r *run) finish(dev ImageDevice, target ImageSlot, sv uint32, opts UpdateOptions) error {
	ctx := r.ctx
	if err := r.start(StepHealthCheck); err != nil {
		return err
	}
	herr := healthCheck(ctx, dev, target, opts)
	if ctx.Err() != nil {
		return r.step(StepHealthCheck, herr)
	}
	r.report(StepHealthCheck, herr)
	if herr == nil {
		if err := r.start(StepConfirm); err != nil {
			return err
		}
		return r.step(StepConfirm, confirm(ctx, dev, target, sv))
	}

	// Roll back, unless the device did already.
	if err := r.start(StepRollback); err != nil {
		return fmt.Errorf("%w (after %w)", err, herr)
	}
	rolled, err := rollback(ctx, dev, target)
	if err := r.step(StepRollback, err); err != nil {
		return fmt.Errorf("%w (after %w)", err, herr)
	}
	if rolled {
		if err := r.start(StepReboot); err != nil {
			return fmt.Errorf("%w (after %w)", err, herr)
		}
		if err := r.step(StepReboot, opts.Reboot(ctx)); err != nil {
			return fmt.Errorf("%w (after %w)", err, herr)
		}
	}
	return fmt.Errorf("firmware update: %w: %w", ErrHealthCheck, herr)
}

func (o UpdateOptions) withDefaults(dev ImageDevice) (UpdateOptions, error) {
	if o.Component == "" {
		o.Component = ComponentBMC
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = 2 * time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	u, isUnit := dev.(Unit)
	if (o.Reboot == nil || o.HealthCheck == nil) && !isUnit {
		return o, errors.New("firmware update: the device cannot reboot its unit or read its boot stage: set UpdateOptions.Reboot and HealthCheck")
	}
	if o.Reboot == nil {
		o.Reboot = u.PowerCycle
	}
	if o.HealthCheck == nil {
		poll := o.PollInterval
		o.HealthCheck = func(ctx context.Context) error { return waitReady(ctx, u, poll) }
	}
	return o, nil
}

// checkDevice reads the device's slots and counter and checks that the
// update can start.
func checkDevice(ctx context.Context, dev ImageDevice, m Manifest) (ImageSlots, error) {
	counter, err := dev.AntiRollback(ctx)
	if err != nil {
		return ImageSlots{}, err
	}
	if m.SecurityVersion < uint32(counter) {
		return ImageSlots{}, fmt.Errorf("%w: image has security version %d, device's counter is %d", ErrAntiRollback, m.SecurityVersion, counter)
	}
	slots, err := dev.ImageSlots(ctx)
	if err != nil {
		return ImageSlots{}, err
	}
	active := slots.A
	if slots.Active == SlotB {
		active = slots.B
	}
	if slots.Next != slots.Active || active.State == ImageTrial {
		return ImageSlots{}, fmt.Errorf("%w: an earlier update awaits its trial (active %v, next %v, %v); roll it back first", ErrImageState, slots.Active, slots.Next, active.State)
	}
	return slots, nil
}

// imageOf is the state of slot s.
func imageOf(slots ImageSlots, s ImageSlot) Image {
	if s == SlotB {
		return slots.B
	}
	return slots.A
}

// healthCheck requires the device to run target on trial and the health
// check to pass, within opts.HealthTimeout.
func healthCheck(ctx context.Context, dev ImageDevice, target ImageSlot, opts UpdateOptions) error {
	hctx, cancel := context.WithTimeout(ctx, opts.HealthTimeout)
	defer cancel()
	if err := opts.HealthCheck(hctx); err != nil {
		return err
	}
	slots, err := dev.ImageSlots(hctx)
	if err != nil {
		return err
	}
	if slots.Active != target || imageOf(slots, target).State != ImageTrial {
		return fmt.Errorf("%w: device runs slot %v (%v), not slot %v on trial", ErrImageState, slots.Active, imageOf(slots, slots.Active).State, target)
	}
	return nil
}

// waitReady polls the unit's boot stage until it is ready.
func waitReady(ctx context.Context, u Unit, poll time.Duration) error {
	var last error
	stage := drivers.BootStage("unknown")
	for {
		st, err := u.BootStage(ctx)
		switch {
		case err == nil && st == drivers.StageReady:
			return nil
		case err == nil:
			stage = st
		default:
			last = err
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			if last != nil && stage == "unknown" {
				return fmt.Errorf("unit not ready: %w (last error: %w)", ctx.Err(), last)
			}
			return fmt.Errorf("unit not ready, at boot stage %s: %w", stage, ctx.Err())
		case <-t.C:
		}
	}
}

// confirm confirms the trial and checks the device's state after it.
func confirm(ctx context.Context, dev ImageDevice, target ImageSlot, sv uint32) error {
	if err := dev.ImageCommand(ctx, ImageConfirm); err != nil {
		return err
	}
	slots, err := dev.ImageSlots(ctx)
	if err != nil {
		return err
	}
	counter, err := dev.AntiRollback(ctx)
	if err != nil {
		return err
	}
	if slots.Active != target || slots.Next != target || imageOf(slots, target).State != ImageGood || uint32(counter) < sv {
		return fmt.Errorf("%w: after confirm the device runs slot %v (%v), next %v, counter %d", ErrImageState, slots.Active, imageOf(slots, slots.Active).State, slots.Next, counter)
	}
	return nil
}

// rollback rolls the trial of target back, if the device has not already;
// rolled says it did now.
func rollback(ctx context.Context, dev ImageDevice, target ImageSlot) (rolled bool, err error) {
	slots, err := dev.ImageSlots(ctx)
	if err != nil {
		return false, err
	}
	if slots.Active != target && slots.Next != target {
		return false, nil // the device is back on its confirmed slot
	}
	if err := dev.ImageCommand(ctx, ImageRollback); err != nil {
		return false, err
	}
	return true, nil
}
