package raftlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"
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
//
// The fsm also records the Raft index it has really applied (raft's own
// AppliedIndex counts entries handed to the FSM, not yet applied), which
// read-index waits need.
type fsm struct {
	store   *eventlog.Store
	metrics *metrics
	applied atomic.Uint64
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	defer f.applied.Store(l.Index)
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

// StoreConfiguration is called for configuration entries; the fsm only
// notes their index.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) { f.applied.Store(index) }

// snapshotHeader starts every snapshot: the Raft index it covers.
const snapshotHeader = "racklet-fsm-snapshot v1 index "

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	// Runs on the FSM goroutine: applied is exactly what the store holds.
	return &fsmSnapshot{snap: f.store.Snapshot(), index: f.applied.Load()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReader(rc)
	line, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading snapshot header: %w", err)
	}
	var index uint64
	if _, err := fmt.Sscanf(line, snapshotHeader+"%d\n", &index); err != nil {
		return fmt.Errorf("reading snapshot header %q: %w", clipLine(line), err)
	}
	if err := f.store.Restore(br); err != nil {
		return err
	}
	f.applied.Store(index)
	return nil
}

func clipLine(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

type fsmSnapshot struct {
	snap  *eventlog.Snapshot
	index uint64
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := fmt.Fprintf(sink, snapshotHeader+"%d\n", s.index); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("writing snapshot header: %w", err)
	}
	if _, err := s.snap.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
