package natstransport

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
)

// Each handler runs on its subscription's own delivery goroutine, one
// message at a time, so requests on one subject are handled in order.

func (t *Transport) handleHeartbeat(msg *nats.Msg) {
	t.serve(msg, &raft.AppendEntriesRequest{}, rpcHeartbeat, true)
}

func (t *Transport) handleAppendEntries(msg *nats.Msg) {
	t.serve(msg, &raft.AppendEntriesRequest{}, rpcAppendEntries, false)
}

func (t *Transport) handleRequestVote(msg *nats.Msg) {
	t.serve(msg, &raft.RequestVoteRequest{}, rpcRequestVote, false)
}

func (t *Transport) handlePreVote(msg *nats.Msg) {
	t.serve(msg, &raft.RequestPreVoteRequest{}, rpcPreVote, false)
}

func (t *Transport) handleTimeoutNow(msg *nats.Msg) {
	t.serve(msg, &raft.TimeoutNowRequest{}, rpcTimeoutNow, false)
}

// serve decodes msg into cmd, hands it to raft (the heartbeat handler if
// fastPath and one is set, else the consumer channel), waits for raft's
// answer and replies.
func (t *Transport) serve(msg *nats.Msg, cmd any, rpcName string, fastPath bool) {
	if msg.Reply == "" {
		return
	}
	seq := msg.Header.Get(hdrSeq)
	if err := decode(msg.Data, cmd); err != nil {
		t.log.Warn("dropping malformed request", "rpc", rpcName, "error", err)
		t.respond(msg, nil, fmt.Errorf("decoding %s: %w", rpcName, err), seq)
		return
	}
	if rpcName == rpcHeartbeat {
		// The heartbeat test needs the decoded request.
		fastPath = isHeartbeat(cmd.(*raft.AppendEntriesRequest))
	}
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: cmd, RespChan: respCh}

	fn := t.heartbeatFn()
	if fastPath && fn != nil {
		fn(rpc)
	} else {
		// The sender waits at most Timeout, so there is no point in
		// queueing longer than that.
		timer := time.NewTimer(t.timeout)
		select {
		case t.consumeCh <- rpc:
			timer.Stop()
		case <-timer.C:
			t.respond(msg, nil, ErrBusy, seq)
			return
		case <-t.ctx.Done():
			return
		}
	}
	select {
	case resp := <-respCh:
		t.respond(msg, resp.Response, resp.Error, seq)
	case <-t.ctx.Done():
	}
}

func (t *Transport) respond(msg *nats.Msg, resp any, err error, seq string) {
	if rerr := msg.RespondMsg(replyMsg(resp, err, seq)); rerr != nil {
		t.log.Debug("sending reply failed", "subject", msg.Subject, "error", rerr)
	}
}
