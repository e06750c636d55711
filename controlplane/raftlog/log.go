// Package raftlog is the rack's event log on hashicorp/raft: a durable log
// and stable store on disk (raft-boltdb, fsync'd before a write is
// acknowledged), file snapshots with compaction, an FSM that projects events
// into state (package eventlog's Store), membership (bootstrap, join,
// remove), writes forwarded to the leader, linearizable reads by read index,
// and the leader's in-order publication of committed events to NATS.
//
// The Raft transport is given by the caller: Raft over NATS
// (controlplane/natstransport) in rackd, raft.NetworkTransport (TCP) or
// raft's in-memory transport elsewhere. Member-to-member requests that are
// not Raft (forwarded appends, read index, join) always travel over NATS.
package raftlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/publish"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// Limits that keep one AppendEntries RPC within a transport message
// (natsserver.DefaultMaxPayload): at most MaxAppendEntries entries, each a
// batch of at most MaxBatchBytes.
const (
	MaxAppendEntries = 32
	MaxBatchBytes    = 128 << 10
)

// ErrBatchTooLarge: an append's encoded batch is over MaxBatchBytes.
var ErrBatchTooLarge = errors.New("raftlog: batch too large")

// Config configures one member's log.
type Config struct {
	// Name is the member's name: its Raft server ID and address.
	Name string
	// Rack names the rack (NATS subject namespace, event source).
	Rack string
	// DataDir holds raft.db (log and stable store), snapshots/ and the
	// published-sequence watermark.
	DataDir string
	// Transport carries Raft RPCs; the log closes it on Close.
	Transport raft.Transport
	// Conn is a NATS connection (to this member's embedded server) for
	// member-to-member requests and event publication.
	Conn *nats.Conn
	// Bootstrap starts a new cluster with this member as its only voter,
	// if the data dir holds no Raft state yet. Without it, a member with
	// no state asks the cluster to add it (join over NATS).
	Bootstrap bool

	// NATSURL and APIURL are advertised to other members (GET /v1/members).
	NATSURL, APIURL string

	// MemberSyncInterval is how often the leader checks that the log's
	// member events match the Raft configuration (default 5s); it also
	// checks on every join, removal and leadership change. Negative: only
	// then (conformance tests, which append member events of their own).
	MemberSyncInterval time.Duration

	// Retention is how many recent events stay readable (default
	// eventlog.DefaultRetention).
	Retention int
	// Raft tuning; zero values take the defaults below.
	HeartbeatTimeout   time.Duration // default DefaultHeartbeatTimeout
	ElectionTimeout    time.Duration // default DefaultElectionTimeout
	LeaderLeaseTimeout time.Duration // default 500ms, at most HeartbeatTimeout
	CommitTimeout      time.Duration // default 20ms
	SnapshotThreshold  uint64        // entries between snapshots, default 8192
	SnapshotInterval   time.Duration // how often to check, default 30s
	TrailingLogs       uint64        // entries kept after a snapshot, default 10240
	// NoSync skips fsync in the log store. Unsafe: for benchmarks of the
	// floor only.
	NoSync bool

	Registry prometheus.Registerer
	Logger   *slog.Logger
	// Logger should carry the member's name; RaftLogLevel filters
	// hashicorp/raft's own logs (default warn).
	RaftLogLevel slog.Level
}

// Raft timeouts when Config leaves them zero, for a rack LAN: a follower
// that has not heard from the leader for 250-500 ms starts an election, so
// a dead leader is replaced in about 0.5 s (p99 0.7 s on loopback;
// hashicorp/raft's own 1 s / 1 s take 2-3 s). Heartbeats bypass the disk
// (natstransport's fast path), so slow fsyncs do not cause elections. See
// benchmarks/README.md, "Failover".
const (
	DefaultHeartbeatTimeout = 250 * time.Millisecond
	DefaultElectionTimeout  = 250 * time.Millisecond
)

func (c *Config) setDefaults() error {
	if !events.ValidName(c.Name) {
		return fmt.Errorf("raftlog: invalid member name %q", c.Name)
	}
	if !events.ValidName(c.Rack) {
		return fmt.Errorf("raftlog: invalid rack name %q", c.Rack)
	}
	if c.DataDir == "" || c.Transport == nil || c.Conn == nil {
		return errors.New("raftlog: DataDir, Transport and Conn are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	// Raft requires the lease to be no longer than the heartbeat timeout.
	def(&c.LeaderLeaseTimeout, min(500*time.Millisecond, c.HeartbeatTimeout))
	def(&c.CommitTimeout, 20*time.Millisecond)
	def(&c.SnapshotInterval, 30*time.Second)
	def(&c.MemberSyncInterval, 5*time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RaftLogLevel == 0 {
		c.RaftLogLevel = slog.LevelWarn
	}
	return nil
}

// Log is one member's view of the replicated event log.
type Log struct {
	cfg     Config
	log     *slog.Logger
	raft    *raft.Raft
	store   *eventlog.Store
	fsm     *fsm
	logs    raft.LogStore
	bolt    *raftboltdb.BoltStore
	nc      *nats.Conn
	metrics *metrics
	source  string

	subsMu sync.Mutex
	subs   []*nats.Subscription
	// handlers bounds concurrent member-to-member request handlers.
	handlers chan struct{}

	leaderReady atomic.Bool // this member leads and has committed a barrier in its term
	leaderMu    sync.Mutex
	leaderSubs  []chan bool
	memberKick  chan struct{} // asks the leader to reconcile membership events

	// pub publishes committed events to NATS while this member leads
	// (package publish) and tracks the watermark all the time.
	pub *publish.Publisher

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

var (
	_ eventlog.Log    = (*Log)(nil)
	_ eventlog.Fenced = (*Log)(nil)
)

// Open opens (or creates) the member's data dir, starts Raft and, for a new
// member, bootstraps or joins.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	l := &Log{
		cfg:        cfg,
		log:        cfg.Logger,
		store:      eventlog.NewStore(cfg.Retention),
		nc:         cfg.Conn,
		metrics:    newMetrics(cfg.Registry),
		source:     events.Source(cfg.Rack, cfg.Name),
		handlers:   make(chan struct{}, 256),
		memberKick: make(chan struct{}, 1),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())

	var err error
	l.bolt, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db"), NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("opening raft log store: %w", err)
	}
	fail := func(err error) (*Log, error) {
		l.cancel()
		if l.pub != nil {
			_ = l.pub.Close()
		}
		_ = l.bolt.Close()
		return nil, err
	}
	l.logs, err = raft.NewLogCache(1024, l.bolt)
	if err != nil {
		return fail(fmt.Errorf("creating log cache: %w", err))
	}
	hl := newHCLog(cfg.Logger, "raft", slogToHCLevel(cfg.RaftLogLevel))
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 3, hl)
	if err != nil {
		return fail(fmt.Errorf("opening snapshot store: %w", err))
	}
	l.pub, err = publish.Open(publish.Config{
		Conn: cfg.Conn, Rack: cfg.Rack, Log: l.store, WatermarkPath: filepath.Join(cfg.DataDir, "published-sequence"),
		Published: l.metrics.published, Logger: l.log,
	})
	if err != nil {
		return fail(err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = MaxAppendEntries
	notify := make(chan bool, 8)
	rc.NotifyCh = notify

	existing, err := raft.HasExistingState(l.logs, l.bolt, snaps)
	if err != nil {
		return fail(fmt.Errorf("reading raft state: %w", err))
	}
	l.fsm = &fsm{store: l.store, metrics: l.metrics}
	l.raft, err = raft.NewRaft(rc, l.fsm, l.logs, l.bolt, snaps, cfg.Transport)
	if err != nil {
		return fail(fmt.Errorf("starting raft: %w", err))
	}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(newRaftCollector(l.raft)); err != nil {
			l.log.Warn("registering raft metrics", "err", err)
		}
	}
	if err := l.subscribe(); err != nil {
		_ = l.raft.Shutdown().Error()
		return fail(err)
	}

	l.wg.Add(1)
	go l.leadershipLoop(notify)

	switch {
	case existing:
		l.log.Info("restarting from data dir", "dir", cfg.DataDir)
		if err := l.serveJoins(); err != nil {
			_ = l.Kill()
			return nil, err
		}
	case cfg.Bootstrap:
		l.log.Info("bootstrapping a new cluster")
		f := l.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(cfg.Name), Suffrage: raft.Voter}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = l.Close()
			return nil, fmt.Errorf("bootstrapping: %w", err)
		}
		if err := l.serveJoins(); err != nil {
			_ = l.Kill()
			return nil, err
		}
	default:
		l.wg.Add(1)
		go l.joinLoop()
	}
	return l, nil
}

func slogToHCLevel(l slog.Level) hclog.Level {
	switch {
	case l <= slog.LevelDebug:
		return hclog.Debug
	case l <= slog.LevelInfo:
		return hclog.Info
	case l <= slog.LevelWarn:
		return hclog.Warn
	}
	return hclog.Error
}

// Raft exposes the underlying Raft instance (for tests and diagnostics).
func (l *Log) Raft() *raft.Raft { return l.raft }

// Name is this member's name.
func (l *Log) Name() string { return l.cfg.Name }

// Store is the applied store (read-only use).
func (l *Log) Store() *eventlog.Store { return l.store }

// IsLeader reports whether this member leads and can serve as leader.
func (l *Log) IsLeader() bool { return l.leaderReady.Load() }

// LeaderCh returns a channel that receives true when this member becomes
// the ready leader and false when it stops leading, starting with the
// current value. Only the latest value is kept for a slow reader. The
// channel is closed when the log closes. (reconcilers.Leadership)
func (l *Log) LeaderCh() <-chan bool {
	ch := make(chan bool, 1)
	l.leaderMu.Lock()
	defer l.leaderMu.Unlock()
	if l.closed.Load() {
		close(ch)
		return ch
	}
	ch <- l.leaderReady.Load()
	l.leaderSubs = append(l.leaderSubs, ch)
	return ch
}

func (l *Log) setLeader(v bool) {
	l.leaderMu.Lock()
	defer l.leaderMu.Unlock()
	if l.leaderReady.Swap(v) != v {
		for _, ch := range l.leaderSubs {
			select { // keep only the latest value
			case <-ch:
			default:
			}
			ch <- v
		}
	}
}

func (l *Log) closeLeaderSubs() {
	l.leaderMu.Lock()
	defer l.leaderMu.Unlock()
	for _, ch := range l.leaderSubs {
		close(ch)
	}
	l.leaderSubs = nil
}

// Append validates the events and commits them as one batch through the
// leader, wherever this member is.
func (l *Log) Append(ctx context.Context, evs ...events.Event) ([]events.Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	for i, ev := range evs {
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	cmd, err := command(evs)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		var out []events.Event
		err := l.leaderDo(ctx, opAppend, appendRequest{Events: evs}, &appendResponse{}, func(ctx context.Context) (any, error) {
			evs, err := l.propose(ctx, cmd)
			return appendResponse{Events: evs}, err
		}, func(res any) { out = res.(*appendResponse).Events })
		if errors.Is(err, errUnknownOutcome) && attempt < 5 {
			// Leadership changed while the batch was in flight. A read
			// index through the new leader, which has committed a barrier
			// in its term, settles it: the batch is in the log now or it
			// never will be. Then it is safe to try again.
			if serr := l.Sync(ctx); serr != nil {
				return nil, fmt.Errorf("%w (and could not find out: %v)", err, serr)
			}
			if got, ok := l.store.Committed(evs); ok {
				out, err = got, nil
			} else {
				l.log.Info("retrying an append whose leader was lost", "id", evs[0].ID, "attempt", attempt)
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		l.metrics.appendDuration.Observe(time.Since(start).Seconds())
		return out, nil
	}
}

// AppendFenced commits the events only if this member is the ready leader,
// without forwarding: a deposed leader gets eventlog.ErrNotLeader and
// cannot have its events committed (Raft refuses a stale leader).
func (l *Log) AppendFenced(ctx context.Context, evs ...events.Event) ([]events.Event, error) {
	for i, ev := range evs {
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	if !l.leaderReady.Load() {
		return nil, eventlog.ErrNotLeader
	}
	out, err := l.applyLocal(ctx, evs)
	if errors.Is(err, errNotLeader) {
		return nil, eventlog.ErrNotLeader
	}
	return out, err
}

// command encodes a batch as a Raft entry, within MaxBatchBytes.
func command(evs []events.Event) ([]byte, error) {
	cmd, err := encodeCommand(evs)
	if err != nil {
		return nil, err
	}
	if len(cmd) > MaxBatchBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d; append fewer events at once", ErrBatchTooLarge, len(cmd), MaxBatchBytes)
	}
	return cmd, nil
}

// applyLocal proposes a batch on this member, which must be the leader.
func (l *Log) applyLocal(ctx context.Context, evs []events.Event) ([]events.Event, error) {
	cmd, err := command(evs)
	if err != nil {
		return nil, err
	}
	return l.propose(ctx, cmd)
}

// propose proposes an encoded batch on this member, which must be the
// leader, and waits until it is applied.
func (l *Log) propose(ctx context.Context, cmd []byte) ([]events.Event, error) {
	if l.raft.State() != raft.Leader {
		return nil, errNotLeader
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := l.raft.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout):
			// Refused before it entered the log: safe to retry.
			return nil, errNotLeader
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, eventlog.ErrClosed
		default:
			return nil, fmt.Errorf("%w: %v", errUnknownOutcome, err)
		}
	}
	res, _ := f.Response().(applyResult)
	if res.err != nil {
		return nil, res.err
	}
	return res.events, nil
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

// Sync waits until this member has applied everything the leader had
// committed when Sync was called (read index), so a following read is
// linearizable.
func (l *Log) Sync(ctx context.Context) error {
	var idx indexResponse
	err := l.leaderDo(ctx, opReadIndex, struct{}{}, &idx, func(ctx context.Context) (any, error) {
		i, err := l.localReadIndex(ctx)
		return indexResponse{Index: i}, err
	}, func(res any) { idx = *res.(*indexResponse) })
	if err != nil {
		return err
	}
	return l.waitApplied(ctx, idx.Index)
}

func (l *Log) localReadIndex(ctx context.Context) (uint64, error) {
	if l.raft.State() != raft.Leader || !l.leaderReady.Load() {
		return 0, errNotLeader
	}
	idx := l.raft.CommitIndex()
	if err := l.wait(ctx, l.raft.VerifyLeader()); err != nil {
		return 0, errNotLeader
	}
	return idx, nil
}

// wait waits for a raft future, but no longer than ctx or the log's life.
// Some of raft's futures (VerifyLeader's) are never answered once raft has
// shut down; waiting on one alone would hold Close or Kill forever. The
// goroutine left behind on such a future is not tracked and ends with the
// process.
func (l *Log) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-l.ctx.Done():
		return eventlog.ErrClosed
	}
}

// waitApplied waits until the FSM has applied every entry up to idx.
// Entries that never reach the FSM (no-ops, barriers) count as applied once
// raft has dispatched them.
func (l *Log) waitApplied(ctx context.Context, idx uint64) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !l.appliedThrough(idx) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting to apply index %d: %w", idx, ctx.Err())
		case <-l.ctx.Done():
			return eventlog.ErrClosed
		case <-t.C:
		}
	}
	return nil
}

func (l *Log) appliedThrough(idx uint64) bool {
	fsmAt := l.fsm.applied.Load()
	if fsmAt >= idx {
		return true
	}
	if l.raft.AppliedIndex() < idx || idx-fsmAt > 64 {
		return false
	}
	// Dispatched but maybe not applied: done if nothing between the FSM's
	// index and idx is for the FSM.
	var e raft.Log
	for i := fsmAt + 1; i <= idx; i++ {
		if err := l.logs.GetLog(i, &e); err != nil {
			return false
		}
		if e.Type == raft.LogCommand || e.Type == raft.LogConfiguration {
			return l.fsm.applied.Load() >= idx
		}
	}
	return true
}

// leaderDo runs op on the leader: locally if this member leads, else by a
// NATS request to the leader. It retries while no leader is known or the
// one asked has stepped down, until ctx ends or noLeaderWait passes.
func (l *Log) leaderDo(ctx context.Context, op string, req, resp any, local func(context.Context) (any, error), done func(any)) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	noLeaderUntil := time.Now().Add(l.noLeaderWait())
	backoff := 5 * time.Millisecond
	for {
		if l.closed.Load() {
			return eventlog.ErrClosed
		}
		var err error
		_, leaderID := l.raft.LeaderWithID()
		switch {
		case leaderID == raft.ServerID(l.cfg.Name):
			var res any
			res, err = local(ctx)
			if err == nil {
				// Hand the local result over through the same shape as a
				// remote one.
				done(pointerTo(res))
				return nil
			}
		case leaderID != "":
			err = l.requestWhileLeader(ctx, leaderID, memberSubject(l.cfg.Rack, string(leaderID), op), req, resp)
			if err == nil {
				done(resp)
				return nil
			}
			if errors.Is(err, nats.ErrNoResponders) {
				err = errNotLeader // the leader is gone; nothing was delivered
			}
			if errors.Is(err, errUnknownOutcome) && op != opAppend {
				err = errNotLeader // the other operations are safe to repeat
			}
		default:
			err = errNotLeader
		}
		if !errors.Is(err, errNotLeader) {
			return err
		}
		if time.Now().After(noLeaderUntil) {
			return fmt.Errorf("%w: none elected or reachable from %s; retry in a few seconds", eventlog.ErrNoLeader, l.cfg.Name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: none elected or reachable from %s before the deadline: %v", eventlog.ErrNoLeader, l.cfg.Name, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

// requestWhileLeader sends a request to leader and gives up on it as soon
// as another member leads: the one asked was deposed or died, and its
// answer may never come (NATS can take ~30 s to notice a dead route, and
// the request would wait for the caller's whole deadline). The outcome is
// then unknown: an append settles it through the new leader.
func (l *Log) requestWhileLeader(ctx context.Context, leader raft.ServerID, subject string, req, resp any) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.request(rctx, subject, req, resp) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if _, id := l.raft.LeaderWithID(); id != "" && id != leader {
				cancel()
				<-done // resp is not written after we return
				return fmt.Errorf("%w: leader %s was replaced by %s while it had the request", errUnknownOutcome, leader, id)
			}
		}
	}
}

// noLeaderWait is how long an operation waits for a leader to appear:
// long enough to ride out one election.
func (l *Log) noLeaderWait() time.Duration {
	return 3*l.cfg.ElectionTimeout + time.Second
}

// pointerTo turns a local result value into the pointer a remote call
// would have filled.
func pointerTo(v any) any {
	switch r := v.(type) {
	case appendResponse:
		return &r
	case indexResponse:
		return &r
	}
	return v
}

// Close shuts the member's log down cleanly: a leader first hands
// leadership over so the rack does not wait for an election timeout.
func (l *Log) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	if l.raft.State() == raft.Leader {
		if err := l.raft.LeadershipTransfer().Error(); err != nil {
			l.log.Info("no leadership transfer on shutdown", "err", err)
		}
	}
	return l.shutdown()
}

// Kill stops the member abruptly, as if its power were pulled: no
// leadership transfer. The data dir stays as it was. For tests and the
// simulator.
func (l *Log) Kill() error {
	if l.closed.Swap(true) {
		return nil
	}
	return l.shutdown()
}

func (l *Log) shutdown() error {
	l.subsMu.Lock()
	for _, s := range l.subs {
		_ = s.Unsubscribe()
	}
	l.subs = nil
	l.subsMu.Unlock()
	l.cancel()
	errs := []error{}
	if err := l.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("shutting down raft: %w", err))
	}
	l.setLeader(false)
	l.closeLeaderSubs()
	l.store.Close()
	l.wg.Wait()
	if c, ok := l.cfg.Transport.(io.Closer); ok {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing transport: %w", err))
		}
	}
	if err := l.bolt.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing raft log store: %w", err))
	}
	if err := l.pub.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// FirstIndex is the first index in this member's Raft log store (entries
// before it were compacted into a snapshot). Diagnostic.
func (l *Log) FirstIndex() (uint64, error) { return l.bolt.FirstIndex() }
