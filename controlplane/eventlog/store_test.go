package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

func mkEvent(t testing.TB, typ events.Type, subject string, p events.Payload) events.Event {
	t.Helper()
	ev, err := events.New(events.Source("rack1", "m1"), typ, subject, p)
	if err != nil {
		t.Fatalf("events.New(%s, %s): %v", typ, subject, err)
	}
	return ev
}

func regEv(t testing.TB, node string) events.Event {
	return mkEvent(t, events.NodeRegistered, node, &events.NodeRegisteredData{Slot: 1})
}

func obsEv(t testing.TB, node string, on bool) events.Event {
	s := events.PowerOff
	if on {
		s = events.PowerOn
	}
	return mkEvent(t, events.NodePowerObserved, node, &events.PowerObservedData{State: s})
}

// fill applies a registration of n1 (if the store is empty) and then single
// observations until the store holds n events more.
func fill(t testing.TB, s *Store, n int) {
	t.Helper()
	for i := range n {
		ev := obsEv(t, "n1", i%2 == 0)
		if s.LastSequence() == 0 {
			ev = regEv(t, "n1")
		}
		if _, err := s.Apply([]events.Event{ev}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
}

func toJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding: %v", err)
	}
	return string(b)
}

// dump is everything observable of a store: state, window and sequence.
func dump(t testing.TB, s *Store) string {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	evs := s.events
	if len(evs) == 0 {
		evs = nil // an empty window is an empty window, however it came about
	}
	return toJSON(t, map[string]any{"state": s.st, "first": s.first, "events": evs, "byID": s.byID})
}

func snapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.Snapshot().WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStoreRetention(t *testing.T) {
	ctx := testCtx(t)
	s := NewStore(5)
	fill(t, s, 12)

	for _, from := range []uint64{0, 1, 7} {
		if _, err := s.Read(from, 0); !errors.Is(err, ErrCompacted) {
			t.Fatalf("Read(%d) = %v, want ErrCompacted", from, err)
		}
		if err := s.Watch(ctx, from, func(events.Event) error { return nil }); !errors.Is(err, ErrCompacted) {
			t.Fatalf("Watch(%d) = %v, want ErrCompacted", from, err)
		}
	}
	evs, err := s.Read(8, 0)
	if err != nil || len(evs) != 5 || evs[0].Sequence != 8 || evs[4].Sequence != 12 {
		t.Fatalf("Read(8) = %d events, %v; want 8…12", len(evs), err)
	}
	if st := s.State(); st.Sequence != 12 || st.Nodes["n1"] == nil {
		t.Fatalf("state after compaction = %s", toJSON(t, st))
	}

	// A batch larger than the window keeps only its tail.
	b := make([]events.Event, 7)
	for i := range b {
		b[i] = obsEv(t, "n1", i%2 == 0)
	}
	if _, err := s.Apply(b); err != nil {
		t.Fatal(err)
	}
	evs, err = s.Read(15, 0)
	if err != nil || len(evs) != 5 || evs[0].Sequence != 15 || evs[4].Sequence != 19 {
		t.Fatalf("Read(15) = %d events, %v; want 15…19", len(evs), err)
	}
	if _, err := s.Read(14, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Read(14) = %v, want ErrCompacted", err)
	}
}

func TestStoreRetentionBoundsMemory(t *testing.T) {
	s := NewStore(10)
	fill(t, s, 2000)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.events) != 10 || s.first != 1991 {
		t.Fatalf("window holds %d events from %d, want 10 from 1991", len(s.events), s.first)
	}
	if c := cap(s.events); c > 64 {
		t.Fatalf("window of 10 events has a backing array of %d", c)
	}
}

func TestStoreWatcherFallsBehind(t *testing.T) {
	ctx := testCtx(t)
	s := NewStore(5)
	fill(t, s, 3)
	release := make(chan struct{})
	first := make(chan struct{})
	done := make(chan error, 1)
	var seen []uint64
	go func() {
		done <- s.Watch(ctx, 1, func(ev events.Event) error {
			seen = append(seen, ev.Sequence)
			if ev.Sequence == 1 {
				close(first)
				<-release
			}
			return nil
		})
	}()
	<-first
	fill(t, s, 20)
	close(release)
	select {
	case err := <-done:
		if !errors.Is(err, ErrCompacted) {
			t.Fatalf("Watch of a watcher that fell behind = %v, want ErrCompacted", err)
		}
	case <-ctx.Done():
		t.Fatal("Watch did not return")
	}
	if fmt.Sprint(seen) != "[1 2 3]" {
		t.Fatalf("watcher saw %v before falling behind, want [1 2 3]", seen)
	}
}

func TestStoreWatchStopsWhenCancelled(t *testing.T) {
	ctx := testCtx(t)
	s := NewStore(0)
	fill(t, s, 10)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	calls := 0
	err := s.Watch(cctx, 1, func(ev events.Event) error {
		calls++
		if ev.Sequence == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 2 {
		t.Fatalf("Watch cancelled at event 2 = %v after %d calls, want context.Canceled after 2", err, calls)
	}
}

func TestStoreSnapshotRestore(t *testing.T) {
	a := NewStore(0)
	fill(t, a, 30)
	if _, err := a.Apply([]events.Event{mkEvent(t, events.MemberJoined, "m1", &events.MemberJoinedData{Address: "m1:7000", Voter: true})}); err != nil {
		t.Fatal(err)
	}
	sn := a.Snapshot()
	if sn.Sequence() != 31 {
		t.Fatalf("Snapshot().Sequence() = %d, want 31", sn.Sequence())
	}
	want := dump(t, a)
	// The snapshot is a point in time: later applies do not change it.
	fill(t, a, 1)
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}

	b := NewStore(0)
	if err := b.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := dump(t, b); got != want {
		t.Fatalf("restored store differs:\n got %s\nwant %s", got, want)
	}
	got, err := b.Read(0, 0)
	if err != nil || len(got) != 31 {
		t.Fatalf("Read(0, 0) of the restored store = %d events, %v", len(got), err)
	}
	// The restored store continues the sequence, like the original.
	evA, _ := a.Read(32, 0)
	out, err := b.Apply([]events.Event{evA[0]})
	if err != nil || out[0].Sequence != 32 {
		t.Fatalf("Apply after Restore = %v, %v; want sequence 32", out, err)
	}
	if dump(t, a) != dump(t, b) {
		t.Fatalf("restored store diverged after applying the same event")
	}

	// Restoring into a store with content replaces it.
	c := NewStore(0)
	fill(t, c, 50)
	if err := c.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, c); got != want {
		t.Fatalf("restore over content differs:\n got %s\nwant %s", got, want)
	}

	// Restoring into a store with a smaller window keeps the tail.
	d := NewStore(4)
	if err := d.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if evs, err := d.Read(28, 0); err != nil || len(evs) != 4 || evs[0].Sequence != 28 {
		t.Fatalf("Read(28) after restoring into a window of 4 = %d events, %v", len(evs), err)
	}
	if _, err := d.Read(27, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Read(27) = %v, want ErrCompacted", err)
	}
	// And its snapshot restores too.
	e := NewStore(0)
	if err := e.Restore(bytes.NewReader(snapshotBytes(t, d))); err != nil {
		t.Fatal(err)
	}
	if dump(t, e) != dump(t, d) {
		t.Fatalf("snapshot of a compacted store does not restore to the same")
	}

	// The empty store round-trips.
	f := NewStore(0)
	if err := f.Restore(bytes.NewReader(snapshotBytes(t, NewStore(0)))); err != nil {
		t.Fatal(err)
	}
	if dump(t, f) != dump(t, NewStore(0)) {
		t.Fatalf("empty store does not round-trip: %s", dump(t, f))
	}
}

// randomBatches builds batches over a few names, some of which the state
// rejects.
func randomBatches(t testing.TB, seed uint64, n int) [][]events.Event {
	r := rand.New(rand.NewPCG(seed, 7))
	nodes := []string{"n1", "n2", "n3"}
	var out [][]events.Event
	for range n {
		b := make([]events.Event, 1+r.IntN(3))
		for i := range b {
			node := nodes[r.IntN(len(nodes))]
			switch r.IntN(7) {
			case 0:
				b[i] = regEv(t, node)
			case 1:
				b[i] = mkEvent(t, events.NodeRemoved, node, &events.NodeRemovedData{})
			case 2:
				b[i] = mkEvent(t, events.NodePowerDesired, node, &events.PowerDesiredData{State: events.PowerCycle})
			case 3:
				b[i] = mkEvent(t, events.ActionStarted, node, &events.ActionStartedData{Action: "a", Reconciler: "power", Operation: "x"})
			case 4:
				b[i] = mkEvent(t, events.MemberJoined, "m"+node, &events.MemberJoinedData{Address: "x"})
			case 5:
				b[i] = mkEvent(t, events.MemberLeft, "m"+node, &events.MemberLeftData{})
			default:
				b[i] = obsEv(t, node, r.IntN(2) == 0)
			}
		}
		out = append(out, b)
	}
	return out
}

// TestStoreSnapshotPlusTail checks the path a Raft FSM takes after a
// restart or an InstallSnapshot: Restore the snapshot, then apply the log
// entries after it. It must end where applying everything does.
func TestStoreSnapshotPlusTail(t *testing.T) {
	for _, retention := range []int{0, 7} {
		t.Run(fmt.Sprint("retention=", retention), func(t *testing.T) {
			batches := randomBatches(t, 11, 120)
			full := NewStore(retention)
			snaps := map[int][]byte{}
			errs := make([]string, len(batches))
			rejected := 0
			for i, b := range batches {
				if _, err := full.Apply(b); err != nil {
					errs[i] = err.Error()
					rejected++
				}
				if i%17 == 0 {
					snaps[i] = snapshotBytes(t, full)
				}
			}
			if rejected == 0 || rejected == len(batches) {
				t.Fatalf("%d of %d batches rejected; the test wants a mix", rejected, len(batches))
			}
			want := dump(t, full)
			for k, snap := range snaps {
				s := NewStore(retention)
				if err := s.Restore(bytes.NewReader(snap)); err != nil {
					t.Fatalf("Restore of snapshot after batch %d: %v", k, err)
				}
				for i := k + 1; i < len(batches); i++ {
					_, err := s.Apply(batches[i])
					if got := fmt.Sprint(err); (err == nil) != (errs[i] == "") || (err != nil && got != errs[i]) {
						t.Fatalf("snapshot %d + tail: batch %d gave %v, the full replay %q", k, i, err, errs[i])
					}
				}
				if got := dump(t, s); got != want {
					t.Fatalf("snapshot after batch %d + tail differs from the full replay:\n got %s\nwant %s", k, got, want)
				}
			}
		})
	}
}

func TestStoreRestoreRejects(t *testing.T) {
	src := NewStore(0)
	fill(t, src, 6)
	if _, err := src.Apply([]events.Event{mkEvent(t, events.MemberJoined, "m1", &events.MemberJoinedData{Address: "a"})}); err != nil {
		t.Fatal(err)
	}
	good := snapshotBytes(t, src)
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	st := func(m map[string]any) map[string]any { return m["state"].(map[string]any) }
	evs := func(m map[string]any) []any { return m["events"].([]any) }

	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"not json", []byte("snapshot")},
		{"truncated", good[:len(good)/2]},
		{"truncated by one", bytes.TrimSpace(good)[:len(bytes.TrimSpace(good))-1]},
		{"trailing data", append(append([]byte(nil), good...), "{}"...)},
		{"null", []byte("null")},
		{"array", []byte("[]")},
		{"version 2", edit(func(m map[string]any) { m["version"] = 2 })},
		{"no version", edit(func(m map[string]any) { delete(m, "version") })},
		{"no state", edit(func(m map[string]any) { delete(m, "state") })},
		{"state not an object", edit(func(m map[string]any) { m["state"] = 5 })},
		{"first 0", edit(func(m map[string]any) { m["first"] = 0 })},
		{"first off by one", edit(func(m map[string]any) { m["first"] = 2 })},
		{"state ahead of events", edit(func(m map[string]any) { st(m)["sequence"] = 8 })},
		{"state behind events", edit(func(m map[string]any) { st(m)["sequence"] = 6 })},
		{"event missing", edit(func(m map[string]any) { e := evs(m); m["events"] = append(e[:2:2], e[3:]...) })},
		{"events swapped", edit(func(m map[string]any) { e := evs(m); e[2], e[3] = e[3], e[2] })},
		{"event sequence wrong", edit(func(m map[string]any) { evs(m)[4].(map[string]any)["sequence"] = 40 })},
		{"event invalid subject", edit(func(m map[string]any) { evs(m)[4].(map[string]any)["subject"] = "N1" })},
		{"event unknown type", edit(func(m map[string]any) { evs(m)[4].(map[string]any)["type"] = "io.racklet.x" })},
		{"event invalid payload", edit(func(m map[string]any) { evs(m)[4].(map[string]any)["data"] = map[string]any{"state": "up"} })},
		{"events not a list", edit(func(m map[string]any) { m["events"] = "x" })},
		{"node null", edit(func(m map[string]any) { st(m)["nodes"].(map[string]any)["n1"] = nil })},
		{"node misnamed", edit(func(m map[string]any) { st(m)["nodes"].(map[string]any)["n1"].(map[string]any)["name"] = "n2" })},
		{"member null", edit(func(m map[string]any) { st(m)["members"].(map[string]any)["m1"] = nil })},
		{"member misnamed", edit(func(m map[string]any) { delete(st(m)["members"].(map[string]any)["m1"].(map[string]any), "name") })},
		{"sequence negative", edit(func(m map[string]any) { st(m)["sequence"] = -1 })},
	}
	// The unedited snapshot restores: the edits are what fails.
	if err := NewStore(0).Restore(bytes.NewReader(edit(func(map[string]any) {}))); err != nil {
		t.Fatalf("Restore of the re-encoded good snapshot: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(0)
			fill(t, s, 3)
			before := dump(t, s)
			if err := s.Restore(bytes.NewReader(tt.in)); err == nil {
				t.Fatalf("Restore(%.200s) succeeded", tt.in)
			}
			if after := dump(t, s); after != before {
				t.Fatalf("a failed Restore changed the store:\nbefore %s\n after %s", before, after)
			}
			fill(t, s, 1)
			if s.LastSequence() != 4 {
				t.Fatalf("store after a failed Restore is at %d, want 4", s.LastSequence())
			}
		})
	}
}

func TestStoreClose(t *testing.T) {
	ctx := testCtx(t)
	s := NewStore(0)
	fill(t, s, 3)
	errc := make(chan error, 3)
	for _, from := range []uint64{1, 4} {
		go func() { errc <- s.Watch(ctx, from, func(events.Event) error { return nil }) }()
	}
	go func() { errc <- s.Wait(ctx, 10) }()
	time.Sleep(20 * time.Millisecond) // let them block; the test passes either way
	s.Close()
	s.Close() // twice is harmless
	for range 3 {
		select {
		case err := <-errc:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("after Close: %v, want ErrClosed", err)
			}
		case <-ctx.Done():
			t.Fatal("Close did not wake a watcher")
		}
	}
	// A watch started after Close still replays, then ends with ErrClosed.
	n := 0
	if err := s.Watch(ctx, 1, func(events.Event) error { n++; return nil }); !errors.Is(err, ErrClosed) || n != 3 {
		t.Fatalf("Watch after Close = %v after %d events, want ErrClosed after 3", err, n)
	}
	if err := s.Wait(ctx, 3); err != nil {
		t.Fatalf("Wait for an applied sequence after Close = %v", err)
	}
	if err := s.Wait(ctx, 4); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait for a future sequence after Close = %v, want ErrClosed", err)
	}
}

func TestStoreWait(t *testing.T) {
	ctx := testCtx(t)
	s := NewStore(0)
	if err := s.Wait(ctx, 0); err != nil {
		t.Fatalf("Wait(0) = %v", err)
	}
	fill(t, s, 1)
	if err := s.Wait(ctx, 1); err != nil {
		t.Fatalf("Wait(1) = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait(ctx, 3) }()
	fill(t, s, 1)
	select {
	case err := <-done:
		t.Fatalf("Wait(3) returned %v at sequence 2", err)
	case <-time.After(20 * time.Millisecond):
	}
	fill(t, s, 1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait(3) = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Wait(3) did not return at sequence 3")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := s.Wait(dctx, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a deadline = %v, want DeadlineExceeded", err)
	}
	// A rejected batch wakes nobody into a false success.
	if _, err := s.Apply([]events.Event{obsEv(t, "n9", true)}); !errors.Is(err, state.ErrUnknownNode) {
		t.Fatalf("Apply = %v", err)
	}
	if s.LastSequence() != 3 {
		t.Fatalf("LastSequence = %d after a rejected batch, want 3", s.LastSequence())
	}
}

func TestStoreLookup(t *testing.T) {
	s := NewStore(3)
	a, b, c := regEv(t, "n1"), obsEv(t, "n1", true), obsEv(t, "n1", false)
	if _, err := s.Apply([]events.Event{a, b}); err != nil {
		t.Fatal(err)
	}
	if ev, ok := s.Lookup(b.ID); !ok || ev.Sequence != 2 || ev.ID != b.ID {
		t.Fatalf("Lookup(b) = %+v, %v; want sequence 2", ev, ok)
	}
	if _, ok := s.Lookup("nope"); ok {
		t.Fatal("Lookup of an unknown id succeeded")
	}
	// A rejected batch leaves no trace.
	if _, err := s.Apply([]events.Event{c, obsEv(t, "n9", true)}); err == nil {
		t.Fatal("Apply for an unknown node succeeded")
	}
	if _, ok := s.Lookup(c.ID); ok {
		t.Fatal("Lookup found an event of a rejected batch")
	}
	// The same id again (a retried append): the newest wins, and trimming
	// the older one does not forget the newer.
	dup := b
	dup.Data = json.RawMessage(`{"state":"off"}`)
	if _, err := s.Apply([]events.Event{dup}); err != nil {
		t.Fatal(err)
	}
	fill(t, s, 1) // window: 2, 3, 4
	if ev, ok := s.Lookup(b.ID); !ok || ev.Sequence != 3 {
		t.Fatalf("Lookup of a repeated id = %+v, %v; want sequence 3", ev, ok)
	}
	fill(t, s, 1) // window: 3, 4, 5
	if _, ok := s.Lookup(a.ID); ok {
		t.Fatal("Lookup found a compacted event")
	}
	if ev, ok := s.Lookup(b.ID); !ok || ev.Sequence != 3 {
		t.Fatalf("Lookup after compacting the older copy = %+v, %v; want sequence 3", ev, ok)
	}
	// And it survives a snapshot.
	r := NewStore(2)
	if err := r.Restore(bytes.NewReader(snapshotBytes(t, s))); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup(b.ID); ok {
		t.Fatal("Lookup found an event the smaller window dropped")
	}
	last, _ := s.Read(5, 0)
	if ev, ok := r.Lookup(last[0].ID); !ok || ev.Sequence != 5 {
		t.Fatalf("Lookup after Restore = %+v, %v; want sequence 5", ev, ok)
	}
}

func TestStoreView(t *testing.T) {
	s := NewStore(0)
	fill(t, s, 2)
	var seq uint64
	s.View(func(st *state.State) { seq = st.Sequence })
	if seq != 2 {
		t.Fatalf("View saw sequence %d, want 2", seq)
	}
}

// FuzzStoreRestore feeds Restore arbitrary bytes. It must never panic; what
// it accepts must leave a consistent store that snapshots, restores and
// applies; what it refuses must leave the store as it was.
func FuzzStoreRestore(f *testing.F) {
	empty := NewStore(0)
	f.Add(snapshotBytes(f, empty))
	full := NewStore(0)
	fill(f, full, 5)
	if _, err := full.Apply([]events.Event{
		mkEvent(f, events.ActionStarted, "n1", &events.ActionStartedData{Action: "a", Reconciler: "power", Operation: "x"}),
		mkEvent(f, events.MemberJoined, "m1", &events.MemberJoinedData{Address: "a", Voter: true}),
	}); err != nil {
		f.Fatal(err)
	}
	f.Add(snapshotBytes(f, full))
	small := NewStore(3)
	fill(f, small, 9)
	f.Add(snapshotBytes(f, small))
	f.Add([]byte(`{"version":1,"state":{"sequence":0},"first":1,"events":[]}`))
	f.Add([]byte(`{"version":1,"state":{"sequence":2,"nodes":{"a":null}},"first":3}`))
	f.Add([]byte(`{"version":1,"state":{"sequence":18446744073709551615},"first":0}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))

	const retention = 4
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewStore(retention)
		fill(t, s, 2)
		before := dump(t, s)
		if err := s.Restore(bytes.NewReader(b)); err != nil {
			if after := dump(t, s); after != before {
				t.Fatalf("a failed Restore (%v) changed the store", err)
			}
			return
		}
		st := s.State()
		s.mu.RLock()
		first, n := s.first, len(s.events)
		s.mu.RUnlock()
		if first == 0 || n > retention {
			t.Fatalf("restored window starts at %d and holds %d events", first, n)
		}
		evs, err := s.Read(first, 0)
		if err != nil {
			t.Fatalf("Read(%d) of the restored store: %v", first, err)
		}
		for i, ev := range evs {
			if ev.Sequence != first+uint64(i) {
				t.Fatalf("restored event %d has sequence %d, want %d", i, ev.Sequence, first+uint64(i))
			}
			if err := ev.Validate(); err != nil {
				t.Fatalf("restored event %d is invalid: %v", ev.Sequence, err)
			}
		}
		if first+uint64(len(evs)) != st.Sequence+1 {
			t.Fatalf("restored events end at %d, state at %d", first+uint64(len(evs))-1, st.Sequence)
		}
		if st.Sequence == 0 {
			if all, err := s.Read(0, 0); err != nil || len(all) != 0 {
				t.Fatalf("Read(0, 0) of a restored empty log = %d events, %v", len(all), err)
			}
		}
		for name, node := range st.Nodes {
			if node == nil || node.Name != name {
				t.Fatalf("restored node %q is %+v", name, node)
			}
		}
		for _, ev := range evs {
			if got, ok := s.Lookup(ev.ID); !ok || got.ID != ev.ID || got.Sequence < ev.Sequence {
				t.Fatalf("Lookup(%q) of a restored event = %d, %v", ev.ID, got.Sequence, ok)
			}
		}
		// A snapshot of it restores to the same.
		again := NewStore(retention)
		if err := again.Restore(bytes.NewReader(snapshotBytes(t, s))); err != nil {
			t.Fatalf("snapshot of a restored store does not restore: %v", err)
		}
		if dump(t, again) != dump(t, s) {
			t.Fatalf("snapshot of a restored store restores differently")
		}
		// It applies, and continues the sequence (short of absurd ones).
		batch := []events.Event{regEv(t, "fuzz-new")}
		for name := range st.Nodes {
			if events.ValidName(name) {
				batch = append(batch, obsEv(t, name, true))
			}
		}
		out, err := s.Apply(batch)
		if err != nil {
			if strings.Contains(err.Error(), "fuzz-new") {
				return // the snapshot already had that node
			}
			t.Fatalf("Apply after Restore: %v", err)
		}
		if st.Sequence < math.MaxUint64/2 && out[0].Sequence != st.Sequence+1 {
			t.Fatalf("Apply after Restore gave sequence %d, want %d", out[0].Sequence, st.Sequence+1)
		}
	})
}

func TestStoreCommitted(t *testing.T) {
	s := NewStore(0)
	mk := func(name string) events.Event {
		ev, err := events.New(events.Source("rack1", "m1"), events.NodeRegistered, name, &events.NodeRegisteredData{})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	batch := []events.Event{mk("c1"), mk("c2")}
	applied, err := s.Apply(batch)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := s.Committed(batch)
	if !ok || len(got) != 2 || got[0].Sequence != applied[0].Sequence || got[1].ID != batch[1].ID {
		t.Fatalf("Committed(applied batch) = %v, %v", got, ok)
	}
	for name, evs := range map[string][]events.Event{
		"never applied":        {mk("c3")},
		"second event differs": {batch[0], mk("c4")},
		"longer than applied":  {batch[0], batch[1], mk("c5")},
		"empty":                nil,
	} {
		if got, ok := s.Committed(evs); ok {
			t.Errorf("%s: Committed = %v, true; want false", name, got)
		}
	}
}
