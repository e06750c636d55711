package natstransport

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
)

// pipeline is an ordered AppendEntries pipeline to one peer.
//
// Why it is ordered and safe:
//   - Requests are published in order from one connection to one subject,
//     with one reply inbox, under a lock that also assigns their sequence
//     numbers. NATS keeps the order of messages from one publisher to one
//     subscriber, and the receiver handles its appendentries subscription
//     one message at a time and replies in that order.
//   - Every request carries a sequence number that the receiver echoes. The
//     decoder expects replies in exactly the order it sent the requests; any
//     reply with another (or no) sequence number, a lost reply (timeout
//     after Timeout) or a malformed reply breaks the pipeline: the waiting
//     futures fail, further AppendEntries calls fail, and raft falls back to
//     synchronous AppendEntries.
//   - At most MaxInFlight requests are waiting for their reply or for room
//     in the Consumer channel; AppendEntries blocks on that window
//     (backpressure).
type pipeline struct {
	t      *Transport
	target raft.ServerAddress
	subj   string
	inbox  string
	sub    *nats.Subscription

	// slots holds one token per request from its publication until its
	// future is handed to done; it bounds inflight, so sends on it never
	// block.
	slots    chan struct{}
	inflight chan *appendFuture
	done     chan raft.AppendFuture

	sendMu sync.Mutex
	seq    uint64

	ctx    context.Context // cancelled when the pipeline stops
	cancel context.CancelFunc

	stopMu  sync.Mutex
	stopErr error
}

func (t *Transport) newPipeline(target raft.ServerAddress, subj string) (*pipeline, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	inbox := t.nc.NewInbox()
	sub, err := t.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("subscribing to reply inbox: %w", err)
	}
	ctx, cancel := context.WithCancel(t.ctx)
	p := &pipeline{
		t:        t,
		target:   target,
		subj:     subj,
		inbox:    inbox,
		sub:      sub,
		slots:    make(chan struct{}, t.maxInFlight),
		inflight: make(chan *appendFuture, t.maxInFlight),
		done:     make(chan raft.AppendFuture, t.maxInFlight),
		ctx:      ctx,
		cancel:   cancel,
	}
	t.pipelines[p] = struct{}{}
	t.wg.Add(1)
	go p.decodeLoop()
	return p, nil
}

// AppendEntries implements raft.AppendPipeline.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if err := p.stopped(); err != nil {
		return nil, err
	}
	data, err := encode(args)
	if err != nil {
		return nil, fmt.Errorf("encoding appendentries: %w", err)
	}
	select {
	case p.slots <- struct{}{}:
	case <-p.ctx.Done():
		return nil, p.stopped()
	}

	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if err := p.stopped(); err != nil {
		<-p.slots
		return nil, err
	}
	p.seq++
	f := &appendFuture{start: time.Now(), seq: p.seq, args: args, resp: resp, ch: make(chan struct{})}
	msg := &nats.Msg{Subject: p.subj, Reply: p.inbox, Header: nats.Header{}, Data: data}
	msg.Header.Set(hdrSeq, strconv.FormatUint(f.seq, 10))
	if err := p.t.nc.PublishMsg(msg); err != nil {
		<-p.slots
		err = fmt.Errorf("publishing appendentries to %s: %w", p.target, err)
		p.stop(fmt.Errorf("%w: %w", ErrPipelineBroken, err))
		return nil, err
	}
	p.inflight <- f // cannot block: bounded by slots
	return f, nil
}

// Consumer implements raft.AppendPipeline.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close implements raft.AppendPipeline: it cancels in-flight requests.
func (p *pipeline) Close() error {
	p.stop(raft.ErrPipelineShutdown)
	return nil
}

// stop records why the pipeline stopped (the first reason wins) and stops it.
func (p *pipeline) stop(err error) {
	p.stopMu.Lock()
	first := p.stopErr == nil
	if first {
		p.stopErr = err
	}
	p.stopMu.Unlock()
	if !first {
		return
	}
	p.cancel()
	if uerr := p.sub.Unsubscribe(); uerr != nil {
		p.t.log.Debug("unsubscribing pipeline inbox", "error", uerr)
	}
	p.t.mu.Lock()
	delete(p.t.pipelines, p)
	p.t.mu.Unlock()
	if err != raft.ErrPipelineShutdown {
		p.t.log.Warn("pipeline broken, raft falls back to synchronous appendentries", "peer", string(p.target), "error", err)
	}
}

// stopped returns the reason the pipeline stopped, or nil.
func (p *pipeline) stopped() error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	if p.stopErr == nil && p.t.ctx.Err() != nil {
		return raft.ErrPipelineShutdown
	}
	return p.stopErr
}

// decodeLoop matches replies to requests, strictly in order.
func (p *pipeline) decodeLoop() {
	defer p.t.wg.Done()
	for {
		var f *appendFuture
		select {
		case f = <-p.inflight:
		case <-p.ctx.Done():
			p.failQueued()
			return
		}
		err := p.await(f)
		if err != nil {
			// A lost, late, out-of-order or failed reply: stop, fail this
			// and every queued request. Raft sees the failed responses,
			// closes the pipeline and replicates synchronously.
			p.stop(fmt.Errorf("%w: %w", ErrPipelineBroken, err))
			f.respond(err)
			p.deliver(f)
			p.failQueued()
			return
		}
		f.respond(err)
		p.deliver(f)
	}
}

// await waits for the reply to f, which must be the next one to arrive.
func (p *pipeline) await(f *appendFuture) error {
	ctx, cancel := context.WithDeadline(p.ctx, f.start.Add(p.t.timeout))
	defer cancel()
	msg, err := p.sub.NextMsgWithContext(ctx)
	if err != nil {
		if p.ctx.Err() != nil {
			if serr := p.stopped(); serr != nil {
				return serr
			}
		}
		return fmt.Errorf("waiting for appendentries reply %d: %w", f.seq, err)
	}
	if got := msg.Header.Get(hdrSeq); got != strconv.FormatUint(f.seq, 10) {
		if got == "" && len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
			return fmt.Errorf("appendentries %d: %w", f.seq, nats.ErrNoResponders)
		}
		return fmt.Errorf("%w: reply %q out of order, want %d", ErrBadMessage, got, f.seq)
	}
	return decodeReply(msg, f.resp)
}

// deliver hands f to raft and frees its slot. Once the pipeline has
// stopped it gives up when raft no longer reads done.
func (p *pipeline) deliver(f *appendFuture) {
	defer func() { <-p.slots }()
	select {
	case p.done <- f:
		return
	default:
	}
	select {
	case p.done <- f:
	case <-p.ctx.Done():
	}
}

// failQueued fails every request still waiting for a reply.
func (p *pipeline) failQueued() {
	err := p.stopped()
	for {
		select {
		case f := <-p.inflight:
			f.respond(err)
			p.deliver(f)
		default:
			return
		}
	}
}

// appendFuture implements raft.AppendFuture.
type appendFuture struct {
	start time.Time
	seq   uint64
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	err   error
	ch    chan struct{}
}

var _ raft.AppendFuture = (*appendFuture)(nil)

func (f *appendFuture) respond(err error) {
	f.err = err
	close(f.ch)
}

// Error implements raft.Future.
func (f *appendFuture) Error() error {
	<-f.ch
	return f.err
}

// Start implements raft.AppendFuture.
func (f *appendFuture) Start() time.Time { return f.start }

// Request implements raft.AppendFuture.
func (f *appendFuture) Request() *raft.AppendEntriesRequest { return f.args }

// Response implements raft.AppendFuture.
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }
