package reconcilers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/events"
)

// Errors of Register and Run.
var (
	// ErrInvalid: the reconciler or the configuration is malformed.
	ErrInvalid = errors.New("reconcilers: invalid reconciler")
	// ErrDuplicate: a reconciler of that name is registered already.
	ErrDuplicate = errors.New("reconcilers: reconciler already registered")
	// ErrOutputOwned: another reconciler owns one of the outputs.
	ErrOutputOwned = errors.New("reconcilers: output owned by another reconciler")
	// ErrStarted: Register or Run after Run was called.
	ErrStarted = errors.New("reconcilers: runtime already started")
	// ErrLeadershipClosed: the Leadership channel was closed.
	ErrLeadershipClosed = errors.New("reconcilers: leadership channel closed")
)

// SharedOutput reports whether event type t may be written by several
// reconcilers: the action events (started, succeeded, failed), which every
// reconciler uses to record intent before action. They carry the
// reconciler's name in their data.
func SharedOutput(t events.Type) bool {
	switch t {
	case events.ActionStarted, events.ActionSucceeded, events.ActionFailed:
		return true
	}
	return false
}

// stopWarnAfter is how long stopping waits for in-flight Reconcile calls
// before it logs that one ignores its context.
const stopWarnAfter = 10 * time.Second

// Config configures a Runtime.
type Config struct {
	// Log is the event log the runtime watches. Required.
	Log eventlog.Log
	// Leadership says when this member leads. Required.
	Leadership Leadership
	// Registerer receives the runtime's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Backoff for failed requests; the zero value means DefaultBackoff.
	Backoff Backoff
}

// Runtime runs registered reconcilers while this member leads.
type Runtime struct {
	log        eventlog.Log
	leadership Leadership
	logger     *slog.Logger
	backoff    Backoff
	metrics    *metrics
	leading    atomic.Bool

	mu      sync.Mutex
	started bool
	regs    []*registration
	owners  map[events.Type]string
}

// registration is a registered reconciler and its settings.
type registration struct {
	r       Reconciler
	name    string
	inputs  []events.Type
	workers int
	lister  Lister // nil unless r implements Lister
	metrics *reconcilerMetrics
}

// Option changes how a reconciler is run.
type Option func(*registration)

// Workers sets how many names of the reconciler are reconciled in
// parallel (default 1). One name is never reconciled concurrently with
// itself.
func Workers(n int) Option { return func(r *registration) { r.workers = n } }

// New returns a runtime. Register reconcilers, then Run it.
func New(cfg Config) (*Runtime, error) {
	if cfg.Log == nil {
		return nil, fmt.Errorf("%w: config has no event log", ErrInvalid)
	}
	if cfg.Leadership == nil {
		return nil, fmt.Errorf("%w: config has no leadership", ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = DefaultBackoff
	}
	if err := cfg.Backoff.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Runtime{
		log:        cfg.Log,
		leadership: cfg.Leadership,
		logger:     cfg.Logger,
		backoff:    cfg.Backoff,
		metrics:    m,
		owners:     map[events.Type]string{},
	}, nil
}

// Register adds a reconciler. It fails if the reconciler is malformed
// (name, no inputs, unknown types, a type both read and written), if its
// name is taken, or if another reconciler owns one of its outputs.
// Register must be called before Run.
func (rt *Runtime) Register(r Reconciler, opts ...Option) error {
	name := r.Name()
	if !events.ValidName(name) {
		return fmt.Errorf("%w: name %q: use 1 to 63 of a-z, 0-9 and -", ErrInvalid, name)
	}
	reg := &registration{r: r, name: name, workers: 1}
	for _, o := range opts {
		o(reg)
	}
	if reg.workers < 1 {
		return fmt.Errorf("%w: %s: workers must be at least 1, not %d", ErrInvalid, name, reg.workers)
	}
	if l, ok := r.(Lister); ok {
		reg.lister = l
	}
	for _, t := range r.Inputs() {
		if !events.Known(t) {
			return fmt.Errorf("%w: %s: unknown input type %q", ErrInvalid, name, t)
		}
		if !slices.Contains(reg.inputs, t) {
			reg.inputs = append(reg.inputs, t)
		}
	}
	if len(reg.inputs) == 0 {
		return fmt.Errorf("%w: %s has no inputs", ErrInvalid, name)
	}
	outputs := r.Outputs()
	for _, t := range outputs {
		if !events.Known(t) {
			return fmt.Errorf("%w: %s: unknown output type %q", ErrInvalid, name, t)
		}
		// A reconciler woken by its own writes could loop on itself.
		if slices.Contains(reg.inputs, t) {
			return fmt.Errorf("%w: %s both reads and writes %s", ErrInvalid, name, t)
		}
	}

	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.started {
		return fmt.Errorf("registering %s: %w", name, ErrStarted)
	}
	for _, o := range rt.regs {
		if o.name == name {
			return fmt.Errorf("%w: %s", ErrDuplicate, name)
		}
	}
	for _, t := range outputs {
		if owner, ok := rt.owners[t]; ok && owner != name && !SharedOutput(t) {
			return fmt.Errorf("%w: %s cannot own %s, %s does", ErrOutputOwned, name, t, owner)
		}
	}
	for _, t := range outputs {
		if !SharedOutput(t) {
			rt.owners[t] = name
		}
	}
	reg.metrics = rt.metrics.forReconciler(name)
	rt.regs = append(rt.regs, reg)
	return nil
}

// Leading reports whether the reconcilers are running: true from the
// moment a leadership term starts until its reconcilers have stopped.
func (rt *Runtime) Leading() bool { return rt.leading.Load() }

// Run runs the reconcilers during each leadership term until ctx ends,
// then stops them and returns nil. It returns an error early if the event
// log is closed or the leadership channel is closed, also after stopping
// everything. Run may be called once.
func (rt *Runtime) Run(ctx context.Context) error {
	rt.mu.Lock()
	if rt.started {
		rt.mu.Unlock()
		return ErrStarted
	}
	rt.started = true
	regs := slices.Clone(rt.regs)
	rt.mu.Unlock()

	var cur *term
	stop := func() {
		if cur == nil {
			return
		}
		cur.stop()
		cur = nil
		rt.leading.Store(false)
		rt.metrics.leading.Set(0)
		rt.logger.Info("reconcilers stopped")
	}
	defer stop()

	leaderCh := rt.leadership.LeaderCh()
	for {
		var fatal <-chan error
		if cur != nil {
			fatal = cur.fatal
		}
		select {
		case <-ctx.Done():
			return nil
		case leading, ok := <-leaderCh:
			if !ok {
				return ErrLeadershipClosed
			}
			// Every true starts a new term, even when already leading:
			// the channel may have coalesced a loss and a regain.
			stop()
			if leading {
				rt.logger.Info("leading: starting reconcilers", "reconcilers", len(regs))
				cur = rt.startTerm(ctx, regs)
				rt.leading.Store(true)
				rt.metrics.leading.Set(1)
			}
		case err := <-fatal:
			return err
		}
	}
}

// term is one leadership term: the reconcilers' workers and the goroutine
// that feeds their queues from the event log.
type term struct {
	rt     *Runtime
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ctrls  []*controller
	byType map[events.Type][]*controller
	fatal  chan error
}

func (rt *Runtime) startTerm(parent context.Context, regs []*registration) *term {
	ctx, cancel := context.WithCancel(parent)
	t := &term{rt: rt, cancel: cancel, byType: map[events.Type][]*controller{}, fatal: make(chan error, 1)}
	for _, reg := range regs {
		c := &controller{
			registration: reg,
			rt:           rt,
			logger:       rt.logger.With("reconciler", reg.name),
			q:            newQueue(func(n int) { reg.metrics.depth.Set(float64(n)) }),
			failures:     map[string]int{},
		}
		t.ctrls = append(t.ctrls, c)
		for _, in := range reg.inputs {
			t.byType[in] = append(t.byType[in], c)
		}
		for range reg.workers {
			t.wg.Go(func() { c.work(ctx) })
		}
	}
	t.wg.Go(func() {
		if err := t.feed(ctx); err != nil {
			t.fatal <- err
		}
	})
	return t
}

// stop cancels the term and waits for in-flight Reconcile calls to return.
func (t *term) stop() {
	t.cancel()
	for _, c := range t.ctrls {
		c.q.close()
	}
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	warn := time.NewTimer(stopWarnAfter)
	defer warn.Stop()
	select {
	case <-done:
		return
	case <-warn.C:
		t.rt.logger.Warn("a Reconcile call ignores its cancelled context; still waiting for it", "waited", stopWarnAfter)
	}
	<-done
}

// feed follows the event log for the term: sync, resync every Lister,
// then wake reconcilers with the subjects of their input events. When
// following fails it backs off and starts again with a resync, so nothing
// is missed. It returns nil when ctx ends and an error if the log is
// closed.
func (t *term) feed(ctx context.Context) error {
	failures := 0
	for {
		err := t.follow(ctx, func() { failures = 0 })
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, eventlog.ErrClosed) {
			return fmt.Errorf("reconcilers: following the event log: %w", err)
		}
		failures++
		d := t.rt.backoff.delay(failures, rand.Float64())
		t.rt.logger.Warn("following the event log failed; resyncing", "error", err, "retry_in", d)
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

func (t *term) follow(ctx context.Context, progress func()) error {
	if err := t.rt.log.Sync(ctx); err != nil {
		return fmt.Errorf("syncing the event log: %w", err)
	}
	st, err := t.rt.log.State(ctx)
	if err != nil {
		return fmt.Errorf("reading the state: %w", err)
	}
	from := st.Sequence + 1
	for _, c := range t.ctrls {
		if c.lister == nil {
			continue
		}
		names, err := c.lister.List(ctx)
		if err != nil {
			return fmt.Errorf("listing for %s: %w", c.name, err)
		}
		for _, n := range names {
			c.q.add(n)
		}
		c.logger.Debug("resync", "names", len(names))
	}
	return t.rt.log.Watch(ctx, from, func(ev events.Event) error {
		for _, c := range t.byType[ev.Type] {
			c.q.add(ev.Subject)
		}
		progress()
		return nil
	})
}

// controller runs one reconciler during one term.
type controller struct {
	*registration
	rt     *Runtime
	logger *slog.Logger
	q      *queue

	mu       sync.Mutex
	failures map[string]int // consecutive failures per name
}

func (c *controller) work(ctx context.Context) {
	for {
		name, ok := c.q.get()
		if !ok {
			return
		}
		c.reconcile(ctx, name)
		c.q.done(name)
	}
}

func (c *controller) reconcile(ctx context.Context, name string) {
	start := time.Now()
	res, err := c.call(ctx, name)
	c.metrics.duration.Observe(time.Since(start).Seconds())
	if ctx.Err() != nil {
		// Leadership lost or shutting down: the next term resyncs.
		return
	}
	switch {
	case err == nil:
		c.forget(name)
		if res.RequeueAfter > 0 {
			c.q.addAfter(name, max(res.RequeueAfter, c.rt.backoff.Base))
			c.metrics.results[resultRequeue].Inc()
		} else {
			c.metrics.results[resultSuccess].Inc()
		}
	case IsTerminal(err):
		c.forget(name)
		c.metrics.results[resultTerminal].Inc()
		c.metrics.errors[resultTerminal].Inc()
		c.logger.Error("reconcile failed; not retrying until an input changes", "name", name, "error", err)
	default:
		c.mu.Lock()
		c.failures[name]++
		n := c.failures[name]
		c.mu.Unlock()
		d := c.rt.backoff.delay(n, rand.Float64())
		c.q.addAfter(name, d)
		c.metrics.results[resultRetry].Inc()
		c.metrics.errors[resultRetry].Inc()
		c.logger.Warn("reconcile failed; retrying", "name", name, "error", err, "attempt", n, "retry_in", d)
	}
}

func (c *controller) forget(name string) {
	c.mu.Lock()
	delete(c.failures, name)
	c.mu.Unlock()
}

// call runs Reconcile, turning a panic into an error (retried with backoff)
// so that one broken reconciler does not take the member down.
func (c *controller) call(ctx context.Context, name string) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.logger.Error("reconcile panicked", "name", name, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("reconciler %s panicked: %v", c.name, p)
		}
	}()
	return c.r.Reconcile(ctx, Request{Name: name})
}
