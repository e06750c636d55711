package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	fw "github.com/racklet/rack/firmware"
	"github.com/racklet/rack/internal/testutil"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/sim"
)

// withStatus expands steps into "step started", "step succeeded" pairs.
func withStatus(steps ...string) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s+" started", s+" succeeded")
	}
	return out
}

var allSteps = []string{"verify-manifest", "check-anti-rollback", "begin", "write", "device-verify", "switch", "reboot", "health-check", "confirm"}

// A good update, run by the runtime: every step is an event, started
// before it reaches the device, in order, with one action id; the new
// version is observed; the device runs it confirmed from the other slot
// and has raised its counter; the other BMC is untouched.
func TestGoodUpdate(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 2, Seed: 1}, testConfig())
	h.register(2)
	img := h.release("2.0.0", 3)
	h.run()
	h.done("n1-bmc", "1.0.0")
	h.done("n2-bmc", "1.0.0")

	seq := h.desire("n1-bmc", "2.0.0")
	h.done("n1-bmc", "2.0.0")

	want := append(withStatus(allSteps...), "observed 2.0.0 b sv3")
	if got := h.history("n1-bmc", seq); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %s\nwant %s", joined(got), joined(want))
	}
	steps := h.steps("n1-bmc", seq)
	for _, s := range steps {
		if s.Action != steps[0].Action || s.Version != "2.0.0" || s.Target != seq || s.Attempt != 1 {
			t.Fatalf("step %+v: want action %s, version 2.0.0, target %d, attempt 1", s, steps[0].Action, seq)
		}
	}
	h.wantDevice(1, device{version: fw.FirmwareVersion{Major: 2}, counter: 3, slots: fw.ImageSlots{Active: fw.SlotB, Next: fw.SlotB,
		A: initial.slots.A, B: fw.Image{State: fw.ImageGood, SecurityVersion: 3}}})
	if !bytes.Equal(h.bus.Image(1, fw.SlotB), img) {
		t.Fatal("slot B does not hold the image")
	}
	h.wantDevice(2, initial)
	if n := h.rec.imageWrites(2); n != 0 {
		t.Fatalf("%d writes to the other BMC", n)
	}
	f := h.firmware("n1-bmc")
	if f.LastStep == nil || f.LastStep.Step != "confirm" || f.LastStep.Status != events.StepSucceeded || f.Refusal != nil || !f.Done() {
		t.Fatalf("projection: %+v", f)
	}
	if u, _ := h.unit(1); u.Power != drivers.PowerOn {
		t.Fatalf("unit 1 is %s after the update", u.Power)
	}

	// Desiring what runs does nothing.
	before := h.rec.imageWrites(1)
	seq = h.desire("n1-bmc", "2.0.0")
	if _, err := h.reconcile(ctxT(t), "n1-bmc"); err != nil {
		t.Fatal(err)
	}
	if got := h.history("n1-bmc", seq); len(got) != 0 || h.rec.imageWrites(1) != before {
		t.Fatalf("desiring the running version did %s", joined(got))
	}
}

// A failed health check: the new image does not come up; the update rolls
// back and reboots into the old image, records why, and refuses that
// desired version for good.
func TestFailedHealthCheckRollsBack(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 1, Seed: 1}, testConfig())
	h.register(1)
	h.release("2.0.0", 2)
	ctx := ctxT(t)
	if _, err := h.reconcile(ctx, "n1-bmc"); err != nil {
		t.Fatal(err)
	}
	if err := h.bus.BreakTrial(1); err != nil {
		t.Fatal(err)
	}
	seq := h.desire("n1-bmc", "2.0.0")
	_, err := h.reconcile(ctx, "n1-bmc")
	if !reconcilers.IsTerminal(err) || !errors.Is(err, fw.ErrHealthCheck) {
		t.Fatalf("Reconcile = %v, want a terminal health check failure", err)
	}
	want := append(withStatus(allSteps[:7]...), "health-check started", "health-check failed")
	want = append(want, withStatus("rollback", "reboot")...)
	want = append(want, "refused health-check")
	if got := h.history("n1-bmc", seq); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %s\nwant %s", joined(got), joined(want))
	}
	failed := h.steps("n1-bmc", seq)[15]
	if failed.Step != "health-check" || failed.Retry || failed.Reason == "" {
		t.Fatalf("health check failure: %+v", failed)
	}
	f := h.firmware("n1-bmc")
	if f.Refusal == nil || f.Refusal.Code != events.RefusedHealthCheck || f.Refusal.Target != seq || !f.Refused() {
		t.Fatalf("refusal: %+v", f.Refusal)
	}
	// On the old, working slot, the new one marked bad; counter unchanged.
	h.wantDevice(1, device{version: initial.version, counter: 1, slots: fw.ImageSlots{
		A: initial.slots.A, B: fw.Image{State: fw.ImageBad, SecurityVersion: 2}}})
	testutil.WaitFor(t, testTimeout, func() error {
		if u, _ := h.unit(1); u.Stage != drivers.StageReady {
			return fmt.Errorf("unit at %s", u.Stage)
		}
		return nil
	})

	// Not tried again: reconciling once more does nothing.
	writes := h.rec.imageWrites(1)
	last := h.state().Sequence
	if _, err := h.reconcile(ctx, "n1-bmc"); err != nil {
		t.Fatalf("Reconcile after the refusal: %v", err)
	}
	if got := h.history("n1-bmc", last+1); len(got) != 0 || h.rec.imageWrites(1) != writes {
		t.Fatalf("a refused version was tried again: %s", joined(got))
	}
	if n := h.counter("racklet_firmware_updates_total", "result", "refused"); n != 1 {
		t.Fatalf("refused updates = %v", n)
	}
}

// A rollback attack: after an update raised the device's counter, a
// validly signed older image is refused before anything reaches the
// device.
func TestRollbackAttackRefused(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 1, Seed: 1}, testConfig())
	h.register(1)
	h.release("2.0.0", 5)
	h.release("1.9.0", 4) // signed by the trusted key, but older
	ctx := ctxT(t)
	h.desire("n1-bmc", "2.0.0")
	if _, err := h.reconcile(ctx, "n1-bmc"); err != nil {
		t.Fatal(err)
	}
	after := device{version: fw.FirmwareVersion{Major: 2}, counter: 5, slots: fw.ImageSlots{Active: fw.SlotB, Next: fw.SlotB,
		A: initial.slots.A, B: fw.Image{State: fw.ImageGood, SecurityVersion: 5}}}
	h.wantDevice(1, after)

	writes := h.rec.imageWrites(1)
	seq := h.desire("n1-bmc", "1.9.0")
	_, err := h.reconcile(ctx, "n1-bmc")
	if !reconcilers.IsTerminal(err) || !errors.Is(err, fw.ErrAntiRollback) {
		t.Fatalf("Reconcile = %v, want a terminal anti-rollback refusal", err)
	}
	if got := h.history("n1-bmc", seq); !slices.Equal(got, []string{"refused anti-rollback"}) {
		t.Fatalf("events: %s", joined(got))
	}
	r := h.firmware("n1-bmc").Refusal
	if r == nil || r.Version != "1.9.0" || r.Target != seq || r.Reason == "" {
		t.Fatalf("refusal %+v", r)
	}
	h.wantDevice(1, after)
	if n := h.rec.imageWrites(1); n != writes {
		t.Fatalf("%d writes reached the device", n-writes)
	}
	// Recorded once; not tried again.
	if _, err := h.reconcile(ctx, "n1-bmc"); err != nil {
		t.Fatalf("second Reconcile = %v", err)
	}
	if n := len(h.events("n1-bmc", seq, events.FirmwareRefused)); n != 1 {
		t.Fatalf("%d refusals recorded", n)
	}
}

// Images that must not be installed: refused with a reason before
// anything reaches the device.
func TestBadImagesRefused(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(h *harness)
		code    string
		err     error
	}{
		{"manifest altered after signing", func(h *harness) {
			img, m := h.image("2.0.0", 2, 600)
			m.SecurityVersion = 99 // an attacker raising it breaks the signature
			h.publish("2.0.0", img, m)
		}, events.RefusedSignature, fw.ErrBadSignature},
		{"signed by an untrusted key", func(h *harness) {
			img := bytes.Repeat([]byte{1}, 600)
			m, err := fw.Sign(img, fw.ManifestFields{Component: fw.ComponentBMC, Version: fw.FirmwareVersion{Major: 2}, SecurityVersion: 2}, stranger)
			if err != nil {
				h.t.Fatal(err)
			}
			h.publish("2.0.0", img, m)
		}, events.RefusedSignature, fw.ErrUnknownKey},
		{"image altered after signing", func(h *harness) {
			img, m := h.image("2.0.0", 2, 600)
			img[100] ^= 1
			h.publish("2.0.0", img, m)
		}, events.RefusedSignature, fw.ErrDigestMismatch},
		{"image for the rmc", func(h *harness) {
			img := bytes.Repeat([]byte{1}, 600)
			m, err := fw.Sign(img, fw.ManifestFields{Component: fw.ComponentRMC, Version: fw.FirmwareVersion{Major: 2}, SecurityVersion: 2}, signer)
			if err != nil {
				h.t.Fatal(err)
			}
			h.publish("2.0.0", img, m)
		}, events.RefusedManifest, fw.ErrManifest},
		{"manifest of another version", func(h *harness) {
			img, m := h.image("2.0.1", 2, 600)
			h.publish("2.0.0", img, m)
		}, events.RefusedManifest, fw.ErrManifest},
		{"no image", func(h *harness) {}, events.RefusedNoImage, fw.ErrNoImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, sim.Config{Slots: 1, Seed: 1}, testConfig())
			h.register(1)
			tt.prepare(h)
			seq := h.desire("n1-bmc", "2.0.0")
			_, err := h.reconcile(ctxT(t), "n1-bmc")
			if !reconcilers.IsTerminal(err) || !errors.Is(err, tt.err) {
				t.Fatalf("Reconcile = %v, want terminal %v", err, tt.err)
			}
			want := []string{"observed 1.0.0 a sv1", "refused " + tt.code}
			if got := h.history("n1-bmc", seq); !slices.Equal(got, want) {
				t.Fatalf("events: %s, want %s", joined(got), joined(want))
			}
			h.wantDevice(1, initial)
			if n := h.rec.imageWrites(1); n != 0 {
				t.Fatalf("%d writes reached the device", n)
			}
			// A good image and a new desired version: installed.
			h.release("2.0.0", 2)
			h.desire("n1-bmc", "2.0.0")
			if _, err := h.reconcile(ctxT(t), "n1-bmc"); err != nil {
				t.Fatalf("after fixing the image: %v", err)
			}
			if f := h.firmware("n1-bmc"); !f.Done() || f.Refusal != nil {
				t.Fatalf("not updated after fixing the image: %+v", f)
			}
		})
	}
}

// Power pulled from the slot in the middle of writing the image: the
// write fails (to be retried); the device stays on its old, working slot;
// once power is back the reconciler, level-triggered, observes the old
// version again and completes the update from the start.
func TestPowerPulledMidUpdate(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 1, Seed: 1, RestorePrevious: true}, testConfig())
	h.register(1)
	img := h.release("2.0.0", 2)

	writes, begins := 0, 0
	pulled := make(chan struct{})
	var atRetry device
	h.rec.setHook(func(slot int, step string) error {
		switch step {
		case fw.StepWrite:
			if writes++; writes == 10 {
				if err := h.rack.PullSlotPower(slot); err != nil {
					return err
				}
				close(pulled)
			}
		case fw.StepBegin:
			if begins++; begins == 2 {
				atRetry = h.device(slot) // the device as the retry finds it
			}
		}
		return nil
	})
	h.run()
	h.done("n1-bmc", "1.0.0")
	seq := h.desire("n1-bmc", "2.0.0")
	<-pulled

	// The write failed and will be retried; nothing was switched.
	testutil.WaitFor(t, testTimeout, func() error {
		for _, s := range h.steps("n1-bmc", seq) {
			if s.Step == "write" && s.Status == events.StepFailed {
				if !s.Retry || s.Reason == "" {
					return fmt.Errorf("write failure %+v", s)
				}
				return nil
			}
		}
		return errors.New("no failed write yet")
	})
	if err := h.rack.RestoreSlotPower(1); err != nil {
		t.Fatal(err)
	}
	h.done("n1-bmc", "2.0.0")

	// When power came back, the device ran its old image from slot A; B
	// held the half-written image.
	if atRetry.version != initial.version || atRetry.slots.Active != fw.SlotA || atRetry.slots.Next != fw.SlotA ||
		atRetry.slots.A != initial.slots.A || atRetry.slots.B.State != fw.ImageLoading || atRetry.counter != 1 {
		t.Fatalf("device when power came back: %+v", atRetry)
	}
	got := h.history("n1-bmc", seq)
	first := withStatus("verify-manifest", "check-anti-rollback", "begin")
	first = append(first, "write started", "write failed")
	if !slices.Equal(got[:len(first)], first) {
		t.Fatalf("first attempt: %s", joined(got))
	}
	for _, s := range got[len(first):] {
		if s == "switch started" || s == "switch succeeded" {
			break
		}
		if s == "observed 2.0.0 b sv2" {
			t.Fatalf("new version observed before the second attempt switched: %s", joined(got))
		}
	}
	want := append(withStatus(allSteps...), "observed 2.0.0 b sv2")
	if tail := got[len(got)-len(want):]; !slices.Equal(tail, want) {
		t.Fatalf("last attempt: %s", joined(got))
	}
	steps := h.steps("n1-bmc", seq)
	if a, b := steps[0], steps[len(steps)-1]; a.Action == b.Action || a.Attempt != 1 || b.Attempt < 2 {
		t.Fatalf("attempts: first %+v, last %+v", a, b)
	}
	h.wantDevice(1, device{version: fw.FirmwareVersion{Major: 2}, counter: 2, slots: fw.ImageSlots{Active: fw.SlotB, Next: fw.SlotB,
		A: initial.slots.A, B: fw.Image{State: fw.ImageGood, SecurityVersion: 2}}})
	if !bytes.Equal(h.bus.Image(1, fw.SlotB), img) {
		t.Fatal("slot B does not hold the image")
	}
}

// The updater dies after the reboot (its context ends, as when the leader
// hosting it goes down): the device runs the new image on trial; the next
// Reconcile resumes with the health check and confirms it.
func TestResumeAfterUpdaterLost(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 1, Seed: 1}, testConfig())
	h.register(1)
	h.release("2.0.0", 2)
	ctx, cancel := context.WithCancel(ctxT(t))
	h.rec.setAfter(func(slot int, step string) {
		if step == fw.StepReboot {
			cancel() // the unit rebooted; the updater is gone
		}
	})
	seq := h.desire("n1-bmc", "2.0.0")
	if _, err := h.reconcile(ctx, "n1-bmc"); err == nil || reconcilers.IsTerminal(err) {
		t.Fatalf("Reconcile = %v, want a retryable error", err)
	}
	d := h.device(1)
	if d.slots.Active != fw.SlotB || d.slots.B.State != fw.ImageTrial || d.version.Major != 2 {
		t.Fatalf("device after the lost updater: %+v", d)
	}
	h.rec.setAfter(nil)
	if f := h.firmware("n1-bmc"); f.Observed == nil || !f.Observed.Trial {
		t.Fatalf("the trial was not observed: %+v", f.Observed)
	}
	mark := h.state().Sequence + 1
	if _, err := h.reconcile(ctxT(t), "n1-bmc"); err != nil {
		t.Fatal(err)
	}
	want := withStatus("health-check", "confirm")
	want = append(want, "observed 2.0.0 b sv2")
	if got := h.history("n1-bmc", mark); !slices.Equal(got, want) {
		t.Fatalf("resume: %s, want %s", joined(got), joined(want))
	}
	if got := h.history("n1-bmc", seq); len(got) < len(want) {
		t.Fatalf("history %s", joined(got))
	}
	h.wantDevice(1, device{version: fw.FirmwareVersion{Major: 2}, counter: 2, slots: fw.ImageSlots{Active: fw.SlotB, Next: fw.SlotB,
		A: initial.slots.A, B: fw.Image{State: fw.ImageGood, SecurityVersion: 2}}})
}

// A trial of a version nobody desires (a desired version changed while an
// update was under way) is rolled back, then the desired one installed.
func TestUndesiredTrialRolledBack(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 1, Seed: 1}, testConfig())
	h.register(1)
	h.release("2.0.0", 2)
	h.release("3.0.0", 3)
	ctx, cancel := context.WithCancel(ctxT(t))
	h.rec.setAfter(func(slot int, step string) {
		if step == fw.StepReboot {
			cancel()
		}
	})
	h.desire("n1-bmc", "2.0.0")
	_, _ = h.reconcile(ctx, "n1-bmc")
	h.rec.setAfter(nil)
	seq := h.desire("n1-bmc", "3.0.0")
	res, err := h.reconcile(ctxT(t), "n1-bmc")
	if err != nil || res.RequeueAfter == 0 {
		t.Fatalf("Reconcile = %+v, %v", res, err)
	}
	want := []string{"rollback started", "rollback succeeded", "observed 1.0.0 a sv1"}
	if got := h.history("n1-bmc", seq); !slices.Equal(got, want) {
		t.Fatalf("events %s, want %s", joined(got), joined(want))
	}
	// The unit is still booting from the reboot of the first update: the
	// reconciler waits for it, then installs 3.0.0.
	testutil.WaitFor(t, testTimeout, func() error {
		if _, err := h.reconcile(ctxT(t), "n1-bmc"); err != nil {
			return err
		}
		if f := h.firmware("n1-bmc"); !f.Done() || f.Observed.Version != "3.0.0" || f.Observed.Slot != "b" {
			return fmt.Errorf("after the rollback: %+v", f.Observed)
		}
		return nil
	})
}

// The update reboots the unit: it waits while that would break the
// control plane's quorum (a refusal of code quorum, recorded once) and
// while the node is desired off, then proceeds.
func TestUpdateWaitsForQuorumAndPower(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 3, Seed: 1}, testConfig())
	for i := 1; i <= 3; i++ {
		m := fmt.Sprintf("m%d", i)
		h.append(events.MemberJoined, m, &events.MemberJoinedData{Address: m + ":7481", Voter: true})
		h.append(events.NodeRegistered, fmt.Sprintf("n%d", i), &events.NodeRegisteredData{Slot: i, Member: m})
	}
	h.release("2.0.0", 2)
	h.append(events.NodePowerDesired, "n3", &events.PowerDesiredData{State: events.PowerOff})
	ctx := ctxT(t)
	seq := h.desire("n1-bmc", "2.0.0")
	for range 2 {
		res, err := h.reconcile(ctx, "n1-bmc")
		if err != nil || res.RequeueAfter == 0 {
			t.Fatalf("Reconcile = %+v, %v; want a requeue", res, err)
		}
	}
	if got := h.history("n1-bmc", seq); !slices.Equal(got, []string{"observed 1.0.0 a sv1", "refused quorum"}) {
		t.Fatalf("events: %s", joined(got))
	}
	if r := h.firmware("n1-bmc").Refusal; r == nil || r.Code != events.RefusedQuorum || h.firmware("n1-bmc").Refused() {
		t.Fatalf("refusal %+v", r)
	}
	if n := h.rec.imageWrites(1); n != 0 {
		t.Fatalf("%d writes reached the device", n)
	}

	// n1 itself desired off: no update (it would power the node on).
	h.append(events.NodePowerDesired, "n3", &events.PowerDesiredData{State: events.PowerOn})
	h.append(events.NodePowerDesired, "n1", &events.PowerDesiredData{State: events.PowerOff})
	if res, err := h.reconcile(ctx, "n1-bmc"); err != nil || res.RequeueAfter == 0 {
		t.Fatalf("Reconcile = %+v, %v; want a requeue", res, err)
	}
	if n := h.rec.imageWrites(1); n != 0 {
		t.Fatalf("%d writes reached the device of a node desired off", n)
	}
	h.append(events.NodePowerDesired, "n1", &events.PowerDesiredData{State: events.PowerOn})
	if _, err := h.reconcile(ctx, "n1-bmc"); err != nil {
		t.Fatal(err)
	}
	if f := h.firmware("n1-bmc"); !f.Done() || f.Refusal != nil {
		t.Fatalf("not updated: %+v", f)
	}
}

// A member that lost leadership cannot commit a step's intent, so nothing
// reaches the device.
func TestFencedOutDoesNotTouchTheDevice(t *testing.T) {
	log := eventlog.NewMem(0)
	t.Cleanup(func() { _ = log.Close() })
	cfg := testConfig()
	cfg.Log = fencedOut{log}
	h := newHarness(t, sim.Config{Slots: 1, Seed: 1}, cfg)
	h.log = log
	h.register(1)
	h.release("2.0.0", 2)
	h.desire("n1-bmc", "2.0.0")
	_, err := h.reconcile(ctxT(t), "n1-bmc")
	if !errors.Is(err, eventlog.ErrNotLeader) {
		t.Fatalf("Reconcile = %v, want ErrNotLeader", err)
	}
	if n := h.rec.imageWrites(1); n != 0 {
		t.Fatalf("%d writes reached the device", n)
	}
	h.wantDevice(1, initial)
}

// A node's registration wakes its BMC's firmware; nodes and components
// that are gone are dropped quietly; the list is every node's BMC.
func TestNamesAndList(t *testing.T) {
	h := newHarness(t, sim.Config{Slots: 2, Seed: 1}, testConfig())
	h.register(2)
	ctx := ctxT(t)
	if _, err := h.reconcile(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if f := h.firmware("n2-bmc"); f == nil || f.Observed == nil || f.Observed.Version != "1.0.0" {
		t.Fatalf("n2's BMC not observed: %+v", f)
	}
	for _, name := range []string{"n9", "n9-bmc", "x"} {
		if res, err := h.reconcile(ctx, name); err != nil || res != (reconcilers.Result{}) {
			t.Fatalf("Reconcile(%s) = %+v, %v", name, res, err)
		}
	}
	names, err := h.fr.List(ctx)
	if err != nil || !slices.Equal(names, []string{"n1-bmc", "n2-bmc"}) {
		t.Fatalf("List = %v, %v", names, err)
	}
	h.append(events.NodeRegistered, "n0", &events.NodeRegisteredData{})
	if _, err := h.reconcile(ctx, "n0-bmc"); !reconcilers.IsTerminal(err) {
		t.Fatalf("a node without a slot: %v", err)
	}
}

// The firmware package's steps are the ones the events accept.
func TestStepNames(t *testing.T) {
	ours := []string{fw.StepVerifyManifest, fw.StepAntiRollback, fw.StepBegin, fw.StepWrite, fw.StepDeviceVerify,
		fw.StepSwitch, fw.StepReboot, fw.StepHealthCheck, fw.StepConfirm, fw.StepRollback}
	if !slices.Equal(ours, events.FirmwareSteps) {
		t.Fatalf("firmware steps %v, events accept %v", ours, events.FirmwareSteps)
	}
}

func TestConfig(t *testing.T) {
	log := eventlog.NewMem(0)
	t.Cleanup(func() { _ = log.Close() })
	r, err := sim.New(sim.Config{Slots: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	good := Config{Log: log, Backplane: r.Backplane(), Images: fw.Dir(t.TempDir()), Trusted: trustedKR, Rack: "rack1", Member: "m1"}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no log", func(c *Config) { c.Log = nil }},
		{"no backplane", func(c *Config) { c.Backplane = nil }},
		{"no images", func(c *Config) { c.Images = nil }},
		{"no keys", func(c *Config) { c.Trusted = nil }},
		{"bad rack", func(c *Config) { c.Rack = "Rack" }},
		{"bad member", func(c *Config) { c.Member = "" }},
		{"negative", func(c *Config) { c.PollInterval = -1 }},
		{"health beyond update", func(c *Config) { c.HealthTimeout, c.UpdateTimeout = 2e9, 1e9 }},
	}
	for _, tt := range tests {
		c := good
		tt.mod(&c)
		if _, err := New(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", tt.name, err)
		}
	}
}

// The simulator's direct BMCs have no image registers: a desired version
// for them is refused as unsupported.
func TestUnsupportedDevice(t *testing.T) {
	log := eventlog.NewMem(0)
	t.Cleanup(func() { _ = log.Close() })
	r, err := sim.New(sim.Config{Slots: 1, Logger: quiet, StartOn: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	fr, err := New(Config{Log: log, Backplane: r.Backplane(), Images: fw.Dir(t.TempDir()), Trusted: fw.NewKeyring(signer.Public().(ed25519.PublicKey)), Rack: "rack1", Member: "m1", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, log: log}
	h.register(1)
	h.desire("n1-bmc", "2.0.0")
	_, err = fr.Reconcile(ctxT(t), reconcilers.Request{Name: "n1-bmc"})
	if !reconcilers.IsTerminal(err) {
		t.Fatalf("Reconcile = %v, want terminal", err)
	}
	if r := h.firmware("n1-bmc").Refusal; r == nil || r.Code != events.RefusedUnsupported {
		t.Fatalf("refusal %+v", r)
	}
}

// unit is the simulator's truth about a slot's unit.
func (h *harness) unit(slot int) (sim.UnitStatus, error) { return h.rack.Unit(slot) }

// counter sums a counter of the harness's registry over the series whose
// labels match (pairs of name, value).
func (h *harness) counter(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() != labels[i+1] {
						continue metric
					}
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
