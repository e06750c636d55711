package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// DefaultRetention is how many recent events a Store keeps readable.
const DefaultRetention = 100_000

// Store holds what a member has applied: the state projection and the most
// recent events. It is the deterministic heart shared by the
// implementations (the Raft FSM wraps one). Safe for concurrent use.
type Store struct {
	retention int

	mu     sync.RWMutex
	st     *state.State
	events []events.Event    // events[i].Sequence == first+i
	first  uint64            // sequence of events[0] (st.Sequence+1 when empty)
	byID   map[string]uint64 // id → sequence of the retained events
	notify chan struct{}     // closed and replaced on every apply
	closed bool
}

// NewStore returns an empty store keeping the last retention events
// (DefaultRetention if retention <= 0).
func NewStore(retention int) *Store {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Store{retention: retention, st: state.New(), first: 1, byID: map[string]uint64{}, notify: make(chan struct{})}
}

// Apply validates and applies a batch atomically (see state.State.Apply)
// and returns it with sequences.
func (s *Store) Apply(evs []events.Event) ([]events.Event, error) {
	for i, ev := range evs {
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := s.st.Apply(evs)
	if err != nil {
		return nil, err
	}
	s.events = append(s.events, out...)
	for _, ev := range out {
		s.byID[ev.ID] = ev.Sequence
	}
	s.trimLocked()
	close(s.notify)
	s.notify = make(chan struct{})
	return out, nil
}

// trimLocked drops the oldest events beyond the retention.
func (s *Store) trimLocked() {
	over := len(s.events) - s.retention
	if over <= 0 {
		return
	}
	for _, ev := range s.events[:over] {
		if s.byID[ev.ID] == ev.Sequence {
			delete(s.byID, ev.ID)
		}
	}
	// Reslicing (rather than copying the whole window on every apply)
	// keeps this amortised O(1): append reallocates, copying only the
	// kept events, once the capacity left runs out.
	clear(s.events[:over])
	s.events = s.events[over:]
	s.first += uint64(over)
}

// Lookup returns the retained event with this id, if any. Ids are set by
// writers; the log relies on them to tell whether an append whose outcome
// was unknown has been committed.
func (s *Store) Lookup(id string) (events.Event, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seq, ok := s.byID[id]
	if !ok || seq < s.first {
		return events.Event{}, false
	}
	return s.events[seq-s.first], true
}

// Committed returns the batch as applied, if its events are in the store
// (found by the first event's id, then checked one by one). Logs use it to
// settle an append whose outcome was unknown.
func (s *Store) Committed(evs []events.Event) ([]events.Event, bool) {
	if len(evs) == 0 {
		return nil, false
	}
	first, ok := s.Lookup(evs[0].ID)
	if !ok {
		return nil, false
	}
	got, err := s.Read(first.Sequence, len(evs))
	if err != nil || len(got) != len(evs) {
		return nil, false
	}
	for i := range evs {
		if got[i].ID != evs[i].ID {
			return nil, false
		}
	}
	return got, true
}

// LastSequence returns the sequence of the last applied event.
func (s *Store) LastSequence() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.Sequence
}

// State returns a copy of the state.
func (s *Store) State() *state.State {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.Clone()
}

// View calls fn with the live state under the read lock; fn must not keep
// or modify it. Cheaper than State for a quick look.
func (s *Store) View(fn func(*state.State)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.st)
}

// Read returns up to limit events with sequence >= from (all if limit <= 0).
func (s *Store) Read(from uint64, limit int) ([]events.Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	evs, _, err := s.readLocked(from, limit)
	return evs, err
}

func (s *Store) readLocked(from uint64, limit int) ([]events.Event, chan struct{}, error) {
	if from == 0 {
		from = 1
	}
	if from < s.first {
		return nil, nil, fmt.Errorf("%w: asked from %d, the oldest kept is %d", ErrCompacted, from, s.first)
	}
	i := from - s.first
	if i >= uint64(len(s.events)) {
		return nil, s.notify, nil
	}
	tail := s.events[i:]
	if limit > 0 && len(tail) > limit {
		tail = tail[:limit]
	}
	return append([]events.Event(nil), tail...), s.notify, nil
}

// Watch calls fn for every event with sequence >= from, in order, as they
// are applied, until ctx ends, fn fails, the store closes (ErrClosed) or
// the watcher falls behind the retention window (ErrCompacted).
func (s *Store) Watch(ctx context.Context, from uint64, fn func(events.Event) error) error {
	if from == 0 {
		from = 1
	}
	for {
		s.mu.RLock()
		evs, notify, err := s.readLocked(from, 1024)
		closed := s.closed
		s.mu.RUnlock()
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(ev); err != nil {
				return err
			}
			from = ev.Sequence + 1
		}
		if len(evs) > 0 {
			continue
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-notify:
		}
	}
}

// Wait blocks until the store has applied sequence seq or ctx ends.
func (s *Store) Wait(ctx context.Context, seq uint64) error {
	for {
		s.mu.RLock()
		done, notify, closed := s.st.Sequence >= seq, s.notify, s.closed
		s.mu.RUnlock()
		if done {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-notify:
		}
	}
}

// Close wakes every watcher with ErrClosed.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.notify)
		s.notify = make(chan struct{})
	}
}

// snapshot is the serialised form of a Store.
type snapshot struct {
	Version int            `json:"version"`
	State   *state.State   `json:"state"`
	First   uint64         `json:"first"`
	Events  []events.Event `json:"events"`
}

// Snapshot is a point-in-time copy of a store, to be written out later.
type Snapshot struct{ snap snapshot }

// Snapshot captures the store. It copies under the lock and is cheap
// enough to call from a Raft FSM's Snapshot.
func (s *Store) Snapshot() *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &Snapshot{snap: snapshot{Version: 1, State: s.st.Clone(), First: s.first, Events: append([]events.Event(nil), s.events...)}}
}

// WriteTo writes the snapshot as JSON.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	if err := json.NewEncoder(cw).Encode(&sn.snap); err != nil {
		return cw.n, fmt.Errorf("writing snapshot: %w", err)
	}
	return cw.n, nil
}

// Sequence is the last sequence the snapshot holds.
func (sn *Snapshot) Sequence() uint64 { return sn.snap.State.Sequence }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore replaces the store's content with a snapshot read from r. The
// snapshot is checked before anything is replaced.
func (s *Store) Restore(r io.Reader) error {
	var sn snapshot
	dec := json.NewDecoder(r)
	if err := dec.Decode(&sn); err != nil {
		return fmt.Errorf("reading snapshot: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading snapshot: trailing data after the snapshot")
	}
	if sn.Version != 1 || sn.State == nil {
		return fmt.Errorf("reading snapshot: unsupported version %d", sn.Version)
	}
	if sn.State.Nodes == nil {
		sn.State.Nodes = map[string]*state.Node{}
	}
	if sn.State.Members == nil {
		sn.State.Members = map[string]*state.Member{}
	}
	if sn.First == 0 {
		return fmt.Errorf("reading snapshot: first sequence is 0")
	}
	for name, n := range sn.State.Nodes {
		if n == nil || n.Name != name {
			return fmt.Errorf("reading snapshot: node %q is missing or misnamed", name)
		}
	}
	for name, m := range sn.State.Members {
		if m == nil || m.Name != name {
			return fmt.Errorf("reading snapshot: member %q is missing or misnamed", name)
		}
	}
	for i, ev := range sn.Events {
		if ev.Sequence != sn.First+uint64(i) {
			return fmt.Errorf("reading snapshot: event %d has sequence %d, want %d", i, ev.Sequence, sn.First+uint64(i))
		}
		if err := ev.Validate(); err != nil {
			return fmt.Errorf("reading snapshot: event %d: %w", ev.Sequence, err)
		}
	}
	if sn.First+uint64(len(sn.Events)) != sn.State.Sequence+1 {
		return fmt.Errorf("reading snapshot: events end at %d but state is at %d", sn.First+uint64(len(sn.Events))-1, sn.State.Sequence)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st, s.first, s.events = sn.State, sn.First, sn.Events
	s.byID = make(map[string]uint64, len(s.events))
	for _, ev := range s.events {
		s.byID[ev.ID] = ev.Sequence
	}
	s.trimLocked()
	close(s.notify)
	s.notify = make(chan struct{})
	return nil
}
