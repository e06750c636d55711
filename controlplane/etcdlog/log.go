package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// Limits of one append. etcd refuses a transaction of more than
// --max-txn-ops operations (default 128: the batch's puts and the head's)
// and a request over --max-request-bytes (default 1.5 MiB).
const (
	MaxBatchEvents = 127
	MaxBatchBytes  = 1 << 20
	// MaxAttempts bounds the transactions one append tries when other
	// writers keep getting in first.
	MaxAttempts = 64
)

// Errors of this package.
var (
	// ErrBatchTooLarge: an append over MaxBatchEvents or MaxBatchBytes.
	ErrBatchTooLarge = errors.New("etcdlog: batch too large")
	// ErrContention: other writers got in first MaxAttempts times.
	ErrContention = errors.New("etcdlog: too much contention, retry later")
	// ErrUnknownOutcome: an append's transaction may or may not have been
	// committed, and the context ended before that could be found out.
	// Look its first event id up after a Sync.
	ErrUnknownOutcome = errors.New("etcdlog: append outcome unknown")
	// ErrCorrupt: the keys under the rack's prefix do not continue the log
	// (something other than this package wrote or deleted there).
	ErrCorrupt = errors.New("etcdlog: log corrupted")
)

// Config configures one member's log.
type Config struct {
	// Endpoints are etcd client URLs (e.g. Cluster.Endpoints()). Ignored
	// if Client is set.
	Endpoints []string
	// Client is an etcd client to use instead of dialling Endpoints; the
	// Log does not close it.
	Client *clientv3.Client
	// Rack names the rack: the keys live under /racklet/<rack>/.
	Rack string
	// Member names this member (logs, and its value in the election).
	Member string
	// Retention is how many recent events stay readable (default
	// eventlog.DefaultRetention).
	Retention int
	// RequestTimeout bounds one etcd request (default 5s); DialTimeout
	// the first connection (default 5s).
	RequestTimeout, DialTimeout time.Duration
	// Elect makes the Log campaign for leadership of the rack, which
	// AppendFenced requires. ElectionTTL is the lease of the leadership
	// in seconds (default 5): a leader that stops renewing it is deposed
	// after that long.
	Elect       bool
	ElectionTTL int
	// CompactInterval is how often the leader (Config.Elect) compacts
	// etcd's history of revisions older than the retention window (see
	// compact.go); 0 never does.
	CompactInterval time.Duration
	Logger          *slog.Logger
}

func (c *Config) setDefaults() error {
	if !events.ValidName(c.Rack) {
		return fmt.Errorf("etcdlog: invalid rack name %q", c.Rack)
	}
	if c.Member == "" {
		c.Member = "etcdlog"
	}
	if !events.ValidName(c.Member) {
		return fmt.Errorf("etcdlog: invalid member name %q", c.Member)
	}
	if c.Client == nil && len(c.Endpoints) == 0 {
		return errors.New("etcdlog: Endpoints or Client is required")
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ElectionTTL <= 0 {
		c.ElectionTTL = 5
	}
	if c.Retention <= 0 {
		c.Retention = eventlog.DefaultRetention
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Log is one member's view of the event log in etcd.
type Log struct {
	cfg       Config
	log       *slog.Logger
	cli       *clientv3.Client
	ownClient bool
	store     *eventlog.Store

	root      string // /racklet/<rack>/
	eventsPfx string // root + "events/"
	headKey   string // root + "head"

	// mu makes the projection and the revision it was built at one pair:
	// the applier holds it across Store.Apply.
	mu     sync.Mutex
	rev    int64         // ModRevision of the head as applied (0: empty log)
	revCh  chan struct{} // closed and replaced when rev changes or the log breaks
	broken error         // sticky ErrCorrupt

	// appendSem lets one append at a time talk to etcd: this Log's
	// callers queue instead of failing each other's compares.
	appendSem chan struct{}

	elec *election // nil without Config.Elect

	appends, conflicts, unknown atomic.Int64 // see Stats
	compacted                   atomic.Int64 // the revision this Log last compacted at

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

var (
	_ eventlog.Log    = (*Log)(nil)
	_ eventlog.Fenced = (*Log)(nil)
)

// Open connects to etcd, builds the projection from the keys there and
// starts following them. It returns once the projection holds everything
// committed before Open was called.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	root := "/racklet/" + cfg.Rack + "/"
	l := &Log{
		cfg: cfg, log: cfg.Logger.With("rack", cfg.Rack, "member", cfg.Member),
		cli:  cfg.Client,
		root: root, eventsPfx: root + "events/", headKey: root + "head",
		store:     eventlog.NewStore(cfg.Retention),
		revCh:     make(chan struct{}),
		appendSem: make(chan struct{}, 1),
	}
	if l.cli == nil {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   cfg.Endpoints,
			DialTimeout: cfg.DialTimeout,
			Logger:      zap.NewNop(),
			Context:     context.WithoutCancel(ctx),
		})
		if err != nil {
			return nil, fmt.Errorf("etcdlog: connecting to %v: %w", cfg.Endpoints, err)
		}
		l.cli, l.ownClient = cli, true
	}
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	fail := func(err error) (*Log, error) {
		l.cancel()
		l.store.Close()
		if l.ownClient {
			_ = l.cli.Close()
		}
		return nil, err
	}
	rev, err := l.catchUp(ctx)
	if err != nil {
		return fail(fmt.Errorf("etcdlog: reading the log: %w", err))
	}
	l.wg.Add(1)
	go l.follow(rev)
	if cfg.Elect {
		l.elec = newElection(l)
		l.wg.Add(1)
		go l.elec.run(l.ctx)
		if cfg.CompactInterval > 0 {
			l.wg.Add(1)
			go l.compactLoop()
		}
	}
	l.log.Info("event log opened", "sequence", l.store.LastSequence(), "revision", rev)
	return l, nil
}

// Store returns the member's applied store.
func (l *Log) Store() *eventlog.Store { return l.store }

// Client returns the etcd client.
func (l *Log) Client() *clientv3.Client { return l.cli }

// EventKey returns the key of the event with sequence seq.
func (l *Log) EventKey(seq uint64) string { return l.eventsPfx + fmt.Sprintf("%020d", seq) }

// Root returns the prefix of every key of the rack: /racklet/<rack>/.
func (l *Log) Root() string { return l.root }

// EventsPrefix returns the prefix of the rack's event keys.
func (l *Log) EventsPrefix() string { return l.eventsPfx }

// Stats counts what this Log's appends met.
type Stats struct {
	// Appends is how many appends this Log committed.
	Appends int64
	// Conflicts is how many of its transactions failed their compare
	// because another writer got in first (or the leadership was lost).
	Conflicts int64
	// UnknownOutcomes is how many of its transactions ended without a
	// known outcome and were resolved by looking the batch up.
	UnknownOutcomes int64
}

// Stats returns the counters since Open.
func (l *Log) Stats() Stats {
	return Stats{Appends: l.appends.Load(), Conflicts: l.conflicts.Load(), UnknownOutcomes: l.unknown.Load()}
}

// Append validates the events and commits them as one transaction.
func (l *Log) Append(ctx context.Context, evs ...events.Event) ([]events.Event, error) {
	return l.append(ctx, false, evs)
}

// AppendFenced commits the events only while this Log holds the rack's
// leadership (Config.Elect); the transaction itself checks it, so a
// deposed leader gets eventlog.ErrNotLeader.
func (l *Log) AppendFenced(ctx context.Context, evs ...events.Event) ([]events.Event, error) {
	return l.append(ctx, true, evs)
}

func (l *Log) append(ctx context.Context, fenced bool, evs []events.Event) ([]events.Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	size := 0
	for i, ev := range evs {
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		b, err := events.Encode(ev)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		size += len(b)
	}
	if len(evs) > MaxBatchEvents || size > MaxBatchBytes {
		return nil, fmt.Errorf("%w: %d events, %d bytes; the limits are %d and %d", ErrBatchTooLarge, len(evs), size, MaxBatchEvents, MaxBatchBytes)
	}
	select {
	case l.appendSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, eventlog.ErrClosed
	}
	defer func() { <-l.appendSem }()

	var (
		uncertain bool  // an earlier attempt may have been committed
		lastErr   error // of the last failed attempt
	)
	for attempt := 1; ; attempt++ {
		if err := l.usable(); err != nil {
			return nil, err
		}
		if uncertain {
			// The projection has caught up with etcd (see below): if an
			// earlier attempt was committed, its events are here.
			if got, ok := l.store.Committed(evs); ok {
				l.appends.Add(1)
				return got, nil
			}
		}
		if attempt > MaxAttempts {
			return nil, fmt.Errorf("%w: %d attempts, the last: %v", ErrContention, MaxAttempts, lastErr)
		}
		var fence *leadership
		if fenced {
			if fence = l.leader(); fence == nil {
				return nil, eventlog.ErrNotLeader
			}
		}
		st, rev := l.projection()
		out, err := st.Apply(evs)
		if err != nil {
			// A rejection counts only against the latest state: if the
			// projection lags etcd, catch up and validate again.
			head, herr := l.headRev(ctx)
			if herr != nil {
				return nil, l.ctxErr(herr, uncertain, evs)
			}
			if head == rev {
				return nil, err
			}
			lastErr = err
			if werr := l.waitRev(ctx, head); werr != nil {
				return nil, l.ctxErr(werr, uncertain, evs)
			}
			continue
		}
		res, err := l.commit(ctx, rev, out, fence)
		switch {
		case err == nil && res.ok:
			l.appends.Add(1)
			// Read your writes: wait until this Log has applied it. The
			// append is committed whatever happens here.
			if werr := l.waitRev(ctx, res.rev); werr != nil {
				l.log.Debug("append committed, not yet applied here", "revision", res.rev, "error", werr)
			}
			return out, nil
		case err == nil:
			// Someone else got in first (or this Log lost leadership).
			l.conflicts.Add(1)
			if fence != nil && res.fenced {
				l.elec.lost(fence)
				if !uncertain {
					return nil, eventlog.ErrNotLeader
				}
			}
			lastErr = fmt.Errorf("the head moved on to revision %d", res.rev)
			if err := l.waitRev(ctx, res.rev); err != nil {
				return nil, l.ctxErr(err, uncertain, evs)
			}
			if fence != nil && res.fenced {
				if got, ok := l.store.Committed(evs); ok {
					l.appends.Add(1)
					return got, nil
				}
				return nil, eventlog.ErrNotLeader
			}
			if attempt > 1 {
				sleep(ctx, backoff(attempt))
			}
		case isDefinite(err):
			if uncertain {
				// An earlier attempt's fate is still open: find it out.
				lastErr = err
				if err := l.syncRetry(ctx); err != nil {
					return nil, l.ctxErr(err, true, evs)
				}
				continue
			}
			return nil, fmt.Errorf("etcdlog: append: %w", err)
		default:
			// Unknown outcome. Catch up with etcd, then the lookup at the
			// top of the loop tells whether it was committed.
			uncertain, lastErr = true, err
			l.unknown.Add(1)
			l.log.Info("append outcome unknown, resolving", "id", evs[0].ID, "attempt", attempt, "error", err)
			if err := l.syncRetry(ctx); err != nil {
				return nil, l.ctxErr(err, true, evs)
			}
		}
	}
}

// commitResult is the outcome of one append transaction.
type commitResult struct {
	ok     bool  // committed
	rev    int64 // the revision it committed at, or the head's if it failed
	fenced bool  // failed because the leadership compare failed
}

// commit runs one append transaction of out (sequenced) on the head at rev.
func (l *Log) commit(ctx context.Context, rev int64, out []events.Event, fence *leadership) (commitResult, error) {
	ops := make([]clientv3.Op, 0, len(out)+1)
	for _, ev := range out {
		b, err := events.Encode(ev)
		if err != nil {
			return commitResult{}, err
		}
		ops = append(ops, clientv3.OpPut(l.EventKey(ev.Sequence), string(b)))
	}
	ops = append(ops, clientv3.OpPut(l.headKey, strconv.FormatUint(out[len(out)-1].Sequence, 10)))
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(l.headKey), "=", rev)}
	elseOps := []clientv3.Op{clientv3.OpGet(l.headKey)}
	if fence != nil {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(fence.key), "=", fence.rev))
		elseOps = append(elseOps, clientv3.OpGet(fence.key))
	}
	tctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	resp, err := l.cli.Txn(tctx).If(cmps...).Then(ops...).Else(elseOps...).Commit()
	if err != nil {
		return commitResult{}, err
	}
	if resp.Succeeded {
		return commitResult{ok: true, rev: resp.Header.Revision}, nil
	}
	res := commitResult{}
	if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
		res.rev = r.Kvs[0].ModRevision
	}
	if fence != nil {
		r := resp.Responses[1].GetResponseRange()
		res.fenced = r == nil || len(r.Kvs) == 0 || r.Kvs[0].CreateRevision != fence.rev
	}
	return res, nil
}

// isDefinite reports whether a failed transaction was certainly not
// committed: etcd refused the request itself.
func isDefinite(err error) bool {
	for _, e := range []error{rpctypes.ErrRequestTooLarge, rpctypes.ErrTooManyOps, rpctypes.ErrDuplicateKey, rpctypes.ErrGRPCRequestTooLarge, rpctypes.ErrGRPCTooManyOps} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ctxErr is the error of an append that must stop before it knows its
// outcome.
func (l *Log) ctxErr(err error, uncertain bool, evs []events.Event) error {
	if errors.Is(err, eventlog.ErrClosed) || errors.Is(err, ErrCorrupt) {
		return err
	}
	if uncertain {
		return fmt.Errorf("%w (first event id %s): %w", ErrUnknownOutcome, evs[0].ID, err)
	}
	return err
}

// projection returns a copy of the state and the head revision it is at.
func (l *Log) projection() (*state.State, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.store.State(), l.rev
}

// usable returns why the log cannot append, if it cannot.
func (l *Log) usable() error {
	if l.closed.Load() {
		return eventlog.ErrClosed
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken
}

// waitRev waits until the projection has applied the head at revision rev.
func (l *Log) waitRev(ctx context.Context, rev int64) error {
	for {
		l.mu.Lock()
		done, ch, broken := l.rev >= rev, l.revCh, l.broken
		l.mu.Unlock()
		switch {
		case done:
			return nil
		case broken != nil:
			return broken
		case l.closed.Load():
			return eventlog.ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.ctx.Done():
			return eventlog.ErrClosed
		}
	}
}

// Read returns applied events from this member's store.
func (l *Log) Read(ctx context.Context, from uint64, limit int) ([]events.Event, error) {
	return l.store.Read(from, limit)
}

// Watch follows applied events from this member's store.
func (l *Log) Watch(ctx context.Context, from uint64, fn func(events.Event) error) error {
	return l.store.Watch(ctx, from, fn)
}

// State returns a copy of this member's applied state.
func (l *Log) State(ctx context.Context) (*state.State, error) { return l.store.State(), nil }

// Sync waits until this member has applied everything committed before
// Sync was called: a linearizable read of the head's revision, then a wait
// for the projection to reach it.
func (l *Log) Sync(ctx context.Context) error {
	if err := l.usable(); err != nil {
		return err
	}
	rev, err := l.headRev(ctx)
	if err != nil {
		return err
	}
	return l.waitRev(ctx, rev)
}

// headRev returns the head's ModRevision (0 if the log is empty) by a
// linearizable read.
func (l *Log) headRev(ctx context.Context) (int64, error) {
	tctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	resp, err := l.cli.Get(tctx, l.headKey)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrGRPCNoLeader) {
			return 0, fmt.Errorf("%w: %v", eventlog.ErrNoLeader, err)
		}
		return 0, fmt.Errorf("etcdlog: reading the head: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return resp.Kvs[0].ModRevision, nil
}

// syncRetries bounds syncRetry: each try takes up to RequestTimeout.
const syncRetries = 10

// syncRetry syncs, retrying with backoff until it works, ctx ends or
// syncRetries tries failed.
func (l *Log) syncRetry(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := l.Sync(ctx)
		if err == nil || ctx.Err() != nil || errors.Is(err, eventlog.ErrClosed) || errors.Is(err, ErrCorrupt) || attempt == syncRetries {
			return err
		}
		l.log.Debug("sync failed, retrying", "attempt", attempt, "error", err)
		if !sleep(ctx, backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// backoff returns a jittered delay for the attempt: 1 ms doubling up to
// 100 ms.
func backoff(attempt int) time.Duration {
	d := time.Millisecond << min(attempt, 7)
	d = min(d, 100*time.Millisecond)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close stops following etcd, resigns leadership, wakes watchers with
// eventlog.ErrClosed and closes the client if the Log dialled it.
func (l *Log) Close() error { return l.shutdown(true) }

// Kill stops the Log as pulled power would: like Close, but leadership is
// not resigned; the election's lease stops being renewed and expires after
// ElectionTTL, and only then may another Log lead. For tests and the
// simulator.
func (l *Log) Kill() error { return l.shutdown(false) }

func (l *Log) shutdown(resign bool) error {
	if l.closed.Swap(true) {
		return nil
	}
	if l.elec != nil {
		l.elec.resign(resign)
	}
	l.cancel()
	l.wg.Wait()
	if l.elec != nil {
		l.elec.closeSubs()
	}
	l.store.Close()
	l.mu.Lock()
	close(l.revCh)
	l.revCh = make(chan struct{})
	l.mu.Unlock()
	if l.ownClient {
		if err := l.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("etcdlog: closing the client: %w", err)
		}
	}
	l.log.Info("event log closed")
	return nil
}
