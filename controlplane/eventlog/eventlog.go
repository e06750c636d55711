// Package eventlog defines the rack's event log: the interface every
// implementation provides (Raft over NATS, Raft over TCP, embedded etcd, an
// in-memory reference), the applied Store they share, and errors.
//
// The conformance suite in eventlogtest runs against every implementation.
package eventlog

import (
	"context"
	"errors"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// Log is a totally ordered, replicated log of rack events and the state
// projected from it.
type Log interface {
	// Append commits the events atomically and in order, or none of them.
	// It returns them as committed, with their sequences. A batch that does
	// not fit the state (see package state) is rejected with the reason.
	Append(ctx context.Context, evs ...events.Event) ([]events.Event, error)
	// Read returns up to limit committed events with sequence >= from, in
	// order, from this member's applied log. limit <= 0 means no limit.
	Read(ctx context.Context, from uint64, limit int) ([]events.Event, error)
	// Watch calls fn with every event with sequence >= from, in order, as
	// they are applied, until ctx ends (returns ctx.Err()) or fn returns an
	// error (returned as is).
	Watch(ctx context.Context, from uint64, fn func(events.Event) error) error
	// State returns a copy of this member's applied state.
	State(ctx context.Context) (*state.State, error)
	// Sync waits until this member has applied everything committed
	// before Sync was called, so that a following Read or State is
	// linearizable.
	Sync(ctx context.Context) error
}

// Fenced is the optional capability of replicated logs to append only as
// the leader: never forwarded, so a member that lost leadership cannot get
// an event committed. Reconcilers commit their intent (action.started)
// this way before they touch hardware: a deposed leader cannot act.
type Fenced interface {
	AppendFenced(ctx context.Context, evs ...events.Event) ([]events.Event, error)
}

// Errors of every implementation.
var (
	// ErrNoLeader: no leader is known or reachable; retry later.
	ErrNoLeader = errors.New("eventlog: no leader")
	// ErrNotLeader: a fenced append on a member that is not the leader.
	ErrNotLeader = errors.New("eventlog: not the leader")
	// ErrCompacted: the events asked for are older than the log keeps.
	ErrCompacted = errors.New("eventlog: events compacted")
	// ErrClosed: the log was shut down.
	ErrClosed = errors.New("eventlog: closed")
)
