package natstransport

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Snapshot message kinds (header Racklet-Raft-Op).
const (
	opBegin = "begin"
	opChunk = "chunk"
	opEnd   = "end"
	opAbort = "abort"
)

// finalTimeout is how long both sides wait for raft's answer after the last
// chunk: the receiver restores the FSM first, which grows with the size.
func finalTimeout(timeout time.Duration, size int64) time.Duration {
	d := timeout * time.Duration(size/timeoutScale)
	if d < timeout {
		d = timeout
	}
	return d
}

func snapshotMsg(subj, id, op string) *nats.Msg {
	m := &nats.Msg{Subject: subj, Header: nats.Header{}}
	m.Header.Set(hdrTransfer, id)
	m.Header.Set(hdrOp, op)
	return m
}

// sendSnapshot runs the sender side of a transfer: begin, chunks one at a
// time, each acknowledged, then end, whose reply is raft's response.
func (t *Transport) sendSnapshot(subj string, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) (err error) {
	id := nuid.Next()
	head, err := encode(args)
	if err != nil {
		return fmt.Errorf("encoding request: %w", err)
	}
	begin := snapshotMsg(subj, id, opBegin)
	begin.Data = head
	if err := t.ack(begin, t.timeout); err != nil {
		return fmt.Errorf("beginning transfer: %w", err)
	}
	defer func() {
		if err != nil {
			// Best effort: let the receiver free the transfer now rather
			// than after its idle timeout.
			if perr := t.nc.PublishMsg(snapshotMsg(subj, id, opAbort)); perr != nil {
				t.log.Debug("sending snapshot abort", "transfer", id, "error", perr)
			}
		}
	}()

	buf := make([]byte, t.chunkSize)
	for n := 0; ; n++ {
		k, rerr := io.ReadFull(data, buf)
		if k > 0 {
			chunk := snapshotMsg(subj, id, opChunk)
			chunk.Header.Set(hdrChunk, strconv.Itoa(n))
			chunk.Data = buf[:k]
			// The data is copied into the connection's buffer before
			// the request returns, so buf can be reused.
			if err := t.ack(chunk, t.timeout); err != nil {
				return fmt.Errorf("sending chunk %d: %w", n, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("reading snapshot: %w", rerr)
		}
	}

	reply, err := t.request(snapshotMsg(subj, id, opEnd), finalTimeout(t.timeout, args.Size))
	if err != nil {
		return fmt.Errorf("ending transfer: %w", err)
	}
	if err := decodeReply(reply, resp); err != nil {
		return fmt.Errorf("ending transfer: %w", err)
	}
	return nil
}

// ack sends msg and waits for an empty acknowledgement.
func (t *Transport) ack(msg *nats.Msg, timeout time.Duration) error {
	reply, err := t.request(msg, timeout)
	if err != nil {
		return err
	}
	return decodeReply(reply, nil)
}

// transfer is the receiver side of one snapshot transfer.
type transfer struct {
	id   string
	req  *raft.InstallSnapshotRequest
	msgs chan *nats.Msg // chunk and end messages, in order
	pr   *io.PipeReader
	pw   *io.PipeWriter

	once sync.Once
	done chan struct{} // closed on abort
	err  error
}

// abort fails the transfer: raft's read of the pipe returns err.
func (x *transfer) abort(err error) {
	x.once.Do(func() {
		x.err = err
		_ = x.pw.CloseWithError(err)
		close(x.done)
	})
}

// handleSnapshot dispatches snapshot messages. It never blocks: chunks are
// written by the transfer's own goroutine, so one stalled transfer never
// holds up another.
func (t *Transport) handleSnapshot(msg *nats.Msg) {
	id, op := msg.Header.Get(hdrTransfer), msg.Header.Get(hdrOp)
	if id == "" {
		t.respond(msg, nil, fmt.Errorf("%w: no transfer id", ErrBadMessage), "")
		return
	}
	if op == opBegin {
		t.beginTransfer(msg, id)
		return
	}
	t.mu.Lock()
	x := t.transfers[id]
	t.mu.Unlock()
	switch {
	case op == opAbort:
		if x != nil {
			x.abort(fmt.Errorf("%w: by sender", ErrSnapshotAborted))
		}
	case x == nil:
		t.respond(msg, nil, fmt.Errorf("%w: %s", ErrUnknownTransfer, id), "")
	case op == opChunk || op == opEnd:
		select {
		case x.msgs <- msg:
		default:
			// A sender waits for each ack, so this is a protocol error.
			err := fmt.Errorf("%w: too many unacknowledged messages", ErrBadMessage)
			x.abort(err)
			t.respond(msg, nil, err, "")
		}
	default:
		t.respond(msg, nil, fmt.Errorf("%w: unknown op %q", ErrBadMessage, op), "")
	}
}

func (t *Transport) beginTransfer(msg *nats.Msg, id string) {
	var req raft.InstallSnapshotRequest
	if err := decode(msg.Data, &req); err != nil {
		t.respond(msg, nil, fmt.Errorf("decoding installsnapshot: %w", err), "")
		return
	}
	pr, pw := io.Pipe()
	x := &transfer{id: id, req: &req, msgs: make(chan *nats.Msg, 2), pr: pr, pw: pw, done: make(chan struct{})}
	t.mu.Lock()
	var err error
	switch {
	case t.closed:
		err = ErrClosed
	case t.transfers[id] != nil:
		err = fmt.Errorf("%w: duplicate transfer %s", ErrBadMessage, id)
	case len(t.transfers) >= maxTransfers:
		err = fmt.Errorf("%w: too many snapshot transfers", ErrBusy)
	default:
		t.transfers[id] = x
		t.wg.Add(1)
	}
	t.mu.Unlock()
	if err != nil {
		t.respond(msg, nil, err, "")
		return
	}
	go t.runTransfer(x)
	t.respond(msg, nil, nil, "")
}

// runTransfer hands raft the RPC, feeds it the chunks and sends raft's
// response back. An idle watchdog and Close abort it, which unblocks both
// this goroutine and raft's reader.
func (t *Transport) runTransfer(x *transfer) {
	defer t.wg.Done()
	defer func() {
		t.mu.Lock()
		delete(t.transfers, x.id)
		t.mu.Unlock()
	}()
	log := t.log.With("transfer", x.id)
	watchdog := time.AfterFunc(t.idleTimeout, func() {
		x.abort(fmt.Errorf("%w: idle for %s", ErrSnapshotAborted, t.idleTimeout))
	})
	defer watchdog.Stop()
	stopOnClose := context.AfterFunc(t.ctx, func() { x.abort(ErrClosed) })
	defer stopOnClose()
	// Whatever happens, make sure raft's reader ends.
	defer x.abort(fmt.Errorf("%w: transfer ended", ErrSnapshotAborted))

	respCh := make(chan raft.RPCResponse, 1)
	select {
	case t.consumeCh <- raft.RPC{Command: x.req, Reader: x.pr, RespChan: respCh}:
	case <-x.done:
		log.Warn("snapshot transfer aborted before raft took it", "error", x.err)
		return
	}

	next := 0
	for {
		var msg *nats.Msg
		select {
		case msg = <-x.msgs:
		case <-x.done:
			log.Warn("snapshot transfer aborted", "error", x.err)
			return
		}
		watchdog.Reset(t.idleTimeout)
		switch msg.Header.Get(hdrOp) {
		case opChunk:
			if n, err := strconv.Atoi(msg.Header.Get(hdrChunk)); err != nil || n != next {
				err := fmt.Errorf("%w: chunk %q, want %d", ErrBadMessage, msg.Header.Get(hdrChunk), next)
				x.abort(err)
				t.respond(msg, nil, err, "")
				return
			}
			// Write returns once raft has read the whole chunk: that is
			// the backpressure.
			if _, err := x.pw.Write(msg.Data); err != nil {
				t.respond(msg, nil, fmt.Errorf("writing chunk %d: %w", next, err), "")
				return
			}
			next++
			watchdog.Reset(t.idleTimeout)
			t.respond(msg, nil, nil, "")
		case opEnd:
			watchdog.Stop()
			_ = x.pw.Close() // raft's reader sees EOF
			timer := time.NewTimer(finalTimeout(t.timeout, x.req.Size))
			defer timer.Stop()
			select {
			case resp := <-respCh:
				t.respond(msg, resp.Response, resp.Error, "")
			case <-timer.C:
				log.Warn("raft did not answer installsnapshot in time")
			case <-t.ctx.Done():
			}
			return
		}
	}
}
