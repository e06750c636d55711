package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/drivers/smbus"
	"github.com/racklet/rack/events"
	fw "github.com/racklet/rack/firmware"
	"github.com/racklet/rack/internal/testutil"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/sim"
)

const testTimeout = 10 * time.Second

var quiet = slog.New(slog.DiscardHandler)

// The signing key the harness trusts, and one it does not.
var (
	signer    = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	stranger  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	trustedKR = fw.NewKeyring(signer.Public().(ed25519.PublicKey))
)

// harness is a rack: an in-memory log, the simulator with its emulated
// firmware reached through the SMBus driver (behind a recorder), an image
// repository in a temporary directory, and a firmware reconciler, run by
// the real runtime (run) or called directly (reconcile).
type harness struct {
	t    *testing.T
	log  *eventlog.Mem
	rack *sim.Rack
	bus  *sim.FirmwareBus
	bp   *smbus.Backplane
	rec  *recorder
	dir  string
	fr   *Reconciler
	reg  *prometheus.Registry
}

// testConfig is a reconciler config for tests: fast, quiet.
func testConfig() Config {
	return Config{
		Rack:            "rack1",
		Member:          "m1",
		ObserveInterval: 30 * time.Millisecond,
		CallTimeout:     time.Second,
		UpdateTimeout:   5 * time.Second,
		HealthTimeout:   400 * time.Millisecond,
		PollInterval:    5 * time.Millisecond,
		Logger:          quiet,
	}
}

func newHarness(t *testing.T, sc sim.Config, cfg Config) *harness {
	t.Helper()
	log := eventlog.NewMem(0)
	t.Cleanup(func() { _ = log.Close() })
	sc.Logger = quiet
	sc.StartOn = true
	rack, err := sim.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rack.Close() })
	bus, err := rack.FirmwareBus(sim.FirmwareConfig{SlotCapacity: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	bp, err := smbus.New(smbus.Config{Bus: bus, Slots: rack.Slots(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, log: log, rack: rack, bus: bus, bp: bp, dir: t.TempDir(), reg: prometheus.NewRegistry()}
	h.rec = newRecorder(bp, log)
	if cfg.Log == nil {
		cfg.Log = log
	}
	cfg.Backplane, cfg.Images, cfg.Registerer = h.rec, fw.Dir(h.dir), h.reg
	if cfg.Trusted == nil {
		cfg.Trusted = trustedKR
	}
	h.fr, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.rec.check(t) })
	return h
}

// run runs the reconciler in the real runtime, leading, until the test ends.
func (h *harness) run() {
	h.t.Helper()
	backoff := reconcilers.Backoff{Base: 10 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: 0.2}
	rt, err := reconcilers.New(reconcilers.Config{Log: h.log, Leadership: reconcilers.NewLeaderSwitch(true), Logger: quiet, Backoff: backoff})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := rt.Register(h.fr); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("runtime: %v", err)
		}
	})
}

// reconcile calls the reconciler directly for name.
func (h *harness) reconcile(ctx context.Context, name string) (reconcilers.Result, error) {
	return h.fr.Reconcile(ctx, reconcilers.Request{Name: name})
}

// append appends one event and returns its sequence.
func (h *harness) append(typ events.Type, subject string, p events.Payload) uint64 {
	h.t.Helper()
	ev, err := events.New(events.Source("rack1", "test"), typ, subject, p)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := h.log.Append(context.Background(), ev)
	if err != nil {
		h.t.Fatal(err)
	}
	return out[0].Sequence
}

// register registers nodes n1..nN in slots 1..N, with desired power on.
func (h *harness) register(n int) {
	h.t.Helper()
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		h.append(events.NodeRegistered, name, &events.NodeRegisteredData{Slot: i})
		h.append(events.NodePowerDesired, name, &events.PowerDesiredData{State: events.PowerOn})
	}
}

// desire sets the desired firmware version of name.
func (h *harness) desire(name, version string) uint64 {
	h.t.Helper()
	return h.append(events.FirmwareDesired, name, &events.FirmwareDesiredData{Version: version})
}

// image makes a signed BMC image of version v and security version sv,
// size n bytes, and returns it with its manifest (not yet published).
func (h *harness) image(v string, sv uint32, n int) ([]byte, fw.Manifest) {
	h.t.Helper()
	ver, err := fw.ParseVersion(v)
	if err != nil {
		h.t.Fatal(err)
	}
	img := make([]byte, n)
	for i := range img {
		img[i] = byte(i*13 + int(sv) + int(ver.Major))
	}
	m, err := fw.Sign(img, fw.ManifestFields{Component: fw.ComponentBMC, Version: ver, SecurityVersion: sv}, signer)
	if err != nil {
		h.t.Fatal(err)
	}
	return img, m
}

// publish writes an image and its manifest into the repository, as
// `rackctl firmware sign` leaves them.
func (h *harness) publish(v string, img []byte, m fw.Manifest) {
	h.t.Helper()
	ver, err := fw.ParseVersion(v)
	if err != nil {
		h.t.Fatal(err)
	}
	path := filepath.Join(h.dir, fw.ImageFileName(fw.ComponentBMC, ver))
	if err := os.WriteFile(path, img, 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := fw.WriteManifest(fw.ManifestPath(path), m); err != nil {
		h.t.Fatal(err)
	}
}

// release makes and publishes a good image.
func (h *harness) release(v string, sv uint32) []byte {
	h.t.Helper()
	img, m := h.image(v, sv, 600)
	h.publish(v, img, m)
	return img
}

func (h *harness) state() *state.State {
	h.t.Helper()
	st, err := h.log.State(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *harness) firmware(name string) *state.Firmware {
	h.t.Helper()
	return h.state().Firmware[name]
}

// events returns the events about subject with sequence >= from, of the
// given types (all if none).
func (h *harness) events(subject string, from uint64, types ...events.Type) []events.Event {
	h.t.Helper()
	evs, err := h.log.Read(context.Background(), from, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []events.Event
	for _, ev := range evs {
		if ev.Subject != subject {
			continue
		}
		if len(types) == 0 {
			out = append(out, ev)
			continue
		}
		for _, t := range types {
			if ev.Type == t {
				out = append(out, ev)
			}
		}
	}
	return out
}

// history describes the firmware events of subject from sequence from as
// short strings: "write started", "write failed", "observed 2.0.0 b sv2",
// "refused anti-rollback".
func (h *harness) history(subject string, from uint64) []string {
	h.t.Helper()
	var out []string
	for _, ev := range h.events(subject, from, events.FirmwareStep, events.FirmwareObserved, events.FirmwareRefused) {
		switch d := payload[events.Payload](h.t, ev).(type) {
		case *events.FirmwareStepData:
			out = append(out, d.Step+" "+d.Status)
		case *events.FirmwareObservedData:
			s := fmt.Sprintf("observed %s %s sv%d", d.Version, d.Slot, d.SecurityVersion)
			if d.Trial {
				s += " trial"
			}
			out = append(out, s)
		case *events.FirmwareRefusedData:
			out = append(out, "refused "+d.Code)
		}
	}
	return out
}

// steps returns the step payloads of subject from sequence from.
func (h *harness) steps(subject string, from uint64) []*events.FirmwareStepData {
	h.t.Helper()
	var out []*events.FirmwareStepData
	for _, ev := range h.events(subject, from, events.FirmwareStep) {
		out = append(out, payload[*events.FirmwareStepData](h.t, ev))
	}
	return out
}

// payload decodes an event's payload as P.
func payload[P events.Payload](t *testing.T, ev events.Event) P {
	t.Helper()
	p, err := ev.Payload()
	if err != nil {
		t.Fatal(err)
	}
	d, ok := p.(P)
	if !ok {
		t.Fatalf("event %d: payload %T", ev.Sequence, p)
	}
	return d
}

// device is what the BMC of slot reports, read through the driver.
type device struct {
	version fw.FirmwareVersion
	slots   fw.ImageSlots
	counter fw.AntiRollback
}

func (h *harness) device(slot int) device {
	h.t.Helper()
	b, err := h.bp.SlotBMC(slot)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var d device
	if d.version, err = b.FirmwareVersion(ctx); err != nil {
		h.t.Fatal(err)
	}
	if d.slots, err = b.ImageSlots(ctx); err != nil {
		h.t.Fatal(err)
	}
	if d.counter, err = b.AntiRollback(ctx); err != nil {
		h.t.Fatal(err)
	}
	return d
}

// The device's state at the start: slot A good at security version 1,
// version 1.0.0.
var initial = device{
	version: fw.FirmwareVersion{Major: 1},
	slots:   fw.ImageSlots{A: fw.Image{State: fw.ImageGood, SecurityVersion: 1}},
	counter: 1,
}

// wantDevice fails unless the BMC of slot reports want.
func (h *harness) wantDevice(slot int, want device) {
	h.t.Helper()
	if got := h.device(slot); got != want {
		h.t.Fatalf("BMC %d: %+v, want %+v", slot, got, want)
	}
}

// done waits until the firmware runs version v, confirmed, in the log.
func (h *harness) done(name, v string) {
	h.t.Helper()
	testutil.WaitFor(h.t, testTimeout, func() error {
		f := h.firmware(name)
		if f == nil || f.Observed == nil || f.Observed.Version != v || f.Observed.Trial {
			return fmt.Errorf("firmware %s: %+v, want %s confirmed", name, f, v)
		}
		return nil
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// recorder decorates the SMBus backplane: before an image write or a
// reboot reaches a BMC it checks that the log has committed the matching
// firmware.step started for that BMC's firmware (intent before action),
// and it lets a test intervene before a write (pull power, cancel).
type recorder struct {
	*smbus.Backplane
	log eventlog.Log

	mu         sync.Mutex
	violations []string
	writes     map[int]int // image writes (begin, data, verify, commands, reboots) per slot
	// hook, if set, runs before each device write with its step; an
	// error fails the write. after runs after each successful one.
	hook  func(slot int, step string) error
	after func(slot int, step string)
}

var _ drivers.Backplane = (*recorder)(nil)

func newRecorder(bp *smbus.Backplane, log eventlog.Log) *recorder {
	return &recorder{Backplane: bp, log: log, writes: map[int]int{}}
}

func (r *recorder) BMC(slot int) (drivers.BMC, error) {
	b, err := r.SlotBMC(slot)
	if err != nil {
		return nil, err
	}
	return &recBMC{BMC: b, r: r}, nil
}

func (r *recorder) setHook(f func(slot int, step string) error) {
	r.mu.Lock()
	r.hook = f
	r.mu.Unlock()
}

func (r *recorder) setAfter(f func(slot int, step string)) {
	r.mu.Lock()
	r.after = f
	r.mu.Unlock()
}

// done runs the after hook.
func (r *recorder) done(slot int, step string, err error) error {
	r.mu.Lock()
	after := r.after
	r.mu.Unlock()
	if after != nil && err == nil {
		after(slot, step)
	}
	return err
}

func (r *recorder) imageWrites(slot int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes[slot]
}

// authorise checks the intent of step on slot's BMC, then runs the hook.
func (r *recorder) authorise(ctx context.Context, slot int, step string) error {
	st, err := r.log.State(ctx)
	r.mu.Lock()
	r.writes[slot]++
	hook := r.hook
	if err != nil {
		r.violations = append(r.violations, fmt.Sprintf("slot %d %s: reading the state: %v", slot, step, err))
	} else {
		var f *state.Firmware
		for _, n := range st.Nodes {
			if n.Slot == slot {
				f = st.Firmware[state.FirmwareName(n.Name)]
			}
		}
		if f == nil || f.LastStep == nil || f.LastStep.Step != step || f.LastStep.Status != events.StepStarted {
			var last *state.FirmwareStep
			if f != nil {
				last = f.LastStep
			}
			r.violations = append(r.violations, fmt.Sprintf("slot %d %s: no firmware.step started committed first (last step %+v)", slot, step, last))
		}
	}
	r.mu.Unlock()
	if hook != nil {
		return hook(slot, step)
	}
	return nil
}

func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Errorf("device write without committed intent: %s", v)
	}
}

// recBMC is an SMBus BMC whose writes the recorder checks.
type recBMC struct {
	*smbus.BMC
	r *recorder
}

var (
	_ Device      = (*recBMC)(nil)
	_ fw.Unit     = (*recBMC)(nil)
	_ drivers.BMC = (*recBMC)(nil)
)

func (b *recBMC) BeginImage(ctx context.Context, ib fw.ImageBegin) error {
	if err := b.r.authorise(ctx, b.Slot(), fw.StepBegin); err != nil {
		return err
	}
	return b.r.done(b.Slot(), fw.StepBegin, b.BMC.BeginImage(ctx, ib))
}

func (b *recBMC) WriteImage(ctx context.Context, off uint32, chunk []byte) error {
	if err := b.r.authorise(ctx, b.Slot(), fw.StepWrite); err != nil {
		return err
	}
	return b.r.done(b.Slot(), fw.StepWrite, b.BMC.WriteImage(ctx, off, chunk))
}

func (b *recBMC) VerifyImage(ctx context.Context, d fw.ImageDigest) error {
	if err := b.r.authorise(ctx, b.Slot(), fw.StepDeviceVerify); err != nil {
		return err
	}
	return b.r.done(b.Slot(), fw.StepDeviceVerify, b.BMC.VerifyImage(ctx, d))
}

func (b *recBMC) ImageCommand(ctx context.Context, c fw.ImageCommand) error {
	step := map[fw.ImageCommand]string{fw.ImageSwitch: fw.StepSwitch, fw.ImageConfirm: fw.StepConfirm, fw.ImageRollback: fw.StepRollback}[c]
	if err := b.r.authorise(ctx, b.Slot(), step); err != nil {
		return err
	}
	return b.r.done(b.Slot(), step, b.BMC.ImageCommand(ctx, c))
}

func (b *recBMC) PowerCycle(ctx context.Context) error {
	if err := b.r.authorise(ctx, b.Slot(), fw.StepReboot); err != nil {
		return err
	}
	return b.r.done(b.Slot(), fw.StepReboot, b.BMC.PowerCycle(ctx))
}

func (b *recBMC) SetPower(ctx context.Context, s drivers.PowerState) error {
	b.r.mu.Lock()
	b.r.violations = append(b.r.violations, fmt.Sprintf("slot %d: the firmware reconciler set power %s", b.Slot(), s))
	b.r.mu.Unlock()
	return b.BMC.SetPower(ctx, s)
}

// fencedOut is a log whose fenced appends fail: a member that lost
// leadership.
type fencedOut struct{ *eventlog.Mem }

func (fencedOut) AppendFenced(context.Context, ...events.Event) ([]events.Event, error) {
	return nil, eventlog.ErrNotLeader
}

// joined joins strings for messages.
func joined(s []string) string { return strings.Join(s, ", ") }
