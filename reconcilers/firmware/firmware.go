package firmware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	fw "github.com/racklet/rack/firmware"
	"github.com/racklet/rack/reconcilers"
)

// Name is the reconciler's name, in logs, metrics and events.
const Name = "firmware"

// Actor is the actor of the events the reconciler appends.
const Actor = "reconciler:" + Name

// Defaults of Config.
const (
	DefaultObserveInterval = 30 * time.Second
	DefaultCallTimeout     = 2 * time.Second
	DefaultUpdateTimeout   = 10 * time.Minute
	DefaultHealthTimeout   = 2 * time.Minute
	DefaultPollInterval    = time.Second
)

// ErrInvalid: the configuration is malformed.
var ErrInvalid = errors.New("firmware: invalid reconciler config")

// Device is what the reconciler needs of a BMC beyond drivers.BMC: the A/B
// image update and the version of the image it runs. (firmware.Unit, the
// reboot and boot stage of its unit, comes with drivers.BMC and
// drivers.BootStager.) drivers/smbus's BMC implements it.
type Device interface {
	fw.ImageDevice
	FirmwareVersion(ctx context.Context) (fw.FirmwareVersion, error)
}

// Config configures the firmware reconciler. Zero durations take the
// defaults above; Log, Backplane, Images, Trusted, Rack and Member are
// required.
type Config struct {
	// Log is the rack's event log: the state is read from it and every
	// observation, step and refusal is appended to it.
	Log eventlog.Log
	// Backplane reaches the BMC of each node's slot; its BMCs must
	// implement Device and firmware.Unit.
	Backplane drivers.Backplane
	// Images is where signed images come from (e.g. firmware.Dir).
	Images fw.Repository
	// Trusted are the keys trusted to sign firmware.
	Trusted fw.Keyring
	// Rack and Member name the event source, events.Source(Rack, Member).
	Rack, Member string

	// ObserveInterval: every BMC's firmware is read at least this often,
	// and a deferred update (unit off or booting, quorum) tried again.
	ObserveInterval time.Duration
	// CallTimeout bounds each read of a BMC.
	CallTimeout time.Duration
	// UpdateTimeout bounds one whole update.
	UpdateTimeout time.Duration
	// HealthTimeout bounds the health check: the unit must reach ready on
	// the new image within it.
	HealthTimeout time.Duration
	// PollInterval is the pause between the health check's reads.
	PollInterval time.Duration

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the reconciler's metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Log == nil:
		return c, fmt.Errorf("%w: no event log", ErrInvalid)
	case c.Backplane == nil:
		return c, fmt.Errorf("%w: no backplane", ErrInvalid)
	case c.Images == nil:
		return c, fmt.Errorf("%w: no image repository", ErrInvalid)
	case len(c.Trusted) == 0:
		return c, fmt.Errorf("%w: no trusted keys", ErrInvalid)
	case !events.ValidName(c.Rack):
		return c, fmt.Errorf("%w: rack name %q: use 1 to 63 of a-z, 0-9 and -", ErrInvalid, c.Rack)
	case !events.ValidName(c.Member):
		return c, fmt.Errorf("%w: member name %q: use 1 to 63 of a-z, 0-9 and -", ErrInvalid, c.Member)
	case c.ObserveInterval < 0 || c.CallTimeout < 0 || c.UpdateTimeout < 0 || c.HealthTimeout < 0 || c.PollInterval < 0:
		return c, fmt.Errorf("%w: negative duration", ErrInvalid)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ObserveInterval, DefaultObserveInterval)
	def(&c.CallTimeout, DefaultCallTimeout)
	def(&c.UpdateTimeout, DefaultUpdateTimeout)
	def(&c.HealthTimeout, DefaultHealthTimeout)
	def(&c.PollInterval, DefaultPollInterval)
	if c.HealthTimeout >= c.UpdateTimeout {
		return c, fmt.Errorf("%w: health timeout %v leaves no room in the update timeout %v", ErrInvalid, c.HealthTimeout, c.UpdateTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Reconciler is the firmware update reconciler. Safe for concurrent use.
type Reconciler struct {
	cfg     Config
	source  string
	logger  *slog.Logger
	metrics *metrics

	mu       sync.Mutex
	busy     map[string]bool    // firmware names being reconciled
	attempts map[string]attempt // updates tried per firmware name
}

// attempt counts the updates tried for one desired sequence.
type attempt struct {
	target uint64
	n      int
}

var (
	_ reconcilers.Reconciler = (*Reconciler)(nil)
	_ reconcilers.Lister     = (*Reconciler)(nil)
)

// New returns a firmware reconciler; register it on a reconcilers.Runtime.
func New(cfg Config) (*Reconciler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Reconciler{
		cfg: cfg, source: events.Source(cfg.Rack, cfg.Member), logger: cfg.Logger.With("reconciler", Name),
		metrics: m, busy: map[string]bool{}, attempts: map[string]attempt{},
	}, nil
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Inputs implements reconcilers.Reconciler: a desired version, and nodes
// coming and going (a new node's BMC is observed at once).
func (r *Reconciler) Inputs() []events.Type {
	return []events.Type{events.FirmwareDesired, events.NodeRegistered, events.NodeRemoved}
}

// Outputs implements reconcilers.Reconciler.
func (r *Reconciler) Outputs() []events.Type {
	return []events.Type{events.FirmwareObserved, events.FirmwareStep, events.FirmwareRefused}
}

// List implements reconcilers.Lister: the BMC of every registered node.
func (r *Reconciler) List(ctx context.Context) ([]string, error) {
	st, err := r.cfg.Log.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the state: %w", err)
	}
	var names []string
	for _, n := range st.NodeList() {
		if name := state.FirmwareName(n.Name); events.ValidName(name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// Reconcile implements reconcilers.Reconciler. req.Name is a firmware
// component ("n3-bmc"), or a node ("n3") standing for its BMC.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcilers.Request) (reconcilers.Result, error) {
	st, err := r.cfg.Log.State(ctx)
	if err != nil {
		return reconcilers.Result{}, fmt.Errorf("reading the state: %w", err)
	}
	var names []string
	if _, ok := st.Nodes[req.Name]; ok {
		if name := state.FirmwareName(req.Name); events.ValidName(name) {
			names = append(names, name)
		}
	}
	if _, _, ok := state.ParseFirmwareName(req.Name); ok {
		names = append(names, req.Name)
	} else if len(names) == 0 {
		r.forget(state.FirmwareName(req.Name)) // a node that is gone
		return reconcilers.Result{}, nil
	}
	var res reconcilers.Result
	var errs []error
	for _, name := range names {
		rr, err := r.reconcileOne(ctx, st, name)
		if err != nil {
			errs = append(errs, err)
		}
		if rr.RequeueAfter > 0 && (res.RequeueAfter == 0 || rr.RequeueAfter < res.RequeueAfter) {
			res = rr
		}
	}
	if len(errs) == 1 {
		return res, errs[0] // keeps a Terminal error terminal
	}
	return res, errors.Join(errs...)
}

// observation is what a BMC reports about its firmware.
type observation struct {
	version fw.FirmwareVersion
	slots   fw.ImageSlots
	counter fw.AntiRollback
}

func (o observation) active() fw.Image {
	if o.slots.Active == fw.SlotB {
		return o.slots.B
	}
	return o.slots.A
}

// trial: the device runs an image on trial.
func (o observation) trial() bool { return o.active().State == fw.ImageTrial }

// switched: an image is switched to and waits for the next boot.
func (o observation) switched() bool { return o.slots.Next != o.slots.Active }

func (o observation) data() *events.FirmwareObservedData {
	slot := events.FirmwareSlotA
	if o.slots.Active == fw.SlotB {
		slot = events.FirmwareSlotB
	}
	return &events.FirmwareObservedData{Version: o.version.String(), Slot: slot, Trial: o.trial(), SecurityVersion: uint32(o.counter)}
}

// reconcileOne reconciles the firmware component name of a node.
func (r *Reconciler) reconcileOne(ctx context.Context, st *state.State, name string) (reconcilers.Result, error) {
	if !r.acquire(name) {
		// Reconciled under its other spelling right now; look again soon.
		return reconcilers.Result{RequeueAfter: r.cfg.PollInterval}, nil
	}
	defer r.release(name)

	nodeName, _, _ := state.ParseFirmwareName(name)
	node := st.Nodes[nodeName]
	if node == nil {
		r.forget(name)
		return reconcilers.Result{}, nil
	}
	f := st.Firmware[name]
	if f == nil {
		f = &state.Firmware{Name: name, Node: nodeName, Component: state.ComponentBMC}
	}
	bmc, err := r.cfg.Backplane.BMC(node.Slot)
	if err != nil {
		// Slot 0 (unknown) or out of range: registering it again fixes it.
		return reconcilers.Result{}, reconcilers.Terminal(fmt.Errorf("firmware %s: slot %d: %w", name, node.Slot, err))
	}
	dev, ok := bmc.(Device)
	if _, unit := bmc.(fw.Unit); !ok || !unit {
		err := fmt.Errorf("the BMC in slot %d (%T) cannot take firmware updates", node.Slot, bmc)
		if f.Desired != "" && !f.Refused() {
			return reconcilers.Result{}, r.refuse(ctx, f, events.RefusedUnsupported, err)
		}
		return reconcilers.Result{}, reconcilers.Terminal(err)
	}

	// Observe.
	obs, err := r.observe(ctx, dev)
	if err != nil {
		return reconcilers.Result{}, fmt.Errorf("reading the firmware of %s (slot %d): %w", name, node.Slot, err)
	}
	if err := r.observed(ctx, f, obs); err != nil {
		return reconcilers.Result{}, err
	}
	next := reconcilers.Result{RequeueAfter: r.cfg.ObserveInterval}

	// Diff.
	wanted := f.Desired != "" && !f.Refused()
	if obs.trial() || obs.switched() {
		if wanted && obs.trial() && obs.version.String() == f.Desired {
			return r.resume(ctx, node, f, dev, obs)
		}
		// Not ours to finish: back to the confirmed image, then afresh.
		return r.cancel(ctx, f, dev, obs)
	}
	if !wanted {
		return next, nil
	}
	if obs.version.String() == f.Desired {
		r.forget(name)
		return next, nil
	}
	return r.update(ctx, node, f, bmc, dev, obs)
}

// observe reads the device's version, slots and counter, each within
// CallTimeout.
func (r *Reconciler) observe(ctx context.Context, dev Device) (observation, error) {
	var o observation
	var err error
	call := func(fn func(ctx context.Context) error) {
		if err != nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		defer cancel()
		err = fn(cctx)
	}
	call(func(ctx context.Context) (e error) { o.version, e = dev.FirmwareVersion(ctx); return })
	call(func(ctx context.Context) (e error) { o.slots, e = dev.ImageSlots(ctx); return })
	call(func(ctx context.Context) (e error) { o.counter, e = dev.AntiRollback(ctx); return })
	return o, err
}

// observed records an observation if it differs from the state's, and
// updates f (the reconciler's copy) to match.
func (r *Reconciler) observed(ctx context.Context, f *state.Firmware, obs observation) error {
	d := obs.data()
	if o := f.Observed; o != nil && o.Version == d.Version && o.Slot == d.Slot && o.Trial == d.Trial && o.SecurityVersion == d.SecurityVersion {
		return nil
	}
	ev, err := r.event(events.FirmwareObserved, f.Name, d)
	if err != nil {
		return err
	}
	out, err := r.cfg.Log.Append(ctx, ev)
	if err != nil {
		return fmt.Errorf("recording firmware %s observed: %w", f.Name, err)
	}
	r.logger.Info("firmware observed", "firmware", f.Name, "version", d.Version, "slot", d.Slot, "trial", d.Trial, "security_version", d.SecurityVersion)
	f.Observed = &state.FirmwareObserved{Version: d.Version, Slot: d.Slot, Trial: d.Trial, SecurityVersion: d.SecurityVersion, Sequence: out[0].Sequence, At: out[0].Time}
	return nil
}

// refuse records once per desired sequence that the desired version was
// refused, with code and why. Except for quorum (retried later), it
// returns a Terminal error, so the request is not retried.
func (r *Reconciler) refuse(ctx context.Context, f *state.Firmware, code string, why error) error {
	terminal := func() error {
		if code == events.RefusedQuorum {
			return nil
		}
		return reconcilers.Terminal(fmt.Errorf("firmware %s %s refused (%s): %w", f.Name, f.Desired, code, why))
	}
	if rf := f.Refusal; rf != nil && rf.Target == f.DesiredSequence && rf.Code == code {
		return terminal() // recorded already
	}
	reason := events.FitText(strings.TrimPrefix(why.Error(), "state: "))
	ev, err := r.event(events.FirmwareRefused, f.Name, &events.FirmwareRefusedData{Version: f.Desired, Code: code, Reason: reason, Target: f.DesiredSequence})
	if err != nil {
		return err
	}
	if _, err := r.cfg.Log.Append(ctx, ev); err != nil {
		return fmt.Errorf("recording the refusal of firmware %s %s: %w", f.Name, f.Desired, err)
	}
	if code != events.RefusedQuorum {
		r.metrics.updates.WithLabelValues(resultRefused).Inc()
		r.logger.Warn("refused firmware update", "firmware", f.Name, "version", f.Desired, "code", code, "reason", reason)
	} else {
		r.logger.Info("firmware update waits for the quorum", "firmware", f.Name, "version", f.Desired, "reason", reason)
	}
	return terminal()
}

// update checks the unit, the image and the quorum guard, then installs
// the desired version.
func (r *Reconciler) update(ctx context.Context, node *state.Node, f *state.Firmware, bmc drivers.BMC, dev Device, obs observation) (reconcilers.Result, error) {
	next := reconcilers.Result{RequeueAfter: r.cfg.ObserveInterval}
	version, err := fw.ParseVersion(f.Desired)
	if err != nil {
		return reconcilers.Result{}, r.refuse(ctx, f, events.RefusedManifest, err)
	}

	// The image, before anything reaches the device.
	image, m, err := r.cfg.Images.Image(ctx, fw.ComponentBMC, version)
	switch {
	case errors.Is(err, fw.ErrNoImage):
		return reconcilers.Result{}, r.refuse(ctx, f, events.RefusedNoImage, err)
	case errors.Is(err, fw.ErrManifest):
		return reconcilers.Result{}, r.refuse(ctx, f, events.RefusedManifest, err)
	case errors.Is(err, fw.ErrImageSize):
		return reconcilers.Result{}, r.refuse(ctx, f, events.RefusedUnsupported, err)
	case err != nil:
		return reconcilers.Result{}, fmt.Errorf("reading the image of firmware %s %s: %w", f.Name, f.Desired, err)
	}
	if err := fw.Verify(image, m, r.cfg.Trusted, fw.ComponentBMC); err != nil {
		return reconcilers.Result{}, r.refuse(ctx, f, refusalCode(err), err)
	}
	if m.SecurityVersion < uint32(obs.counter) {
		return reconcilers.Result{}, r.refuse(ctx, f, events.RefusedAntiRollback,
			fmt.Errorf("%w: image %s has security version %d, the device's counter is %d", fw.ErrAntiRollback, f.Desired, m.SecurityVersion, obs.counter))
	}

	// The unit: on, wanted on, and up (the update reboots it).
	if node.Desired == events.PowerOff {
		r.logger.Debug("firmware update waits: the node is desired off", "firmware", f.Name)
		return next, nil
	}
	if ready, why, err := r.unitReady(ctx, bmc); err != nil {
		return reconcilers.Result{}, fmt.Errorf("reading the unit of firmware %s: %w", f.Name, err)
	} else if !ready {
		r.logger.Debug("firmware update waits for the unit", "firmware", f.Name, "unit", why)
		return next, nil
	}

	// The quorum guard, on a fresh state: the update reboots the unit.
	fresh, err := r.cfg.Log.State(ctx)
	if err != nil {
		return reconcilers.Result{}, fmt.Errorf("reading the state: %w", err)
	}
	if err := fresh.QuorumGuard(node.Name); err != nil {
		if !errors.Is(err, state.ErrQuorumGuard) {
			return reconcilers.Result{}, err
		}
		why := strings.Replace(err.Error(), "powering it off", "rebooting it for a firmware update", 1)
		return next, r.refuse(ctx, f, events.RefusedQuorum, errors.New(strings.Replace(why, " (use force to override)", "", 1)))
	}

	u := r.newUpdate(ctx, f)
	r.logger.Info("firmware update", "firmware", f.Name, "from", obs.version, "to", f.Desired, "action", u.id, "attempt", u.attempt)
	uctx, cancel := context.WithTimeout(ctx, r.cfg.UpdateTimeout)
	err = fw.UpdateWith(uctx, dev, image, m, r.cfg.Trusted, r.options(u), u.report)
	cancel()
	return r.outcome(ctx, f, dev, u, err)
}

// resume finishes an update interrupted after its reboot: the device runs
// the desired version on trial.
func (r *Reconciler) resume(ctx context.Context, node *state.Node, f *state.Firmware, dev Device, obs observation) (reconcilers.Result, error) {
	version, err := fw.ParseVersion(f.Desired)
	if err != nil {
		return reconcilers.Result{}, r.refuse(ctx, f, events.RefusedManifest, err)
	}
	m := fw.Manifest{ManifestFields: fw.ManifestFields{Component: fw.ComponentBMC, Version: version, SecurityVersion: obs.active().SecurityVersion}}
	u := r.newUpdate(ctx, f)
	r.logger.Info("resuming firmware update on trial", "firmware", f.Name, "node", node.Name, "version", f.Desired, "action", u.id)
	uctx, cancel := context.WithTimeout(ctx, r.cfg.UpdateTimeout)
	err = fw.ResumeWith(uctx, dev, m, r.options(u), u.report)
	cancel()
	return r.outcome(ctx, f, dev, u, err)
}

// cancel rolls back a trial or a switched image that is not the desired
// version (or nothing is desired), then asks to be run again.
func (r *Reconciler) cancel(ctx context.Context, f *state.Firmware, dev Device, obs observation) (reconcilers.Result, error) {
	version := f.Desired
	if version == "" {
		version = obs.version.String()
	}
	u := r.newUpdate(ctx, f)
	u.version = version
	r.logger.Info("rolling back an image on trial that is not desired", "firmware", f.Name, "running", obs.version, "desired", f.Desired, "action", u.id)
	if err := u.before(ctx, fw.StepRollback); err != nil {
		return reconcilers.Result{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	err := dev.ImageCommand(cctx, fw.ImageRollback)
	cancel()
	u.report(fw.StepRollback, err)
	if err != nil {
		return reconcilers.Result{}, fmt.Errorf("rolling back firmware %s: %w", f.Name, err)
	}
	if o, err := r.observe(ctx, dev); err == nil {
		if err := r.observed(ctx, f, o); err != nil {
			return reconcilers.Result{}, err
		}
	}
	return reconcilers.Result{RequeueAfter: r.cfg.PollInterval}, nil
}

// outcome records how an update (or a resumed one) ended.
func (r *Reconciler) outcome(ctx context.Context, f *state.Firmware, dev Device, u *update, err error) (reconcilers.Result, error) {
	// Observe the result now, so readers see it at once; record it even
	// if ctx ended (the device changed either way).
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.CallTimeout+time.Second)
	defer rcancel()
	if o, oerr := r.observe(rctx, dev); oerr == nil {
		if oerr := r.observed(rctx, f, o); oerr != nil {
			r.logger.Error("recording the firmware after an update", "firmware", f.Name, "error", oerr)
		}
	}
	switch {
	case err == nil:
		r.metrics.updates.WithLabelValues(resultSucceeded).Inc()
		r.forget(f.Name)
		r.logger.Info("firmware updated", "firmware", f.Name, "version", u.version, "action", u.id)
		return reconcilers.Result{RequeueAfter: r.cfg.ObserveInterval}, nil
	case errors.Is(err, errIntent):
		return reconcilers.Result{}, err // not the leader any more, or the log failed: nothing was done
	case ctx.Err() != nil:
		r.metrics.updates.WithLabelValues(resultFailed).Inc()
		return reconcilers.Result{}, err // leadership lost or shutting down: the next leader resumes
	case errors.Is(err, fw.ErrHealthCheck):
		return reconcilers.Result{}, r.refuse(rctx, f, events.RefusedHealthCheck, err)
	case errors.Is(err, drivers.ErrRefused) && errors.Is(err, fw.ErrAntiRollback):
		return reconcilers.Result{}, r.refuse(rctx, f, events.RefusedAntiRollback, err)
	case errors.Is(err, drivers.ErrRefused) && errors.Is(err, fw.ErrImageSize):
		return reconcilers.Result{}, r.refuse(rctx, f, events.RefusedUnsupported, err)
	}
	r.metrics.updates.WithLabelValues(resultFailed).Inc()
	r.logger.Warn("firmware update failed; retrying", "firmware", f.Name, "version", u.version, "action", u.id, "error", err)
	return reconcilers.Result{}, fmt.Errorf("updating firmware %s to %s: %w", f.Name, u.version, err)
}

// refusalCode is the refusal code of a firmware.Verify error.
func refusalCode(err error) string {
	if errors.Is(err, fw.ErrManifest) {
		return events.RefusedManifest
	}
	return events.RefusedSignature // bad signature, unknown key, wrong component, digest mismatch
}

// unitReady reports whether the BMC's unit is on and ready, and if not,
// what it is.
func (r *Reconciler) unitReady(ctx context.Context, bmc drivers.BMC) (bool, string, error) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	p, err := bmc.PowerState(cctx)
	if err != nil {
		return false, "", err
	}
	if p != drivers.PowerOn {
		return false, "power " + string(p), nil
	}
	stage, err := bmc.(fw.Unit).BootStage(cctx)
	if err != nil {
		return false, "", err
	}
	return stage == drivers.StageReady, "boot stage " + string(stage), nil
}

// errIntent marks a failure to commit a step's intent: nothing of the step
// reached the device.
var errIntent = errors.New("firmware: step intent not committed")

// update is one update (or resumed update, or rollback) of a component:
// the id its step events share.
type update struct {
	ctx     context.Context // the update's: ended means the updater was interrupted
	r       *Reconciler
	name    string
	id      string
	version string
	attempt int
	target  uint64
}

func (r *Reconciler) newUpdate(ctx context.Context, f *state.Firmware) *update {
	return &update{ctx: ctx, r: r, name: f.Name, id: events.NewID(), version: f.Desired, attempt: r.nextAttempt(f.Name, f.DesiredSequence), target: f.DesiredSequence}
}

// options are the UpdateOptions of an update.
func (r *Reconciler) options(u *update) fw.UpdateOptions {
	return fw.UpdateOptions{Component: fw.ComponentBMC, HealthTimeout: r.cfg.HealthTimeout, PollInterval: r.cfg.PollInterval, Before: u.before}
}

// before commits the intent of a step: a fenced firmware.step started.
func (u *update) before(ctx context.Context, step string) error {
	ev, err := u.r.event(events.FirmwareStep, u.name, &events.FirmwareStepData{
		Action: u.id, Step: step, Status: events.StepStarted, Version: u.version, Attempt: u.attempt, Target: u.target,
	})
	if err == nil {
		err = u.r.appendIntent(ctx, ev)
	}
	if err != nil {
		return fmt.Errorf("%w: %s of firmware %s: %w", errIntent, step, u.name, err)
	}
	return nil
}

// report records a step's outcome, even if the update's context ended
// (the step may have taken effect).
func (u *update) report(step string, err error) {
	d := &events.FirmwareStepData{Action: u.id, Step: step, Status: events.StepSucceeded, Version: u.version, Attempt: u.attempt, Target: u.target}
	result := resultSucceeded
	if err != nil {
		d.Status, d.Reason, d.Retry = events.StepFailed, events.FitText(err.Error()), u.ctx.Err() != nil || retryable(step, err)
		result = resultFailed
	}
	u.r.metrics.steps.WithLabelValues(step, result).Inc()
	ev, eerr := u.r.event(events.FirmwareStep, u.name, d)
	if eerr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), u.r.cfg.CallTimeout+time.Second)
		_, eerr = u.r.cfg.Log.Append(ctx, ev)
		cancel()
	}
	if eerr != nil {
		u.r.logger.Error("recording a firmware step", "firmware", u.name, "action", u.id, "step", step, "error", eerr)
	}
}

// retryable says whether the reconciler tries again after step failed
// with err: not after a refusal, a failed health check or a bad image.
func retryable(step string, err error) bool {
	switch {
	case step == fw.StepHealthCheck, step == fw.StepVerifyManifest:
		return false
	case errors.Is(err, drivers.ErrRefused), errors.Is(err, fw.ErrAntiRollback):
		return false
	}
	return true
}

// appendIntent commits an intent event: fenced if the log can, so that a
// deposed leader cannot commit it (and so cannot act).
func (r *Reconciler) appendIntent(ctx context.Context, ev events.Event) error {
	var err error
	if f, ok := r.cfg.Log.(eventlog.Fenced); ok {
		_, err = f.AppendFenced(ctx, ev)
	} else {
		_, err = r.cfg.Log.Append(ctx, ev)
	}
	if errors.Is(err, eventlog.ErrNotLeader) {
		r.logger.Warn("not the leader any more; not acting", "firmware", ev.Subject)
	}
	return err
}

// acquire marks name busy; false if it is already.
func (r *Reconciler) acquire(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy[name] {
		return false
	}
	r.busy[name] = true
	return true
}

func (r *Reconciler) release(name string) {
	r.mu.Lock()
	delete(r.busy, name)
	r.mu.Unlock()
}

// nextAttempt numbers the updates of name for the desired sequence target,
// from 1.
func (r *Reconciler) nextAttempt(name string, target uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.attempts[name]
	if a.target != target {
		a = attempt{target: target}
	}
	a.n++
	r.attempts[name] = a
	return a.n
}

// forget drops what the reconciler remembers about a component.
func (r *Reconciler) forget(name string) {
	r.mu.Lock()
	delete(r.attempts, name)
	r.mu.Unlock()
}

// event builds an event of the reconciler.
func (r *Reconciler) event(t events.Type, subject string, p events.Payload) (events.Event, error) {
	ev, err := events.New(r.source, t, subject, p)
	if err != nil {
		return events.Event{}, fmt.Errorf("building %s for %s: %w", t, subject, err)
	}
	ev.Actor = Actor
	return ev, nil
}
