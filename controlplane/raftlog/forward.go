package raftlog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/events"
)

// subscribe answers this member's member-to-member operations and, in a
// queue group shared by all members, join requests from newcomers.
func (l *Log) subscribe() error {
	rack, name := l.cfg.Rack, l.cfg.Name
	handle := func(op string, fn func(ctx context.Context, data []byte) (any, error)) error {
		sub, err := l.nc.Subscribe(memberSubject(rack, name, op), l.handler(fn))
		if err != nil {
			return fmt.Errorf("subscribing to %s: %w", op, err)
		}
		l.subs = append(l.subs, sub)
		return nil
	}
	if err := handle(opAppend, l.handleAppend); err != nil {
		return err
	}
	if err := handle(opReadIndex, func(ctx context.Context, _ []byte) (any, error) {
		i, err := l.localReadIndex(ctx)
		return indexResponse{Index: i}, err
	}); err != nil {
		return err
	}
	if err := handle(opJoin, l.handleJoin); err != nil {
		return err
	}
	if err := handle(opRemove, l.handleRemove); err != nil {
		return err
	}
	if err := handle(opInfo, func(context.Context, []byte) (any, error) { return l.info(), nil }); err != nil {
		return err
	}
	return l.nc.Flush()
}

// serveJoins answers newcomers' join requests in the queue group of all
// members. Only a member that is in a Raft configuration serves it, so a
// request never lands on another newcomer that knows no leader.
func (l *Log) serveJoins() error {
	sub, err := l.nc.QueueSubscribe(joinSubject(l.cfg.Rack), "members", l.handler(func(ctx context.Context, data []byte) (any, error) {
		var req joinRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return nil, fmt.Errorf("decoding join request: %w", err)
		}
		// Any member takes a newcomer's request to the leader.
		err := l.leaderDo(ctx, opJoin, req, nil, func(ctx context.Context) (any, error) {
			return nil, l.addVoter(ctx, req)
		}, func(any) {})
		return nil, err
	}))
	if err != nil {
		return fmt.Errorf("subscribing to joins: %w", err)
	}
	l.subsMu.Lock()
	l.subs = append(l.subs, sub)
	l.subsMu.Unlock()
	return l.nc.Flush()
}

// handler runs fn for each request in its own goroutine (bounded), so a
// slow commit never holds up the next request, and replies.
func (l *Log) handler(fn func(ctx context.Context, data []byte) (any, error)) nats.MsgHandler {
	return func(m *nats.Msg) {
		select {
		case l.handlers <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-l.handlers }()
			ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
			defer cancel()
			res, err := fn(ctx, m.Data)
			if m.Reply != "" {
				if rerr := m.Respond(encodeReply(res, err)); rerr != nil {
					l.log.Debug("replying to member request", "subject", m.Subject, "err", rerr)
				}
			}
		}()
	}
}

func (l *Log) handleAppend(ctx context.Context, data []byte) (any, error) {
	var req appendRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, &events.FieldError{Field: "events", Reason: "not a JSON list of events: " + err.Error()}
	}
	for i, ev := range req.Events {
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	evs, err := l.applyLocal(ctx, req.Events)
	return appendResponse{Events: evs}, err
}

func (l *Log) handleJoin(ctx context.Context, data []byte) (any, error) {
	var req joinRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("decoding join request: %w", err)
	}
	if l.raft.State() != raft.Leader {
		return nil, errNotLeader
	}
	return nil, l.addVoter(ctx, req)
}

func (l *Log) handleRemove(ctx context.Context, data []byte) (any, error) {
	var req removeRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("decoding remove request: %w", err)
	}
	if l.raft.State() != raft.Leader {
		return nil, errNotLeader
	}
	return nil, l.removeServer(ctx, req.Name)
}

// request sends a member-to-member request and decodes the reply.
func (l *Log) request(ctx context.Context, subject string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding request: %w", err)
	}
	m, err := l.nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return fmt.Errorf("requesting %s: %w", subject, err)
	}
	return decodeReply(m.Data, resp)
}

func (l *Log) info() infoResponse {
	return infoResponse{
		Name:         l.cfg.Name,
		NATSURL:      l.cfg.NATSURL,
		APIURL:       l.cfg.APIURL,
		AppliedIndex: l.raft.AppliedIndex(),
		CommitIndex:  l.raft.CommitIndex(),
		State:        l.raft.State().String(),
	}
}
