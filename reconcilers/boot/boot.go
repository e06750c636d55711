package boot

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/reconcilers"
)

// Name is the reconciler's name, in logs, metrics and action events.
const Name = "boot"

// Actor is the actor of the events the reconciler appends.
const Actor = "reconciler:" + Name

// OpSetSource is the operation of the reconciler's action: setting the
// BMC's next boot source.
const OpSetSource = "boot.source.set"

// Defaults of Config.
const (
	DefaultPollInterval = time.Second
	DefaultCallTimeout  = 2 * time.Second
	DefaultFetchTimeout = 10 * time.Minute
)

// Timeouts bound each stage of a boot. A node that stays in a stage
// longer is marked boot-failed (node.boot.failed with the stage).
type Timeouts struct {
	// Cycle: from node.boot.started until the node is seen in its first
	// stage. It covers the power cycle, which waits for the quorum guard
	// and the power budget (default 2m).
	Cycle time.Duration
	// Firmware, Bootstrap, ImageVerified, OS: the longest a node may stay
	// in that stage (defaults 1m, 5m, 1m, 5m). Bootstrap includes fetching
	// the image over the network.
	Firmware      time.Duration
	Bootstrap     time.Duration
	ImageVerified time.Duration
	OS            time.Duration
}

// DefaultTimeouts are generous for a Raspberry Pi class node booting a few
// hundred MB over 1 Gb/s (it takes some 3 s, 8 s and 12 s).
func DefaultTimeouts() Timeouts {
	return Timeouts{Cycle: 2 * time.Minute, Firmware: time.Minute, Bootstrap: 5 * time.Minute, ImageVerified: time.Minute, OS: 5 * time.Minute}
}

// For is the timeout of stage s ("" or off: Cycle).
func (t Timeouts) For(s events.BootStage) time.Duration {
	switch s {
	case events.BootStageFirmware:
		return t.Firmware
	case events.BootStageBootstrap:
		return t.Bootstrap
	case events.BootStageImageVerified:
		return t.ImageVerified
	case events.BootStageOS:
		return t.OS
	}
	return t.Cycle
}

func (t Timeouts) withDefaults() (Timeouts, error) {
	d := DefaultTimeouts()
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&t.Cycle, d.Cycle}, {&t.Firmware, d.Firmware}, {&t.Bootstrap, d.Bootstrap}, {&t.ImageVerified, d.ImageVerified}, {&t.OS, d.OS}} {
		if *f.v < 0 {
			return t, fmt.Errorf("%w: negative stage timeout", ErrInvalid)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return t, nil
}

// ErrInvalid: the configuration is malformed.
var ErrInvalid = errors.New("boot: invalid config")

// Config configures the boot reconciler. Log, Backplane, Rack and Member
// are required; without Keyring every image is refused.
type Config struct {
	// Log is the rack's event log.
	Log eventlog.Log
	// Backplane reaches the BMC of each node's slot.
	Backplane drivers.Backplane
	// Rack and Member name the event source.
	Rack, Member string

	// Keyring holds the keys trusted to sign OS images.
	Keyring firmware.Keyring
	// RootCAs are the certificate authorities trusted for the image
	// servers (nil: the system's). HTTPClient, if set, is used instead of
	// one built from RootCAs; it should refuse plain http redirects.
	RootCAs    *x509.CertPool
	HTTPClient *http.Client

	// Timeouts of the boot stages (zero fields take the defaults).
	Timeouts Timeouts
	// PollInterval: how often a booting node's BMC is read for its stage.
	PollInterval time.Duration
	// CallTimeout bounds each BMC call.
	CallTimeout time.Duration
	// FetchTimeout bounds fetching one manifest or image.
	FetchTimeout time.Duration

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
	case !events.ValidName(c.Rack):
		return c, fmt.Errorf("%w: rack name %q: use 1 to 63 of a-z, 0-9 and -", ErrInvalid, c.Rack)
	case !events.ValidName(c.Member):
		return c, fmt.Errorf("%w: member name %q: use 1 to 63 of a-z, 0-9 and -", ErrInvalid, c.Member)
	case c.PollInterval < 0 || c.CallTimeout < 0 || c.FetchTimeout < 0:
		return c, fmt.Errorf("%w: negative duration", ErrInvalid)
	}
	var err error
	if c.Timeouts, err = c.Timeouts.withDefaults(); err != nil {
		return c, err
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = newHTTPClient(c.RootCAs, c.FetchTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Reconciler is the boot reconciler. Safe for concurrent use.
type Reconciler struct {
	cfg     Config
	source  string
	logger  *slog.Logger
	metrics *metrics
	verify  *verifier

	mu       sync.Mutex
	verified map[string]uint64 // node → the spec (desired sequence) whose image verified
	attempts map[string]attempt
}

type attempt struct {
	target uint64
	n      int
}

var (
	_ reconcilers.Reconciler = (*Reconciler)(nil)
	_ reconcilers.Lister     = (*Reconciler)(nil)
)

// New returns a boot reconciler; register it on a reconcilers.Runtime
// beside the power reconciler (which does the power cycles it asks for).
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
		cfg:      cfg,
		source:   events.Source(cfg.Rack, cfg.Member),
		logger:   cfg.Logger.With("reconciler", Name),
		metrics:  m,
		verify:   &verifier{hc: cfg.HTTPClient, keyring: cfg.Keyring},
		verified: map[string]uint64{},
		attempts: map[string]attempt{},
	}, nil
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Inputs implements reconcilers.Reconciler: a new spec, a node gone, and
// the power events that tell how the cycle asked for went (a refusal by
// the quorum guard, the node observed off or on). Stages are polled.
func (r *Reconciler) Inputs() []events.Type {
	return []events.Type{events.NodeBootDesired, events.NodeRemoved, events.NodePowerRefused, events.NodePowerObserved}
}

// Outputs implements reconcilers.Reconciler. The node.power.desired cycle
// the reconciler asks for is a command, like an operator's, and is not
// owned by it (see the package doc).
func (r *Reconciler) Outputs() []events.Type {
	return []events.Type{
		events.NodeBootStarted, events.NodeBootStage, events.NodeBootFailed, events.NodeBootRefused,
		events.ActionStarted, events.ActionSucceeded, events.ActionFailed,
	}
}

// List implements reconcilers.Lister: every node with a boot to start or
// to follow.
func (r *Reconciler) List(ctx context.Context) ([]string, error) {
	st, err := r.cfg.Log.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the state: %w", err)
	}
	var names []string
	for _, n := range st.NodeList() {
		if b := n.Boot; b != nil && (b.Phase == state.BootPending || b.Phase == state.BootBooting) {
			names = append(names, n.Name)
		}
	}
	return names, nil
}

// Reconcile implements reconcilers.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcilers.Request) (reconcilers.Result, error) {
	st, err := r.cfg.Log.State(ctx)
	if err != nil {
		return reconcilers.Result{}, fmt.Errorf("reading the state: %w", err)
	}
	node, ok := st.Nodes[req.Name]
	if !ok || node.Boot == nil {
		r.forget(req.Name)
		return reconcilers.Result{}, nil
	}
	switch node.Boot.Phase {
	case state.BootPending:
		return r.start(ctx, node)
	case state.BootBooting:
		return r.follow(ctx, node)
	}
	r.forget(node.Name)
	return reconcilers.Result{}, nil
}

// start verifies the spec's image, sets the next boot source (intent
// first) and asks for a power cycle.
func (r *Reconciler) start(ctx context.Context, node *state.Node) (reconcilers.Result, error) {
	b := node.Boot
	if b.Image != "" && !r.isVerified(node.Name, b.DesiredSequence) {
		start := time.Now()
		err := r.verify.verify(ctx, b)
		r.metrics.verify.Observe(time.Since(start).Seconds())
		var ref *refusal
		switch {
		case errors.As(err, &ref):
			return reconcilers.Result{}, r.refuse(ctx, node, ref)
		case err != nil:
			return reconcilers.Result{}, fmt.Errorf("verifying the image of node %s: %w", node.Name, err)
		}
		r.mu.Lock()
		r.verified[node.Name] = b.DesiredSequence
		r.mu.Unlock()
		r.logger.Info("image verified", "node", node.Name, "image", b.Image, "digest", b.Digest, "key", b.KeyID)
	}

	bmc, err := r.cfg.Backplane.BMC(node.Slot)
	if err != nil {
		return reconcilers.Result{}, r.fail(ctx, node, events.BootStageOff, fmt.Sprintf("slot %d has no BMC: %v", node.Slot, err))
	}
	setter, ok := bmc.(drivers.BootSourceSetter)
	if !ok {
		return reconcilers.Result{}, r.fail(ctx, node, events.BootStageOff, fmt.Sprintf("the BMC of slot %d cannot set the boot source", node.Slot))
	}

	// Intent first: a member that lost leadership cannot commit it.
	id := events.NewID()
	started, err := r.event(events.ActionStarted, node.Name, &events.ActionStartedData{
		Action: id, Reconciler: Name, Operation: OpSetSource, Attempt: r.nextAttempt(node.Name, b.DesiredSequence), Target: b.DesiredSequence,
	})
	if err == nil {
		err = r.appendIntent(ctx, started)
	}
	if err != nil {
		return reconcilers.Result{}, fmt.Errorf("committing %s of node %s before acting: %w", OpSetSource, node.Name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	err = setter.SetBootSource(cctx, drivers.BootSource(b.Source))
	cancel()

	// Record the outcome even if ctx ended: the action was committed.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.CallTimeout)
	defer rcancel()
	if err != nil {
		retry := drivers.Retryable(err) || ctx.Err() != nil
		failed, ferr := r.event(events.ActionFailed, node.Name, &events.ActionFailedData{Action: id, Reason: events.FitText(err.Error()), Retry: retry})
		if ferr == nil {
			_, ferr = r.cfg.Log.Append(rctx, failed)
		}
		if ferr != nil {
			r.logger.Error("recording a failed action", "node", node.Name, "action", id, "error", ferr)
		}
		if !retry {
			return reconcilers.Result{}, r.fail(ctx, node, events.BootStageOff, "setting the boot source: "+err.Error())
		}
		return reconcilers.Result{}, fmt.Errorf("setting the boot source of node %s: %w", node.Name, err)
	}

	done, err := r.event(events.ActionSucceeded, node.Name, &events.ActionSucceededData{Action: id})
	if err != nil {
		return reconcilers.Result{}, err
	}
	cycle, err := r.event(events.NodePowerDesired, node.Name, &events.PowerDesiredData{State: events.PowerCycle})
	if err != nil {
		return reconcilers.Result{}, err
	}
	begun, err := r.event(events.NodeBootStarted, node.Name, &events.BootStartedData{Target: b.DesiredSequence, Source: b.Source})
	if err != nil {
		return reconcilers.Result{}, err
	}
	// The cycle and boot.started go together: boot.started takes the
	// cycle's sequence, and a newer spec rejects both (state.ErrStaleBoot).
	if _, err := r.cfg.Log.Append(rctx, done, cycle, begun); err != nil {
		if errors.Is(err, state.ErrStaleBoot) {
			if _, aerr := r.cfg.Log.Append(rctx, done); aerr != nil {
				r.logger.Warn("recording a succeeded action", "node", node.Name, "action", id, "error", aerr)
			}
			return reconcilers.Result{RequeueAfter: r.cfg.PollInterval}, nil
		}
		return reconcilers.Result{}, fmt.Errorf("recording the boot of node %s: %w", node.Name, err)
	}
	r.mu.Lock()
	delete(r.attempts, node.Name)
	r.mu.Unlock()
	r.logger.Info("boot started", "node", node.Name, "source", b.Source, "image", b.Image, "spec", b.DesiredSequence)
	return reconcilers.Result{RequeueAfter: r.cfg.PollInterval}, nil
}

// follow watches a started boot: the power cycle, then each stage the
// BMC reports, and fails the boot when a stage outlasts its timeout.
func (r *Reconciler) follow(ctx context.Context, node *state.Node) (reconcilers.Result, error) {
	b := node.Boot
	cur := b.StageThisBoot()
	if node.Desired == events.PowerOff && node.DesiredSequence > b.StartedSequence {
		return reconcilers.Result{}, r.fail(ctx, node, stageOr(cur), "the node was asked to power off during the boot")
	}
	now := time.Now()
	if node.CycleDoneSequence < b.CycleSequence {
		deadline := b.StartedAt.Add(r.cfg.Timeouts.Cycle)
		if !now.Before(deadline) {
			reason := fmt.Sprintf("the node was not power cycled within %v", r.cfg.Timeouts.Cycle)
			if ref := node.Refusal; ref != nil && ref.Sequence > b.CycleSequence {
				reason += "; the power reconciler refused the cycle: " + ref.Reason
			}
			return reconcilers.Result{}, r.fail(ctx, node, events.BootStageOff, reason)
		}
		return reconcilers.Result{RequeueAfter: min(r.cfg.PollInterval, deadline.Sub(now))}, nil
	}

	obs, readErr := r.readStage(ctx, node)
	if readErr == nil && obs != cur && obs.Valid() {
		ev, err := r.event(events.NodeBootStage, node.Name, &events.BootStageData{Stage: obs, Target: b.DesiredSequence, Via: events.ViaBMC})
		if err != nil {
			return reconcilers.Result{}, err
		}
		if _, err := r.cfg.Log.Append(ctx, ev); err != nil {
			return reconcilers.Result{}, fmt.Errorf("recording stage %s of node %s: %w", obs, node.Name, err)
		}
		r.logger.Info("boot stage", "node", node.Name, "stage", obs, "was", cur)
		if obs == events.BootStageReady {
			r.metrics.results.WithLabelValues(resultReady).Inc()
			r.forget(node.Name)
			return reconcilers.Result{}, nil
		}
		return reconcilers.Result{RequeueAfter: r.cfg.PollInterval}, nil
	}
	if readErr != nil && ctx.Err() != nil {
		return reconcilers.Result{}, readErr
	}

	since, limit := b.StageAt, r.cfg.Timeouts.For(cur)
	if cur == "" {
		since = b.StartedAt
	}
	if deadline := since.Add(limit); now.Before(deadline) {
		if readErr != nil {
			r.logger.Debug("reading the boot stage failed", "node", node.Name, "error", readErr)
		}
		return reconcilers.Result{RequeueAfter: min(r.cfg.PollInterval, deadline.Sub(now))}, nil
	}
	var reason string
	if cur == "" {
		reason = fmt.Sprintf("the node did not start booting within %v", limit)
	} else {
		reason = fmt.Sprintf("no progress past stage %s within %v", cur, limit)
	}
	if readErr != nil {
		reason += fmt.Sprintf(" (its BMC does not answer: %v)", readErr)
	} else if obs == events.BootStageOff {
		reason += " (its BMC reports it off)"
	}
	return reconcilers.Result{}, r.fail(ctx, node, stageOr(cur), reason)
}

// readStage reads the node's stage from its BMC: off, one of
// events.BootStages, or an error (no BMC, no stage reporting, a failed
// call).
func (r *Reconciler) readStage(ctx context.Context, node *state.Node) (events.BootStage, error) {
	bmc, err := r.cfg.Backplane.BMC(node.Slot)
	if err != nil {
		return "", err
	}
	bs, ok := bmc.(drivers.BootStager)
	if !ok {
		return "", fmt.Errorf("the BMC of slot %d reports no boot stage", node.Slot)
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	st, err := bs.BootStage(cctx)
	if err != nil {
		return "", err
	}
	return events.BootStage(st), nil
}

func stageOr(s events.BootStage) events.BootStage {
	if s == "" {
		return events.BootStageOff
	}
	return s
}

// refuse records that the spec's image did not verify.
func (r *Reconciler) refuse(ctx context.Context, node *state.Node, why *refusal) error {
	reason := events.FitText(why.Error())
	ev, err := r.event(events.NodeBootRefused, node.Name, &events.BootRefusedData{Reason: reason, Target: node.Boot.DesiredSequence})
	if err != nil {
		return err
	}
	if _, err := r.cfg.Log.Append(ctx, ev); err != nil {
		if errors.Is(err, state.ErrStaleBoot) {
			return nil // a newer spec meanwhile: it wakes us
		}
		return fmt.Errorf("recording the refusal of node %s's image: %w", node.Name, err)
	}
	r.metrics.results.WithLabelValues(resultRefused).Inc()
	r.logger.Warn("image refused; not booting it", "node", node.Name, "image", node.Boot.Image, "reason", reason)
	r.forget(node.Name)
	return nil
}

// fail records that the current boot of node failed in stage.
func (r *Reconciler) fail(ctx context.Context, node *state.Node, stage events.BootStage, reason string) error {
	reason = events.FitText(reason)
	ev, err := r.event(events.NodeBootFailed, node.Name, &events.BootFailedData{Stage: stage, Reason: reason, Target: node.Boot.DesiredSequence})
	if err != nil {
		return err
	}
	if _, err := r.cfg.Log.Append(ctx, ev); err != nil {
		return fmt.Errorf("recording the failed boot of node %s: %w", node.Name, err)
	}
	r.metrics.results.WithLabelValues(resultFailed).Inc()
	r.logger.Warn("boot failed", "node", node.Name, "stage", stage, "reason", reason)
	r.forget(node.Name)
	return nil
}

// appendIntent commits an action.started, fenced if the log can.
func (r *Reconciler) appendIntent(ctx context.Context, ev events.Event) error {
	var err error
	if f, ok := r.cfg.Log.(eventlog.Fenced); ok {
		_, err = f.AppendFenced(ctx, ev)
	} else {
		_, err = r.cfg.Log.Append(ctx, ev)
	}
	if errors.Is(err, eventlog.ErrNotLeader) {
		r.logger.Warn("not the leader any more; not acting", "node", ev.Subject)
	}
	return err
}

func (r *Reconciler) isVerified(node string, spec uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.verified[node] == spec
}

func (r *Reconciler) nextAttempt(node string, target uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.attempts[node]
	if a.target != target {
		a = attempt{target: target}
	}
	a.n++
	r.attempts[node] = a
	return a.n
}

func (r *Reconciler) forget(node string) {
	r.mu.Lock()
	delete(r.verified, node)
	delete(r.attempts, node)
	r.mu.Unlock()
}

func (r *Reconciler) event(t events.Type, subject string, p events.Payload) (events.Event, error) {
	ev, err := events.New(r.source, t, subject, p)
	if err != nil {
		return events.Event{}, fmt.Errorf("building %s for %s: %w", t, subject, err)
	}
	ev.Actor = Actor
	return ev, nil
}
