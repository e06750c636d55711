package raftlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/events"
)

func fuzzEvent(tb testing.TB) events.Event {
	ev, err := events.New(events.Source("rack1", "m1"), events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

// FuzzFSMApply feeds arbitrary Raft entries to the FSM: it must never
// panic, reject garbage without changing the store, and apply what it
// accepts with contiguous sequences.
func FuzzFSMApply(f *testing.F) {
	good, err := encodeCommand([]events.Event{fuzzEvent(f)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{commandVersion})
	f.Add([]byte{commandVersion, '[', ']'})
	f.Add([]byte{2, '[', ']'})
	f.Add(append([]byte{commandVersion}, []byte(`[{"specversion":"1.0"}]`)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		fm := &fsm{store: eventlog.NewStore(0)}
		before := fm.store.LastSequence()
		res, ok := fm.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: data}).(applyResult)
		if !ok {
			t.Fatalf("Apply returned %T", res)
		}
		after := fm.store.LastSequence()
		if res.err != nil {
			if after != before {
				t.Fatalf("a rejected entry moved the store from %d to %d", before, after)
			}
			return
		}
		if after != before+uint64(len(res.events)) {
			t.Fatalf("applied %d events, store moved from %d to %d", len(res.events), before, after)
		}
		for i, ev := range res.events {
			if ev.Sequence != before+uint64(i)+1 {
				t.Fatalf("event %d got sequence %d", i, ev.Sequence)
			}
		}
		if fm.applied.Load() != 7 {
			t.Fatalf("applied index %d, want 7", fm.applied.Load())
		}
	})
}

// FuzzFSMRestore feeds arbitrary snapshots to the FSM: never a panic, and
// a failed restore leaves the store as it was.
func FuzzFSMRestore(f *testing.F) {
	src := &fsm{store: eventlog.NewStore(0)}
	if _, err := src.store.Apply([]events.Event{fuzzEvent(f)}); err != nil {
		f.Fatal(err)
	}
	src.applied.Store(3)
	snap, _ := src.Snapshot()
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).Persist(&bufSink{Buffer: &buf}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(snapshotHeader + "x\n{}"))
	f.Add([]byte(snapshotHeader + "5\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fm := &fsm{store: eventlog.NewStore(0)}
		if _, err := fm.store.Apply([]events.Event{fuzzEvent(t)}); err != nil {
			t.Fatal(err)
		}
		err := fm.Restore(io.NopCloser(bytes.NewReader(data)))
		if err != nil {
			if fm.store.LastSequence() != 1 || fm.applied.Load() != 0 {
				t.Fatalf("a failed restore changed the fsm: sequence %d, index %d", fm.store.LastSequence(), fm.applied.Load())
			}
			return
		}
		evs, rerr := fm.store.Read(0, 0)
		if rerr != nil && !errors.Is(rerr, eventlog.ErrCompacted) {
			t.Fatalf("reading a restored store: %v", rerr)
		}
		if len(evs) > 0 && evs[len(evs)-1].Sequence != fm.store.LastSequence() {
			t.Fatalf("restored events end at %d, state at %d", evs[len(evs)-1].Sequence, fm.store.LastSequence())
		}
	})
}

// FuzzDecodeReply: member-to-member replies never panic the decoder, and
// an error reply always decodes to an error.
func FuzzDecodeReply(f *testing.F) {
	f.Add(encodeReply(appendResponse{}, nil))
	f.Add(encodeReply(nil, errNotLeader))
	f.Add(encodeReply(nil, &events.FieldError{Field: "subject", Reason: "bad"}))
	f.Add([]byte(`{"error":{"code":"weird"}}`))
	f.Add([]byte(`{"result":[1,2]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp appendResponse
		err := decodeReply(data, &resp)
		var r reply
		if jerr := json.Unmarshal(data, &r); jerr == nil && r.Error != nil && err == nil {
			t.Fatalf("an error reply %s decoded without error", data)
		}
	})
}

type bufSink struct{ *bytes.Buffer }

func (b *bufSink) ID() string    { return "fuzz" }
func (b *bufSink) Cancel() error { return nil }
func (b *bufSink) Close() error  { return nil }
