package natstransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
)

// Defaults for Config.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultChunkSize   = 256 * 1024
	DefaultMaxInFlight = 8

	// maxTransfers bounds concurrent inbound snapshot transfers.
	maxTransfers = 4
	// headerRoom is the payload we keep free for NATS headers and framing
	// when checking ChunkSize against the server's max payload.
	headerRoom = 4 * 1024
	// timeoutScale mirrors raft.DefaultTimeoutScale: the wait for the final
	// InstallSnapshot response grows by one Timeout per timeoutScale bytes,
	// because the receiver restores the FSM before it answers.
	timeoutScale = 256 * 1024
)

// RPC names, the last token of a subject.
const (
	rpcHeartbeat     = "heartbeat"
	rpcAppendEntries = "appendentries"
	rpcRequestVote   = "requestvote"
	rpcPreVote       = "prevote"
	rpcTimeoutNow    = "timeoutnow"
	rpcSnapshot      = "snapshot"
)

// Header keys.
const (
	hdrError    = "Racklet-Raft-Error"
	hdrSeq      = "Racklet-Raft-Seq"
	hdrTransfer = "Racklet-Raft-Transfer"
	hdrOp       = "Racklet-Raft-Op"
	hdrChunk    = "Racklet-Raft-Chunk"
)

// Sentinel errors.
var (
	ErrClosed          = errors.New("natstransport: transport closed")
	ErrInvalidConfig   = errors.New("natstransport: invalid config")
	ErrInvalidAddress  = errors.New("natstransport: invalid address")
	ErrRemote          = errors.New("natstransport: remote error")
	ErrBadMessage      = errors.New("natstransport: malformed message")
	ErrBusy            = errors.New("natstransport: consumer busy")
	ErrPipelineBroken  = errors.New("natstransport: pipeline broken")
	ErrSnapshotAborted = errors.New("natstransport: snapshot transfer aborted")
	ErrUnknownTransfer = errors.New("natstransport: unknown snapshot transfer")
)

var nameRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// Config configures a Transport.
type Config struct {
	// Conn is the connection to the local member's embedded server. The
	// caller owns it; Close does not close it.
	Conn *nats.Conn
	// Rack is the subject namespace ([a-z0-9-]{1,63}).
	Rack string
	// Addr is this member's address, its name ([a-z0-9-]{1,63}).
	Addr raft.ServerAddress
	// Timeout bounds every RPC; for InstallSnapshot it bounds each chunk.
	// Default DefaultTimeout.
	Timeout time.Duration
	// ChunkSize is the snapshot chunk size, default DefaultChunkSize. It must
	// stay below the server's max payload.
	ChunkSize int
	// MaxInFlight is the AppendEntries pipeline window, default
	// DefaultMaxInFlight. 1 disables pipelining.
	MaxInFlight int
	// SnapshotIdleTimeout is how long a receiver keeps a snapshot transfer
	// without progress before aborting it. Default 2×Timeout.
	SnapshotIdleTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Transport is a raft.Transport over NATS request/reply.
type Transport struct {
	nc          *nats.Conn
	rack        string
	addr        raft.ServerAddress
	timeout     time.Duration
	chunkSize   int
	maxInFlight int
	idleTimeout time.Duration
	log         *slog.Logger

	consumeCh chan raft.RPC

	hbMu sync.RWMutex
	hbFn func(raft.RPC)

	// ctx is cancelled by Close; every pending call and goroutine watches it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	subs      []*nats.Subscription
	pipelines map[*pipeline]struct{}
	transfers map[string]*transfer
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
)

// New validates cfg, subscribes to this member's subjects and returns the
// transport.
func New(cfg Config) (*Transport, error) {
	if cfg.Conn == nil {
		return nil, fmt.Errorf("%w: no connection", ErrInvalidConfig)
	}
	if !nameRE.MatchString(cfg.Rack) {
		return nil, fmt.Errorf("%w: rack %q", ErrInvalidConfig, cfg.Rack)
	}
	if !nameRE.MatchString(string(cfg.Addr)) {
		return nil, fmt.Errorf("%w: addr %q", ErrInvalidConfig, cfg.Addr)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if max := cfg.Conn.MaxPayload(); max > 0 && int64(cfg.ChunkSize)+headerRoom > max {
		return nil, fmt.Errorf("%w: chunk size %d too large for max payload %d", ErrInvalidConfig, cfg.ChunkSize, max)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.SnapshotIdleTimeout <= 0 {
		cfg.SnapshotIdleTimeout = 2 * cfg.Timeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		nc:          cfg.Conn,
		rack:        cfg.Rack,
		addr:        cfg.Addr,
		timeout:     cfg.Timeout,
		chunkSize:   cfg.ChunkSize,
		maxInFlight: cfg.MaxInFlight,
		idleTimeout: cfg.SnapshotIdleTimeout,
		log:         cfg.Logger.With("component", "natstransport", "addr", string(cfg.Addr)),
		consumeCh:   make(chan raft.RPC),
		ctx:         ctx,
		cancel:      cancel,
		pipelines:   make(map[*pipeline]struct{}),
		transfers:   make(map[string]*transfer),
	}
	handlers := []struct {
		rpc string
		fn  nats.MsgHandler
	}{
		{rpcHeartbeat, t.handleHeartbeat},
		{rpcAppendEntries, t.handleAppendEntries},
		{rpcRequestVote, t.handleRequestVote},
		{rpcPreVote, t.handlePreVote},
		{rpcTimeoutNow, t.handleTimeoutNow},
		{rpcSnapshot, t.handleSnapshot},
	}
	for _, h := range handlers {
		sub, err := t.nc.Subscribe(t.subject(t.addr, h.rpc), h.fn)
		if err != nil {
			_ = t.Close()
			return nil, fmt.Errorf("subscribing to %s: %w", h.rpc, err)
		}
		t.subs = append(t.subs, sub)
	}
	// Make sure the server knows our interest before raft starts talking.
	if err := t.nc.FlushTimeout(t.timeout); err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("flushing subscriptions: %w", err)
	}
	return t, nil
}

func (t *Transport) subject(addr raft.ServerAddress, rpc string) string {
	return "racklet." + t.rack + ".raft." + string(addr) + "." + rpc
}

// target returns the subject for rpc at addr, validating addr.
func (t *Transport) target(addr raft.ServerAddress, rpc string) (string, error) {
	if !nameRE.MatchString(string(addr)) {
		return "", fmt.Errorf("%w: %q", ErrInvalidAddress, addr)
	}
	return t.subject(addr, rpc), nil
}

// Consumer implements raft.Transport.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumeCh }

// LocalAddr implements raft.Transport.
func (t *Transport) LocalAddr() raft.ServerAddress { return t.addr }

// EncodePeer implements raft.Transport.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (t *Transport) DecodePeer(buf []byte) raft.ServerAddress { return raft.ServerAddress(buf) }

// SetHeartbeatHandler implements raft.Transport.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.hbMu.Lock()
	defer t.hbMu.Unlock()
	t.hbFn = cb
}

func (t *Transport) heartbeatFn() func(raft.RPC) {
	t.hbMu.RLock()
	defer t.hbMu.RUnlock()
	return t.hbFn
}

// AppendEntries implements raft.Transport. Heartbeats go to the heartbeat
// subject so they never wait behind a disk write.
func (t *Transport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	rpc := rpcAppendEntries
	if isHeartbeat(args) {
		rpc = rpcHeartbeat
	}
	return t.call(target, rpc, args, resp)
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return t.call(target, rpcRequestVote, args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (t *Transport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.call(target, rpcPreVote, args, resp)
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return t.call(target, rpcTimeoutNow, args, resp)
}

// InstallSnapshot implements raft.Transport; see the package comment for
// the protocol.
func (t *Transport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	subj, err := t.target(target, rpcSnapshot)
	if err != nil {
		return fmt.Errorf("sending snapshot to %s: %w", target, err)
	}
	if err := t.sendSnapshot(subj, args, resp, data); err != nil {
		return fmt.Errorf("sending snapshot to %s: %w", target, err)
	}
	return nil
}

// AppendEntriesPipeline implements raft.Transport; see pipeline.go.
func (t *Transport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if t.maxInFlight < 2 {
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	subj, err := t.target(target, rpcAppendEntries)
	if err != nil {
		return nil, fmt.Errorf("opening pipeline to %s: %w", target, err)
	}
	p, err := t.newPipeline(target, subj)
	if err != nil {
		return nil, fmt.Errorf("opening pipeline to %s: %w", target, err)
	}
	return p, nil
}

// call sends one request and decodes its reply into resp.
func (t *Transport) call(target raft.ServerAddress, rpc string, args, resp any) error {
	subj, err := t.target(target, rpc)
	if err != nil {
		return fmt.Errorf("sending %s to %s: %w", rpc, target, err)
	}
	data, err := encode(args)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", rpc, err)
	}
	reply, err := t.request(&nats.Msg{Subject: subj, Data: data}, t.timeout)
	if err != nil {
		return fmt.Errorf("sending %s to %s: %w", rpc, target, err)
	}
	if err := decodeReply(reply, resp); err != nil {
		return fmt.Errorf("%s to %s: %w", rpc, target, err)
	}
	return nil
}

// request sends msg and waits for its reply, at most timeout, and no longer
// than the transport lives.
func (t *Transport) request(msg *nats.Msg, timeout time.Duration) (*nats.Msg, error) {
	if t.isClosed() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	reply, err := t.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		if t.ctx.Err() != nil {
			return nil, ErrClosed
		}
		return nil, err
	}
	return reply, nil
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Close implements raft.WithClose: it unsubscribes, aborts snapshot
// transfers, closes pipelines, makes pending calls fail with ErrClosed and
// waits for the transport's goroutines. The NATS connection stays open.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	subs := t.subs
	t.subs = nil
	pipes := make([]*pipeline, 0, len(t.pipelines))
	for p := range t.pipelines {
		pipes = append(pipes, p)
	}
	t.mu.Unlock()

	t.cancel()
	var errs []error
	for _, s := range subs {
		if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, fmt.Errorf("unsubscribing %s: %w", s.Subject, err))
		}
	}
	for _, p := range pipes {
		_ = p.Close()
	}
	t.wg.Wait()
	return errors.Join(errs...)
}

// isHeartbeat reports whether req is a heartbeat, with the same test as
// raft's NetworkTransport.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leader := req.RPCHeader.Addr
	if len(leader) == 0 {
		leader = req.Leader
	}
	return req.Term != 0 && leader != nil &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}
