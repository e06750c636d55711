package eventlog

import (
	"context"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// Mem is a single-process, unreplicated Log over a Store: the reference
// implementation of the conformance suite, and a log for tests of consumers
// that do not care about replication.
type Mem struct{ store *Store }

var (
	_ Log    = (*Mem)(nil)
	_ Fenced = (*Mem)(nil)
)

// NewMem returns an empty in-memory log.
func NewMem(retention int) *Mem { return &Mem{store: NewStore(retention)} }

func (m *Mem) Append(ctx context.Context, evs ...events.Event) ([]events.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m.store.Apply(evs)
}

func (m *Mem) Read(ctx context.Context, from uint64, limit int) ([]events.Event, error) {
	return m.store.Read(from, limit)
}

func (m *Mem) Watch(ctx context.Context, from uint64, fn func(events.Event) error) error {
	return m.store.Watch(ctx, from, fn)
}

func (m *Mem) State(ctx context.Context) (*state.State, error) { return m.store.State(), nil }

func (m *Mem) Sync(ctx context.Context) error { return ctx.Err() }

// Close stops watchers.
func (m *Mem) Close() error { m.store.Close(); return nil }

// AppendFenced appends: a single-process log is always its own leader.
func (m *Mem) AppendFenced(ctx context.Context, evs ...events.Event) ([]events.Event, error) {
	return m.Append(ctx, evs...)
}
