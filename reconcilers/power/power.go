package power

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
	"github.com/racklet/rack/reconcilers"
)

// Name is the reconciler's name, in logs, metrics and action events.
const Name = "power"

// Actor is the actor of the events the reconciler appends.
const Actor = "reconciler:" + Name

// The operations of the reconciler's actions.
const (
	opOn    = state.OpPowerOn
	opOff   = state.OpPowerOff
	opCycle = state.OpPowerCycle
)

// Defaults of Config.
const (
	DefaultObserveInterval           = time.Second
	DefaultCallTimeout               = 2 * time.Second
	DefaultUnitWatts                 = 4.2
	DefaultInrushWatts               = 9.0
	DefaultInrushWindow              = 50 * time.Millisecond
	DefaultFailuresBeforeUnreachable = 5
	DefaultUnreachableRetry          = 30 * time.Second
)

// ErrInvalid: the configuration is malformed.
var ErrInvalid = errors.New("power: invalid config")

// Config configures the power reconciler. Zero durations and watts take
// the defaults above; Log, Backplane, Rack and Member are required.
type Config struct {
	// Log is the rack's event log: the state is read from it and every
	// observation and action is appended to it.
	Log eventlog.Log
	// Backplane reaches the BMC of each node's slot.
	Backplane drivers.Backplane
	// Rack and Member name the event source, events.Source(Rack, Member).
	Rack, Member string

	// ObserveInterval: every node is observed at least this often.
	ObserveInterval time.Duration
	// CallTimeout bounds each BMC call.
	CallTimeout time.Duration

	// BudgetWatts is the power budget of the rack's units (standby and
	// rack overhead not included); 0 is unlimited, else at least
	// InrushWatts.
	BudgetWatts float64
	// UnitWatts is the steady draw assumed for a unit that is on.
	UnitWatts float64
	// InrushWatts is a unit's draw for InrushWindow after power-on.
	InrushWatts  float64
	InrushWindow time.Duration

	// FailuresBeforeUnreachable consecutive BMC failures mark a node
	// unreachable; it is then retried every UnreachableRetry.
	FailuresBeforeUnreachable int
	UnreachableRetry          time.Duration

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the reconciler's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock of the power budget (default time.Now).
	Now func() time.Time
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
	case c.ObserveInterval < 0 || c.CallTimeout < 0 || c.InrushWindow < 0 || c.UnreachableRetry < 0:
		return c, fmt.Errorf("%w: negative duration", ErrInvalid)
	case c.BudgetWatts < 0 || c.UnitWatts < 0 || c.InrushWatts < 0:
		return c, fmt.Errorf("%w: negative watts", ErrInvalid)
	case c.FailuresBeforeUnreachable < 0:
		return c, fmt.Errorf("%w: negative failures before unreachable", ErrInvalid)
	}
	if c.ObserveInterval == 0 {
		c.ObserveInterval = DefaultObserveInterval
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.UnitWatts == 0 {
		c.UnitWatts = DefaultUnitWatts
	}
	if c.InrushWatts == 0 {
		c.InrushWatts = DefaultInrushWatts
	}
	if c.InrushWindow == 0 {
		c.InrushWindow = DefaultInrushWindow
	}
	if c.InrushWatts < c.UnitWatts {
		return c, fmt.Errorf("%w: inrush %.1f W is below the unit's steady %.1f W", ErrInvalid, c.InrushWatts, c.UnitWatts)
	}
	if c.BudgetWatts > 0 && c.BudgetWatts < c.InrushWatts {
		return c, fmt.Errorf("%w: budget %.1f W has no room for one unit's inrush of %.1f W", ErrInvalid, c.BudgetWatts, c.InrushWatts)
	}
	if c.FailuresBeforeUnreachable == 0 {
		c.FailuresBeforeUnreachable = DefaultFailuresBeforeUnreachable
	}
	if c.UnreachableRetry == 0 {
		c.UnreachableRetry = DefaultUnreachableRetry
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Reconciler is the power reconciler. Safe for concurrent use (the runtime
// never reconciles one node concurrently with itself).
type Reconciler struct {
	cfg     Config
	source  string
	logger  *slog.Logger
	metrics *metrics
	budget  *budget

	mu       sync.Mutex
	failures map[string]int     // consecutive failed BMC calls per node
	attempts map[string]attempt // the last action tried per node
}

// attempt counts the tries of one operation for one desired sequence.
type attempt struct {
	op     string
	target uint64
	n      int
}

var (
	_ reconcilers.Reconciler = (*Reconciler)(nil)
	_ reconcilers.Lister     = (*Reconciler)(nil)
)

// New returns a power reconciler; register it on a reconcilers.Runtime.
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
		budget:   newBudget(cfg),
		failures: map[string]int{},
		attempts: map[string]attempt{},
	}, nil
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Inputs implements reconcilers.Reconciler: a node appears, goes, or gets
// a new desired power. Observations, refusals and reachability are the
// reconciler's own outputs; it polls the hardware for drift.
func (r *Reconciler) Inputs() []events.Type {
	return []events.Type{events.NodeRegistered, events.NodeRemoved, events.NodePowerDesired}
}

// Outputs implements reconcilers.Reconciler.
func (r *Reconciler) Outputs() []events.Type {
	return []events.Type{
		events.NodePowerObserved, events.NodePowerRefused, events.NodeUnreachable, events.NodeReachable,
		events.ActionStarted, events.ActionSucceeded, events.ActionFailed,
	}
}

// List implements reconcilers.Lister: every registered node.
func (r *Reconciler) List(ctx context.Context) ([]string, error) {
	st, err := r.cfg.Log.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the state: %w", err)
	}
	names := make([]string, 0, len(st.Nodes))
	for _, n := range st.NodeList() {
		names = append(names, n.Name)
	}
	return names, nil
}

// Reconcile implements reconcilers.Reconciler: observe node req.Name's
// power, record changes, and drive it towards the desired power.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcilers.Request) (reconcilers.Result, error) {
	st, err := r.cfg.Log.State(ctx)
	if err != nil {
		return reconcilers.Result{}, fmt.Errorf("reading the state: %w", err)
	}
	node, ok := st.Nodes[req.Name]
	if !ok {
		r.forget(req.Name)
		return reconcilers.Result{}, nil
	}
	bmc, err := r.cfg.Backplane.BMC(node.Slot)
	if err != nil {
		// Slot 0 (unknown) or out of range: registering it again fixes it.
		return reconcilers.Result{}, reconcilers.Terminal(fmt.Errorf("node %s: slot %d: %w", node.Name, node.Slot, err))
	}

	// Observe.
	obs, err := r.readPower(ctx, bmc)
	if err != nil {
		return r.bmcFailed(ctx, node, "reading power", err)
	}
	if err := r.observed(ctx, node, obs); err != nil {
		return reconcilers.Result{}, err
	}
	next := reconcilers.Result{RequeueAfter: r.cfg.ObserveInterval}

	// Diff.
	op := wanted(node)
	if op == "" {
		return next, nil
	}

	// Safety: the quorum guard, for what takes a node down.
	if (op == opOff || op == opCycle) && node.Observed == events.PowerOn && !node.Force {
		if err := st.QuorumGuard(node.Name); err != nil {
			return next, r.refuse(ctx, node, op, err)
		}
		// The log may lag the hardware (a member's unit lost power a
		// moment ago, and no failure has been recorded yet): before
		// taking a member down, read the other members' BMCs now.
		if node.Member != "" {
			if err := r.liveQuorumGuard(ctx, st, node); err != nil {
				return next, r.refuse(ctx, node, op, err)
			}
		}
	}
	// Safety: the power budget, for what powers a node on.
	if op == opOn || op == opCycle {
		// A fresh state: other nodes may have been observed meanwhile.
		fresh, err := r.cfg.Log.State(ctx)
		if err != nil {
			return reconcilers.Result{}, fmt.Errorf("reading the state: %w", err)
		}
		ok, wait := r.budget.admit(fresh, node.Name, r.cfg.Now())
		if !ok {
			r.metrics.budgetWaits.Inc()
			r.logger.Debug("power budget has no room; waiting", "node", node.Name, "operation", op, "retry_in", wait)
			return reconcilers.Result{RequeueAfter: wait}, nil
		}
	}

	// Act: intent first.
	return r.act(ctx, node, bmc, op)
}

// liveQuorumGuard checks the quorum guard again with what the BMCs of the
// other nodes hosting members say right now: a node that reads off, or
// does not answer, counts as down. st is the reconciler's own copy.
func (r *Reconciler) liveQuorumGuard(ctx context.Context, st *state.State, node *state.Node) error {
	for _, other := range st.Nodes {
		if other == node || other.Member == "" {
			continue
		}
		bmc, err := r.cfg.Backplane.BMC(other.Slot)
		if err == nil {
			var p events.PowerState
			if p, err = r.readPower(ctx, bmc); err == nil && p == events.PowerOff {
				other.Observed = events.PowerOff
			}
		}
		if err != nil {
			other.Unreachable = true
		}
	}
	return st.QuorumGuard(node.Name)
}

// wanted is the operation that brings node from its observed power to the
// desired one, or "" if none is needed.
func wanted(n *state.Node) string {
	if n.CyclePending() && !(n.Desired == events.PowerOff && n.DesiredSequence > n.CycleSequence) {
		return opCycle
	}
	switch {
	case n.Desired == events.PowerOn && n.Observed != events.PowerOn:
		return opOn
	case n.Desired == events.PowerOff && n.Observed != events.PowerOff:
		return opOff
	}
	return ""
}

// readPower reads the BMC's power state within CallTimeout.
func (r *Reconciler) readPower(ctx context.Context, bmc drivers.BMC) (events.PowerState, error) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	p, err := bmc.PowerState(cctx)
	if err != nil {
		return "", err
	}
	if !p.Valid() {
		return "", &drivers.Error{Op: drivers.OpPowerRead, Slot: bmc.Slot(), Err: drivers.ErrRefused, Cause: fmt.Errorf("bmc reported power %q", string(p))}
	}
	return events.PowerState(p), nil
}

// observed records a successful observation: node.reachable if the node
// was unreachable, node.power.observed if the power changed. It updates
// node (a copy in the reconciler's state snapshot) to match.
func (r *Reconciler) observed(ctx context.Context, node *state.Node, obs events.PowerState) error {
	r.mu.Lock()
	delete(r.failures, node.Name)
	r.mu.Unlock()
	r.budget.observed(node.Name, obs, r.cfg.Now())

	var evs []events.Event
	if node.Unreachable {
		ev, err := r.event(events.NodeReachable, node.Name, &events.NodeReachableData{})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	if obs != node.Observed {
		ev, err := r.event(events.NodePowerObserved, node.Name, &events.PowerObservedData{State: obs})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return nil
	}
	if _, err := r.cfg.Log.Append(ctx, evs...); err != nil {
		return fmt.Errorf("recording node %s observed %s: %w", node.Name, obs, err)
	}
	if node.Unreachable {
		r.logger.Info("node reachable again", "node", node.Name)
	}
	if obs != node.Observed {
		r.logger.Debug("power observed", "node", node.Name, "power", obs, "was", node.Observed)
	}
	node.Observed, node.Unreachable, node.UnreachableReason = obs, false, ""
	return nil
}

// refuse records once per desired sequence that the guard refused node's
// desired power.
func (r *Reconciler) refuse(ctx context.Context, node *state.Node, op string, guard error) error {
	if node.Refusal != nil && node.Refusal.Sequence > node.DesiredSequence {
		return nil // recorded already
	}
	s := events.PowerOff
	if op == opCycle {
		s = events.PowerCycle
	}
	reason := strings.TrimPrefix(guard.Error(), "state: ")
	ev, err := r.event(events.NodePowerRefused, node.Name, &events.PowerRefusedData{State: s, Reason: reason, Target: node.DesiredSequence})
	if err != nil {
		return err
	}
	if _, err := r.cfg.Log.Append(ctx, ev); err != nil {
		return fmt.Errorf("recording the refusal of power %s for node %s: %w", s, node.Name, err)
	}
	r.metrics.refusals.Inc()
	r.logger.Warn("refused desired power", "node", node.Name, "power", s, "reason", reason)
	return nil
}

// act commits the intent, drives the BMC and records the outcome.
func (r *Reconciler) act(ctx context.Context, node *state.Node, bmc drivers.BMC, op string) (reconcilers.Result, error) {
	powersOn := op == opOn || op == opCycle
	target := node.DesiredSequence
	if op == opCycle {
		target = node.CycleSequence
	}
	id := events.NewID()
	started, err := r.event(events.ActionStarted, node.Name, &events.ActionStartedData{
		Action: id, Reconciler: Name, Operation: op, Attempt: r.nextAttempt(node.Name, op, target), Target: target,
	})
	if err == nil {
		err = r.appendIntent(ctx, started)
	}
	if err != nil {
		if powersOn {
			r.budget.cancel(node.Name)
		}
		return reconcilers.Result{}, fmt.Errorf("committing %s of node %s before acting: %w", op, node.Name, err)
	}

	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	switch op {
	case opOn:
		err = bmc.SetPower(cctx, drivers.PowerOn)
	case opOff:
		err = bmc.SetPower(cctx, drivers.PowerOff)
	case opCycle:
		err = bmc.PowerCycle(cctx)
	}
	cancel()
	if powersOn {
		r.budget.poweredOn(node.Name, r.cfg.Now())
	}

	// Record the outcome even if ctx ended meanwhile: the action was
	// committed and may have taken effect.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.CallTimeout)
	defer rcancel()
	if err != nil {
		r.metrics.actions.WithLabelValues(op, resultFailed).Inc()
		retry := drivers.Retryable(err)
		failed, ferr := r.event(events.ActionFailed, node.Name, &events.ActionFailedData{Action: id, Reason: events.FitText(err.Error()), Retry: retry})
		if ferr == nil {
			_, ferr = r.cfg.Log.Append(rctx, failed)
		}
		if ferr != nil {
			r.logger.Error("recording a failed action", "node", node.Name, "action", id, "error", ferr)
		}
		if !retry && ctx.Err() == nil {
			return reconcilers.Result{}, reconcilers.Terminal(fmt.Errorf("%s of node %s: %w", op, node.Name, err))
		}
		return r.bmcFailed(ctx, node, op, err)
	}

	r.metrics.actions.WithLabelValues(op, resultSucceeded).Inc()
	r.mu.Lock()
	delete(r.failures, node.Name)
	delete(r.attempts, node.Name)
	r.mu.Unlock()
	r.logger.Info("power action done", "node", node.Name, "operation", op, "action", id, "target", target)

	evs := make([]events.Event, 0, 2)
	done, err := r.event(events.ActionSucceeded, node.Name, &events.ActionSucceededData{Action: id})
	if err != nil {
		return reconcilers.Result{}, err
	}
	evs = append(evs, done)
	// Observe the result now, so that readers see it at once. A failed
	// read is left to the next observation.
	if obs, err := r.readPower(ctx, bmc); err == nil {
		r.budget.observed(node.Name, obs, r.cfg.Now())
		if obs != node.Observed {
			ev, err := r.event(events.NodePowerObserved, node.Name, &events.PowerObservedData{State: obs})
			if err != nil {
				return reconcilers.Result{}, err
			}
			evs = append(evs, ev)
		}
	}
	if _, err := r.cfg.Log.Append(rctx, evs...); err != nil {
		return reconcilers.Result{}, fmt.Errorf("recording %s of node %s: %w", op, node.Name, err)
	}
	return reconcilers.Result{RequeueAfter: r.cfg.ObserveInterval}, nil
}

// appendIntent commits an action.started: fenced if the log can, so that a
// deposed leader cannot commit it (and so cannot act).
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

// bmcFailed handles a failed BMC call: below FailuresBeforeUnreachable
// consecutive failures it returns the error (the runtime backs off); at
// that count it records node.unreachable (once) and retries every
// UnreachableRetry without an error.
func (r *Reconciler) bmcFailed(ctx context.Context, node *state.Node, what string, err error) (reconcilers.Result, error) {
	err = fmt.Errorf("%s of node %s (slot %d): %w", what, node.Name, node.Slot, err)
	if ctx.Err() != nil {
		return reconcilers.Result{}, err // leadership lost or shutting down
	}
	r.mu.Lock()
	r.failures[node.Name]++
	n := r.failures[node.Name]
	r.mu.Unlock()
	if n < r.cfg.FailuresBeforeUnreachable {
		return reconcilers.Result{}, err
	}
	if !node.Unreachable {
		ev, eerr := r.event(events.NodeUnreachable, node.Name, &events.NodeUnreachableData{Reason: events.FitText(err.Error()), Failures: n})
		if eerr == nil {
			_, eerr = r.cfg.Log.Append(ctx, ev)
		}
		if eerr != nil {
			return reconcilers.Result{}, fmt.Errorf("recording node %s unreachable: %w", node.Name, eerr)
		}
		r.logger.Warn("node unreachable; retrying slowly", "node", node.Name, "failures", n, "error", err, "retry_every", r.cfg.UnreachableRetry)
	}
	return reconcilers.Result{RequeueAfter: r.cfg.UnreachableRetry}, nil
}

// nextAttempt numbers the tries of op for target on node, from 1.
func (r *Reconciler) nextAttempt(node, op string, target uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.attempts[node]
	if a.op != op || a.target != target {
		a = attempt{op: op, target: target}
	}
	a.n++
	r.attempts[node] = a
	return a.n
}

// forget drops what the reconciler remembers about a node that is gone.
func (r *Reconciler) forget(node string) {
	r.mu.Lock()
	delete(r.failures, node)
	delete(r.attempts, node)
	r.mu.Unlock()
	r.budget.forget(node)
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
