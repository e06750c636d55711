package raftlog

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/events"
)

// commandVersion prefixes every Raft log entry this package writes, so the
// format can change without misreading old logs.
const commandVersion byte = 1

// encodeCommand turns a batch of events into a Raft log entry.
func encodeCommand(evs []events.Event) ([]byte, error) {
	b, err := json.Marshal(evs)
	if err != nil {
		return nil, fmt.Errorf("encoding command: %w", err)
	}
	return append([]byte{commandVersion}, b...), nil
}

func decodeCommand(b []byte) ([]events.Event, error) {
	if len(b) == 0 || b[0] != commandVersion {
		return nil, fmt.Errorf("decoding command: unknown version")
	}
	var evs []events.Event
	if err := json.Unmarshal(b[1:], &evs); err != nil {
		return nil, fmt.Errorf("decoding command: %w", err)
	}
	return evs, nil
}

// applyResult is what FSM.Apply returns through raft's ApplyFuture.
type applyResult struct {
	events []events.Event
	err    error
}

// fsm applies committed Raft entries to the Store. Apply is deterministic:
// the same entries give the same state and sequences on every member, and
// a batch that does not fit the state is rejected the same way everywhere.
// Rebuilding after a restart is always Restore(latest snapshot) followed by
// Apply of the log tail: one code path.
type fsm struct {
	store   *eventlog.Store
	metrics *metrics
}

var _ raft.FSM = (*fsm)(nil)

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	start := time.Now()
	evs, err := decodeCommand(l.Data)
	if err != nil {
		// Only a bug or a corrupted entry gets here; every member sees
		// the same bytes and rejects them the same way.
		return applyResult{err: err}
	}
	out, err := f.store.Apply(evs)
	if err != nil {
		return applyResult{err: err}
	}
	if f.metrics != nil {
		f.metrics.applyDuration.Observe(time.Since(start).Seconds())
		for _, ev := range out {
			f.metrics.eventsApplied.WithLabelValues(string(ev.Type)).Inc()
		}
	}
	return applyResult{events: out}
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.store.Snapshot()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.store.Restore(rc)
}

type fsmSnapshot struct{ snap *eventlog.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.snap.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
