package boot_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/internal/testutil"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/reconcilers/boot"
	"github.com/racklet/rack/sim"
)

func TestConfig(t *testing.T) {
	log := eventlog.NewMem(0)
	defer log.Close()
	rack, err := sim.New(sim.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	good := boot.Config{Log: log, Backplane: rack.Backplane(), Rack: "rack1", Member: "m1"}
	for _, tt := range []struct {
		name   string
		change func(*boot.Config)
	}{
		{"no log", func(c *boot.Config) { c.Log = nil }},
		{"no backplane", func(c *boot.Config) { c.Backplane = nil }},
		{"bad rack", func(c *boot.Config) { c.Rack = "Rack 1" }},
		{"no member", func(c *boot.Config) { c.Member = "" }},
		{"negative poll", func(c *boot.Config) { c.PollInterval = -time.Second }},
		{"negative timeout", func(c *boot.Config) { c.Timeouts.OS = -time.Second }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			if _, err := boot.New(c); !errors.Is(err, boot.ErrInvalid) {
				t.Fatalf("New = %v, want ErrInvalid", err)
			}
		})
	}
	r, err := boot.New(good)
	if err != nil {
		t.Fatal(err)
	}
	// The runtime takes it beside the power reconciler: inputs and
	// outputs are disjoint, known, and owned once.
	rt, err := reconcilers.New(reconcilers.Config{Log: log, Leadership: reconcilers.NewLeaderSwitch(false), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Register(r); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if d := boot.DefaultTimeouts(); d.For(events.BootStageBootstrap) != 5*time.Minute || d.For("") != 2*time.Minute {
		t.Errorf("default timeouts %+v", d)
	}
}

// TestGoodBoot: a verified image boots through every stage, in order, on
// the network path; the source is set once, after its intent, and the node
// is cycled once, by the power reconciler.
func TestGoodBoot(t *testing.T) {
	h := newHarness(t, options{})
	h.waitOn("n2")
	img := h.publish("os/good.img")
	spec := h.append(events.NodeBootDesired, "n2", img.Spec())

	h.waitStage("n2", events.BootStageFirmware)
	for _, step := range []struct {
		advance time.Duration
		stage   events.BootStage
	}{
		{timings.Firmware, events.BootStageBootstrap},
		{timings.Bootstrap * 4 / 5, events.BootStageImageVerified}, // the last quarter of bootstrap
		{timings.Bootstrap / 5, events.BootStageOS},
		{timings.OS, events.BootStageReady},
	} {
		h.clock.Advance(step.advance)
		h.waitStage("n2", step.stage)
	}
	b := h.waitBoot("n2", spec, state.BootReady)
	if b.Source != events.BootNetwork || b.Image != img.URL || b.CycleSequence <= spec || b.StartedSequence <= spec {
		t.Errorf("boot %+v", b)
	}

	var got []string
	for _, ev := range h.events("n2", spec+1, events.NodeBootStage, events.NodeBootStarted, events.NodeBootFailed, events.NodeBootRefused) {
		switch ev.Type {
		case events.NodeBootStage:
			d := payload[*events.BootStageData](t, ev)
			if d.Target != spec || d.Via != events.ViaBMC {
				t.Errorf("stage event %+v", d)
			}
			got = append(got, string(d.Stage))
		default:
			got = append(got, string(ev.Type))
		}
	}
	want := []string{string(events.NodeBootStarted), "firmware", "bootstrap", "image-verified", "os", "ready"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events after the spec: %v, want %v", got, want)
	}
	if n := h.rec.count(2, boot.OpSetSource); n != 1 {
		t.Errorf("%d boot source sets on slot 2, want 1", n)
	}
	if n := h.rec.count(2, state.OpPowerCycle); n != 1 {
		t.Errorf("%d power cycles on slot 2, want 1", n)
	}
	bmc, _ := h.rack.Backplane().BMC(2)
	if src, err := bmc.(drivers.BootSourceSetter).BootSource(context.Background()); err != nil || src != drivers.BootNetwork {
		t.Errorf("next boot source %q, %v", src, err)
	}
	// The cycle is the boot reconciler's, recorded as a command.
	cycles := h.events("n2", spec+1, events.NodePowerDesired)
	if len(cycles) != 1 || cycles[0].Actor != boot.Actor || payload[*events.PowerDesiredData](t, cycles[0]).State != events.PowerCycle {
		t.Errorf("power.desired after the spec: %+v", cycles)
	}
}

// TestLocalBoot: a local boot skips the boot environment.
func TestLocalBoot(t *testing.T) {
	h := newHarness(t, options{})
	h.waitOn("n1")
	spec := h.append(events.NodeBootDesired, "n1", &events.BootDesiredData{Source: events.BootLocal})
	h.waitStage("n1", events.BootStageFirmware)
	h.clock.Advance(timings.Firmware)
	h.waitStage("n1", events.BootStageOS)
	h.clock.Advance(timings.OS)
	h.waitBoot("n1", spec, state.BootReady)
	for _, ev := range h.events("n1", spec+1, events.NodeBootStage) {
		if s := payload[*events.BootStageData](t, ev).Stage; s == events.BootStageBootstrap || s == events.BootStageImageVerified {
			t.Errorf("a local boot went through %s", s)
		}
	}
}

// TestRefused: an image that does not verify never boots: the refusal is
// an event, the boot source is not touched and the node is not cycled.
func TestRefused(t *testing.T) {
	h := newHarness(t, options{})
	h.waitOn("n2")
	good := h.publish("os/good.img")
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	untrusted, err := h.images.Publish("os/untrusted.img", []byte("image signed by a stranger"), other)
	if err != nil {
		t.Fatal(err)
	}
	// A manifest whose signature is broken (one bit of it flipped).
	tampered := h.publish("os/tampered.img")
	tm, err := firmware.Sign([]byte("kernel+initramfs of os/tampered.img"),
		firmware.ManifestFields{Component: firmware.ComponentOS, Version: firmware.FirmwareVersion{Major: 1}, SecurityVersion: 1}, h.images.Key())
	if err != nil {
		t.Fatal(err)
	}
	tm.Signature[0] ^= 1
	tb, err := json.Marshal(tm)
	if err != nil {
		t.Fatal(err)
	}
	h.images.Put("os/tampered.img"+firmware.ManifestSuffix, tb)
	// An image swapped under its (good) manifest.
	swapped := h.publish("os/swapped.img")
	h.images.Put("os/swapped.img", []byte("not the image that was signed"))
	// An image signed as BMC firmware.
	bmcImg, err := h.images.PublishFor("os/bmc.img", []byte("bmc firmware"), nil, firmware.ComponentBMC)
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name   string
		spec   events.BootDesiredData
		reason string
	}{
		{"bad signature", *tampered.Spec(), "bad signature"},
		{"untrusted key", *untrusted.Spec(), "unknown signing key"},
		{"image swapped", *swapped.Spec(), "digest"},
		{"wrong component", *bmcImg.Spec(), "wrong component"},
		{"spec digest", events.BootDesiredData{Source: events.BootNetwork, Image: good.URL, Digest: untrusted.Digest, KeyID: good.KeyID}, "the manifest says"},
		{"spec key", events.BootDesiredData{Source: events.BootNetwork, Image: good.URL, Digest: good.Digest, KeyID: "0123456789abcdef"}, "the boot spec names key"},
		{"no manifest", events.BootDesiredData{Source: events.BootNetwork, Image: h.images.URL("os/missing.img"), Digest: good.Digest, KeyID: good.KeyID}, "404"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seq := h.append(events.NodeBootDesired, "n2", &tt.spec)
			b := h.waitBoot("n2", seq, state.BootRefused)
			if !strings.Contains(b.Reason, tt.reason) {
				t.Errorf("reason %q, want it to mention %q", b.Reason, tt.reason)
			}
			refused := h.events("n2", seq, events.NodeBootRefused)
			if len(refused) != 1 || payload[*events.BootRefusedData](t, refused[0]).Target != seq || refused[0].Actor != boot.Actor {
				t.Errorf("refusals: %+v", refused)
			}
		})
	}
	if n := h.rec.count(2, boot.OpSetSource) + h.rec.count(2, state.OpPowerCycle); n != 0 {
		t.Errorf("%d boot source sets and power cycles on slot 2 for refused images", n)
	}
	for _, ev := range h.events("n2", 1, events.NodeBootStarted, events.NodeBootStage, events.NodePowerDesired) {
		if ev.Type != events.NodePowerDesired || ev.Actor == boot.Actor {
			t.Errorf("event %d %s (actor %s) after a refused image", ev.Sequence, ev.Type, ev.Actor)
		}
	}
}

// TestStageTimeout: a unit whose boot environment refuses its image stays
// in bootstrap; the boot fails with that stage once its timeout passes.
func TestStageTimeout(t *testing.T) {
	h := newHarness(t, options{timeouts: boot.Timeouts{Bootstrap: 300 * time.Millisecond}})
	h.waitOn("n3")
	if err := h.rack.FailNetworkBoot(3); err != nil {
		t.Fatal(err)
	}
	spec := h.append(events.NodeBootDesired, "n3", h.publish("os/good.img").Spec())
	h.waitStage("n3", events.BootStageFirmware)
	h.clock.Advance(timings.Firmware)
	h.waitStage("n3", events.BootStageBootstrap)
	h.clock.Advance(time.Hour) // the sim unit never leaves bootstrap
	b := h.waitBoot("n3", spec, state.BootFailed)
	if b.FailedStage != events.BootStageBootstrap || !strings.Contains(b.Reason, "no progress past stage bootstrap within 300ms") {
		t.Errorf("failed boot %+v", b)
	}
	failed := h.events("n3", spec, events.NodeBootFailed)
	if len(failed) != 1 {
		t.Fatalf("%d boot.failed events", len(failed))
	}
	if d := payload[*events.BootFailedData](t, failed[0]); d.Stage != events.BootStageBootstrap || d.Target != spec {
		t.Errorf("boot.failed %+v", d)
	}
	for _, ev := range h.events("n3", spec, events.NodeBootStage) {
		if s := payload[*events.BootStageData](t, ev).Stage; s == events.BootStageOS || s == events.BootStageReady {
			t.Errorf("the unit with a bad image reached %s", s)
		}
	}
}

// TestPulledMidBoot: the unit is pulled out in the middle of its boot: the
// node is removed, nothing waits on it; the unit put back is registered
// again, powered on, and boots a new spec to ready.
func TestPulledMidBoot(t *testing.T) {
	h := newHarness(t, options{timeouts: boot.Timeouts{Firmware: time.Minute}})
	h.waitOn("n2")
	img := h.publish("os/good.img")
	h.append(events.NodeBootDesired, "n2", img.Spec())
	h.waitStage("n2", events.BootStageFirmware)
	h.clock.Advance(timings.Firmware)
	h.waitStage("n2", events.BootStageBootstrap)

	if err := h.rack.RemoveUnit(2); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, testTimeout, func() error {
		if n := h.node("n2"); n != nil {
			return fmt.Errorf("n2 still registered (boot %+v)", n.Boot)
		}
		return nil
	})
	removed := h.events("n2", 1, events.NodeRemoved)
	if len(removed) != 1 || payload[*events.NodeRemovedData](t, removed[0]).Reason != "unit removed from slot 2" {
		t.Fatalf("node.removed events: %+v", removed)
	}
	if failed := h.events("n2", 1, events.NodeBootFailed); len(failed) != 0 {
		t.Errorf("boot.failed for a node pulled out: %+v", failed)
	}

	if err := h.rack.InsertUnit(2); err != nil {
		t.Fatal(err)
	}
	h.waitOn("n2")
	if n := h.node("n2"); n.Boot != nil || !n.Present || n.Desired != events.PowerOn {
		t.Errorf("re-registered n2: %+v", n)
	}
	spec := h.append(events.NodeBootDesired, "n2", img.Spec())
	h.waitStage("n2", events.BootStageFirmware)
	h.clock.Advance(timings.Firmware + timings.Bootstrap + timings.OS)
	h.waitBoot("n2", spec, state.BootReady)
}

// TestCycleRefused: the boot's power cycle of a node hosting a member is
// refused by the quorum guard (another member's node is off): the refusal
// is an event, the node is not cycled, and the boot fails after its cycle
// timeout saying why.
func TestCycleRefused(t *testing.T) {
	h := newHarness(t, options{members: true, timeouts: boot.Timeouts{Cycle: 500 * time.Millisecond}})
	h.waitOn("n1")
	h.waitOn("n2")
	h.append(events.NodePowerDesired, "n3", &events.PowerDesiredData{State: events.PowerOff, Force: true})
	testutil.WaitFor(t, testTimeout, func() error {
		if n := h.node("n3"); n.Observed != events.PowerOff {
			return fmt.Errorf("n3 observed %s", n.Observed)
		}
		return nil
	})
	spec := h.append(events.NodeBootDesired, "n2", h.publish("os/good.img").Spec())
	b := h.waitBoot("n2", spec, state.BootFailed)
	if b.FailedStage != events.BootStageOff || !strings.Contains(b.Reason, "quorum guard") {
		t.Errorf("failed boot %+v", b)
	}
	if refused := h.events("n2", spec, events.NodePowerRefused); len(refused) == 0 {
		t.Error("no node.power.refused for the boot's cycle")
	}
	if n := h.rec.count(2, state.OpPowerCycle); n != 0 {
		t.Errorf("%d power cycles of n2 past the quorum guard", n)
	}
}

// TestNewSpecMidBoot: a new spec while a boot runs supersedes it: the new
// one is verified and booted.
func TestNewSpecMidBoot(t *testing.T) {
	h := newHarness(t, options{})
	h.waitOn("n1")
	h.append(events.NodeBootDesired, "n1", h.publish("os/a.img").Spec())
	h.waitStage("n1", events.BootStageFirmware)
	spec := h.append(events.NodeBootDesired, "n1", h.publish("os/b.img").Spec())
	h.waitBoot("n1", spec, state.BootBooting)
	h.waitStage("n1", events.BootStageFirmware)
	h.clock.Advance(timings.Firmware + timings.Bootstrap + timings.OS)
	b := h.waitBoot("n1", spec, state.BootReady)
	if !strings.HasSuffix(b.Image, "/os/b.img") {
		t.Errorf("booted %s", b.Image)
	}
	if n := h.rec.count(1, state.OpPowerCycle); n != 2 {
		t.Errorf("%d cycles, want 2 (one per spec)", n)
	}
}
