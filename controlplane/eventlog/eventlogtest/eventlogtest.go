// Package eventlogtest is the conformance suite of eventlog.Log: every
// implementation (the in-memory reference, Raft over NATS, Raft over TCP,
// embedded etcd) runs the same subtests with Run.
//
// The subtests keep their event counts small (a few hundred at most) so that
// multi-member implementations run them in seconds, and every blocking call
// has a deadline so that a broken implementation fails instead of hanging.
package eventlogtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// Timeout bounds each subtest's blocking calls.
const Timeout = 30 * time.Second

// Names the suite's events are about. A subtest fails at once if the log
// already holds one of these nodes or members, so that an implementation's
// own objects (its members m1, m2, … for instance) never clash with them.
var (
	suiteNodes   = []string{"n1", "n2", "n3", "n9", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"}
	suiteMembers = []string{"cm1", "cm2", "cm3"}
)

// Run runs the conformance suite. newLog returns a fresh log that is ready
// to append (a leader elected, if it has one) and registers its own cleanup
// with t.Cleanup.
//
// The log need not be empty, but it must be quiescent: a real log may hold
// events of its own before the suite gets it (a replicated log records
// member.joined for its members, for instance), and newLog must return only
// once those are recorded. From then on, nothing but the subtest writes to
// the log, not even the implementation in response to the subtest's events:
// the suite appends member.joined and member.left for members cm1, cm2 and
// cm3, which belong to no implementation, and expects them kept as appended
// (a log that reconciles its recorded members with a configuration of its
// own must not do so while the suite runs). The log's events so far must
// still be readable (none compacted), and it must hold none of the nodes
// and members the suite uses (n1, n2, n3, n9, g0 … g7; cm1, cm2, cm3).
//
// Every subtest first measures that baseline (Sync, then State and Read).
// The sequences it expects are relative to the baseline's last sequence; it
// reads and watches its own events from the one after, and reading or
// watching from 0 or 1 must deliver the baseline's events first. Its state
// checks compare the objects it created, count nodes and members relative to
// the baseline, and check that the baseline's own are left as they were.
func Run(t *testing.T, newLog func(t *testing.T) eventlog.Log) {
	tests := []struct {
		name string
		fn   func(t *testing.T, l eventlog.Log, b *baseline)
	}{
		{"AppendAssignsContiguousSequences", testAppendSequences},
		{"BaselineStateAndRead", testBaseline},
		{"RejectUnknownNodeInBatch", testRejectUnknownNode},
		{"RejectNodeExists", testRejectNodeExists},
		{"RejectUnknownMember", testRejectUnknownMember},
		{"RejectInvalid", testRejectInvalid},
		{"Read", testRead},
		{"WatchReplaysThenFollows", testWatchReplayFollow},
		{"WatchFromMiddle", testWatchFromMiddle},
		{"WatchFromFuture", testWatchFromFuture},
		{"ConcurrentWatchers", testConcurrentWatchers},
		{"WatchCancel", testWatchCancel},
		{"WatchFnError", testWatchFnError},
		{"StateAfterSync", testStateAfterSync},
		{"StateIsCopy", testStateIsCopy},
		{"ConcurrentAppenders", testConcurrentAppenders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLog(t)
			tt.fn(t, l, measure(t, l))
		})
	}
}

// baseline is the log as newLog handed it over, before the subtest wrote.
type baseline struct {
	seq    uint64         // the last sequence: State().Sequence
	events []events.Event // Read(0, 0): sequences 1 … seq
	state  *state.State
}

// measure takes the log's baseline and checks that it is usable: its
// events readable from sequence 1 and contiguous up to its state's
// sequence, and none of the suite's names taken.
func measure(t *testing.T, l eventlog.Log) *baseline {
	t.Helper()
	ctx := ctxFor(t)
	st := syncedState(t, ctx, l)
	evs, err := l.Read(ctx, 0, 0)
	if err != nil {
		t.Fatalf("baseline: Read(0, 0): %v", err)
	}
	if uint64(len(evs)) != st.Sequence {
		t.Fatalf("baseline: Read(0, 0) returned %d events, but the state is at sequence %d (the log is not quiescent, or compacted its start)", len(evs), st.Sequence)
	}
	checkSeqs(t, "baseline: Read(0, 0)", evs, 1)
	for _, n := range suiteNodes {
		if st.Nodes[n] != nil {
			t.Fatalf("baseline: the log already holds node %s, one of the suite's names (%v): newLog must not register it", n, suiteNodes)
		}
	}
	for _, m := range suiteMembers {
		if st.Members[m] != nil {
			t.Fatalf("baseline: the log already holds member %s, one of the suite's names (%v): newLog must not record it", m, suiteMembers)
		}
	}
	return &baseline{seq: st.Sequence, events: evs, state: st}
}

// at returns the sequence of the i-th event the subtest appends (1-based).
func (b *baseline) at(i int) uint64 { return b.seq + uint64(i) }

// plus returns the baseline's events followed by evs: the whole log.
func (b *baseline) plus(evs []events.Event) []events.Event {
	return append(append([]events.Event(nil), b.events...), evs...)
}

// checkUntouched fails unless st still holds the baseline's own nodes and
// members as they were.
func (b *baseline) checkUntouched(t *testing.T, st *state.State) {
	t.Helper()
	for name, want := range b.state.Nodes {
		if got := st.Nodes[name]; got == nil || objectJSON(t, got) != objectJSON(t, want) {
			t.Fatalf("the baseline's node %s changed:\n got %s\nwant %s", name, objectJSON(t, got), objectJSON(t, want))
		}
	}
	for name, want := range b.state.Members {
		if got := st.Members[name]; got == nil || *got != *want {
			t.Fatalf("the baseline's member %s changed: got %+v, want %+v", name, got, want)
		}
	}
}

// ---- event builders ----

var source = events.Source("rack1", "m1")

func mk(t testing.TB, typ events.Type, subject string, p events.Payload) events.Event {
	t.Helper()
	ev, err := events.New(source, typ, subject, p)
	if err != nil {
		t.Fatalf("events.New(%s, %s): %v", typ, subject, err)
	}
	return ev
}

func registered(t testing.TB, node string, slot int) events.Event {
	return mk(t, events.NodeRegistered, node, &events.NodeRegisteredData{Slot: slot})
}

func desired(t testing.TB, node string, s events.PowerState) events.Event {
	return mk(t, events.NodePowerDesired, node, &events.PowerDesiredData{State: s})
}

func observed(t testing.TB, node string, s events.PowerState) events.Event {
	return mk(t, events.NodePowerObserved, node, &events.PowerObservedData{State: s})
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// ---- helpers ----

func appendOK(t *testing.T, ctx context.Context, l eventlog.Log, evs ...events.Event) []events.Event {
	t.Helper()
	out, err := l.Append(ctx, evs...)
	if err != nil {
		t.Fatalf("Append(%d events): %v", len(evs), err)
	}
	if len(out) != len(evs) {
		t.Fatalf("Append(%d events) returned %d events", len(evs), len(out))
	}
	return out
}

// sameEvent reports how got differs from want other than in the sequence.
func sameEvent(got, want events.Event) error {
	switch {
	case got.ID != want.ID:
		return fmt.Errorf("id %q, want %q", got.ID, want.ID)
	case got.Type != want.Type:
		return fmt.Errorf("type %q, want %q", got.Type, want.Type)
	case got.Subject != want.Subject:
		return fmt.Errorf("subject %q, want %q", got.Subject, want.Subject)
	case got.Source != want.Source:
		return fmt.Errorf("source %q, want %q", got.Source, want.Source)
	case got.SpecVersion != want.SpecVersion || got.DataContentType != want.DataContentType:
		return fmt.Errorf("specversion/datacontenttype %q/%q, want %q/%q", got.SpecVersion, got.DataContentType, want.SpecVersion, want.DataContentType)
	case got.Actor != want.Actor:
		return fmt.Errorf("actor %q, want %q", got.Actor, want.Actor)
	case !got.Time.Equal(want.Time):
		return fmt.Errorf("time %v, want %v", got.Time, want.Time)
	case !sameJSON(got.Data, want.Data):
		return fmt.Errorf("data %s, want %s", got.Data, want.Data)
	}
	return nil
}

func sameJSON(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// checkSeqs fails unless evs have the sequences from, from+1, ….
func checkSeqs(t *testing.T, what string, evs []events.Event, from uint64) {
	t.Helper()
	for i, ev := range evs {
		if want := from + uint64(i); ev.Sequence != want {
			t.Fatalf("%s: event %d has sequence %d, want %d", what, i, ev.Sequence, want)
		}
	}
}

// checkSame fails unless got and want are the same events, sequences included.
func checkSame(t *testing.T, what string, got, want []events.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].Sequence != want[i].Sequence {
			t.Fatalf("%s: event %d has sequence %d, want %d", what, i, got[i].Sequence, want[i].Sequence)
		}
		if err := sameEvent(got[i], want[i]); err != nil {
			t.Fatalf("%s: event %d (sequence %d): %v", what, i, got[i].Sequence, err)
		}
	}
}

func readAll(t *testing.T, ctx context.Context, l eventlog.Log) []events.Event {
	t.Helper()
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	evs, err := l.Read(ctx, 0, 0)
	if err != nil {
		t.Fatalf("Read(0, 0): %v", err)
	}
	return evs
}

func syncedState(t *testing.T, ctx context.Context, l eventlog.Log) *state.State {
	t.Helper()
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	st, err := l.State(ctx)
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	return st
}

func stateJSON(t *testing.T, st *state.State) string {
	t.Helper()
	return objectJSON(t, st)
}

func objectJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %T: %v", v, err)
	}
	return string(b)
}

// watcher runs l.Watch in a goroutine and hands the events over a channel.
type watcher struct {
	ch     chan events.Event
	done   chan struct{}
	err    error
	cancel context.CancelFunc
	want   uint64 // the sequence the next event must have
}

func startWatch(t *testing.T, ctx context.Context, l eventlog.Log, from uint64) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{ch: make(chan events.Event, 1024), done: make(chan struct{}), cancel: cancel, want: max(from, 1)}
	go func() {
		defer close(w.done)
		w.err = l.Watch(ctx, from, func(ev events.Event) error {
			select {
			case w.ch <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// next collects n events from the watcher, failing at once on a gap or a
// duplicate, and on timeout or if the watch ends first.
func (w *watcher) next(t *testing.T, ctx context.Context, n int) []events.Event {
	t.Helper()
	out := make([]events.Event, 0, n)
	take := func(ev events.Event) {
		t.Helper()
		if ev.Sequence != w.want {
			t.Fatalf("watch delivered sequence %d, want %d (a gap, a duplicate or out of order)", ev.Sequence, w.want)
		}
		w.want++
		out = append(out, ev)
	}
	for len(out) < n {
		select {
		case ev := <-w.ch:
			take(ev)
		case <-w.done:
			// Take what was delivered before the end.
			for len(out) < n {
				select {
				case ev := <-w.ch:
					take(ev)
					continue
				default:
				}
				t.Fatalf("watch ended after %d of %d events: %v", len(out), n, w.err)
			}
		case <-ctx.Done():
			t.Fatalf("watch delivered %d of %d events before %v", len(out), n, ctx.Err())
		}
	}
	return out
}

// quiet fails if the watcher delivers anything within d.
func (w *watcher) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case ev := <-w.ch:
		t.Fatalf("watch delivered an unexpected event with sequence %d (%s %s)", ev.Sequence, ev.Type, ev.Subject)
	case <-w.done:
		t.Fatalf("watch ended unexpectedly: %v", w.err)
	case <-time.After(d):
	}
}

// stop cancels the watch and checks that it ends with context.Canceled.
func (w *watcher) stop(t *testing.T, ctx context.Context) {
	t.Helper()
	w.cancel()
	select {
	case <-w.done:
	case <-ctx.Done():
		t.Fatalf("watch did not end after its context was cancelled")
	}
	if !errors.Is(w.err, context.Canceled) {
		t.Fatalf("watch ended with %v, want context.Canceled", w.err)
	}
}

// ---- subtests ----

func testAppendSequences(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	batches := [][]events.Event{
		{registered(t, "n1", 1)},
		{registered(t, "n2", 2), desired(t, "n1", events.PowerOn), observed(t, "n1", events.PowerOff)},
		{desired(t, "n2", events.PowerOff)},
		{observed(t, "n1", events.PowerOn), observed(t, "n2", events.PowerOn), desired(t, "n1", events.PowerCycle), observed(t, "n1", events.PowerOff), observed(t, "n1", events.PowerOn)},
		{mk(t, events.MemberJoined, "cm1", &events.MemberJoinedData{Address: "cm1:7000", Voter: true})},
	}
	var all, acked []events.Event
	next := b.at(1)
	for _, batch := range batches {
		out := appendOK(t, ctx, l, batch...)
		checkSeqs(t, "Append", out, next)
		for i := range out {
			if err := sameEvent(out[i], batch[i]); err != nil {
				t.Fatalf("Append changed event %d of its batch: %v", i, err)
			}
		}
		next += uint64(len(batch))
		all = append(all, batch...)
		acked = append(acked, out...)
	}
	got := readAll(t, ctx, l)
	checkSame(t, "Read(0, 0)", got, b.plus(acked))
	checkSeqs(t, "Read(0, 0)", got, 1)
	mine, err := l.Read(ctx, b.at(1), 0)
	if err != nil {
		t.Fatalf("Read(%d, 0): %v", b.at(1), err)
	}
	checkSame(t, fmt.Sprintf("Read(%d, 0)", b.at(1)), mine, acked)
	if st := syncedState(t, ctx, l); st.Sequence != b.at(len(all)) {
		t.Fatalf("State().Sequence = %d, want %d", st.Sequence, b.at(len(all)))
	}

	// The writer's sequence is ignored: the log assigns it.
	ev := desired(t, "n2", events.PowerOn)
	ev.Sequence = next + 999
	out := appendOK(t, ctx, l, ev)
	if out[0].Sequence != next {
		t.Fatalf("Append of an event carrying sequence %d gave sequence %d, want %d", next+999, out[0].Sequence, next)
	}
}

// testBaseline checks the log as newLog hands it over: its state is the
// projection of its events, and there is nothing after them. (For an empty
// log: the empty state, and nothing to read from anywhere.)
func testBaseline(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	st := syncedState(t, ctx, l)
	want := state.New()
	if _, err := want.Apply(b.events); err != nil {
		t.Fatalf("projecting the baseline's %d events: %v", len(b.events), err)
	}
	normalize := func(st *state.State) *state.State {
		c := *st
		if c.Nodes == nil {
			c.Nodes = map[string]*state.Node{}
		}
		if c.Members == nil {
			c.Members = map[string]*state.Member{}
		}
		return &c
	}
	if got, want := stateJSON(t, normalize(st)), stateJSON(t, normalize(want)); got != want {
		t.Fatalf("state of the log before any append is not the projection of its events:\n got %s\nwant %s", got, want)
	}
	for _, from := range []uint64{0, 1} {
		evs, err := l.Read(ctx, from, 0)
		if err != nil {
			t.Fatalf("Read(%d, 0): %v", from, err)
		}
		checkSame(t, fmt.Sprintf("Read(%d, 0) before any append", from), evs, b.events)
	}
	for _, from := range []uint64{b.at(1), b.at(2), b.at(5)} {
		evs, err := l.Read(ctx, from, 0)
		if err != nil || len(evs) != 0 {
			t.Fatalf("Read(%d, 0) past the log's last sequence %d = %d events, %v; want none, nil", from, b.seq, len(evs), err)
		}
	}
}

// checkNothingApplied checks that the log still holds exactly the
// baseline's events and want, that its state is before (JSON), and that
// the next append continues without a hole.
func checkNothingApplied(t *testing.T, ctx context.Context, l eventlog.Log, b *baseline, want []events.Event, before string) {
	t.Helper()
	checkSame(t, "Read after a rejected append", readAll(t, ctx, l), b.plus(want))
	if got := stateJSON(t, syncedState(t, ctx, l)); got != before {
		t.Fatalf("a rejected append changed the state:\nbefore %s\n after %s", before, got)
	}
}

func testRejectUnknownNode(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	acked := appendOK(t, ctx, l, registered(t, "n1", 1))
	before := stateJSON(t, syncedState(t, ctx, l))

	for _, batch := range [][]events.Event{
		{desired(t, "n1", events.PowerOff), desired(t, "n9", events.PowerOff), desired(t, "n1", events.PowerOn)},
		{observed(t, "n9", events.PowerOn)},
		{registered(t, "n2", 2), mk(t, events.ActionStarted, "n9", &events.ActionStartedData{Action: "a1", Reconciler: "power", Operation: "power.off"})},
		{mk(t, events.NodeRemoved, "n1", &events.NodeRemovedData{}), desired(t, "n1", events.PowerOff)},
		{mk(t, events.NodeRemoved, "n9", &events.NodeRemovedData{})},
	} {
		_, err := l.Append(ctx, batch...)
		if !errors.Is(err, state.ErrUnknownNode) {
			t.Fatalf("Append(%s %s, …) = %v, want state.ErrUnknownNode", batch[0].Type, batch[0].Subject, err)
		}
		checkNothingApplied(t, ctx, l, b, acked, before)
	}

	out := appendOK(t, ctx, l, desired(t, "n1", events.PowerOff))
	if out[0].Sequence != b.at(2) {
		t.Fatalf("the append after rejected ones got sequence %d, want %d", out[0].Sequence, b.at(2))
	}
}

func testRejectNodeExists(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	acked := appendOK(t, ctx, l, registered(t, "n1", 1), desired(t, "n1", events.PowerOn))
	before := stateJSON(t, syncedState(t, ctx, l))
	for _, batch := range [][]events.Event{
		{registered(t, "n1", 1)},
		{registered(t, "n2", 2), observed(t, "n1", events.PowerOn), registered(t, "n1", 3)},
		{registered(t, "n3", 3), registered(t, "n3", 3)},
	} {
		_, err := l.Append(ctx, batch...)
		if !errors.Is(err, state.ErrNodeExists) {
			t.Fatalf("Append = %v, want state.ErrNodeExists", err)
		}
		checkNothingApplied(t, ctx, l, b, acked, before)
	}
	// Removing and registering again in one batch is fine.
	out := appendOK(t, ctx, l, mk(t, events.NodeRemoved, "n1", &events.NodeRemovedData{}), registered(t, "n1", 4))
	checkSeqs(t, "Append", out, b.at(3))
	st := syncedState(t, ctx, l)
	if n := st.Nodes["n1"]; n == nil || n.Slot != 4 || n.Desired != "" || n.RegisteredSequence != b.at(4) {
		t.Fatalf("node n1 after remove and register = %+v, want slot 4, no desired power, registered at %d", n, b.at(4))
	}
}

func testRejectUnknownMember(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	acked := appendOK(t, ctx, l, mk(t, events.MemberJoined, "cm1", &events.MemberJoinedData{Address: "cm1:7000", Voter: true}))
	before := stateJSON(t, syncedState(t, ctx, l))
	for _, batch := range [][]events.Event{
		{mk(t, events.MemberLeft, "cm2", &events.MemberLeftData{})},
		{mk(t, events.MemberLeft, "cm1", &events.MemberLeftData{}), mk(t, events.MemberLeft, "cm1", &events.MemberLeftData{})},
	} {
		_, err := l.Append(ctx, batch...)
		if !errors.Is(err, state.ErrUnknownMember) {
			t.Fatalf("Append = %v, want state.ErrUnknownMember", err)
		}
		checkNothingApplied(t, ctx, l, b, acked, before)
	}
}

func testRejectInvalid(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	acked := appendOK(t, ctx, l, registered(t, "n1", 1))
	before := stateJSON(t, syncedState(t, ctx, l))

	bad := map[string]func(*events.Event){
		"bad subject":     func(ev *events.Event) { ev.Subject = "N1" },
		"empty subject":   func(ev *events.Event) { ev.Subject = "" },
		"unknown type":    func(ev *events.Event) { ev.Type = "io.racklet.node.exploded" },
		"bad payload":     func(ev *events.Event) { ev.Data = json.RawMessage(`{"state":"sideways"}`) },
		"null payload":    func(ev *events.Event) { ev.Data = json.RawMessage(`null`) },
		"no id":           func(ev *events.Event) { ev.ID = "" },
		"bad source":      func(ev *events.Event) { ev.Source = "/elsewhere" },
		"no time":         func(ev *events.Event) { ev.Time = time.Time{} },
		"bad specversion": func(ev *events.Event) { ev.SpecVersion = "0.3" },
	}
	for name, mutate := range bad {
		ev := desired(t, "n1", events.PowerOn)
		mutate(&ev)
		batch := []events.Event{desired(t, "n1", events.PowerOff), ev, observed(t, "n1", events.PowerOn)}
		_, err := l.Append(ctx, batch...)
		if !errors.Is(err, events.ErrInvalid) {
			t.Fatalf("%s: Append = %v, want events.ErrInvalid", name, err)
		}
		checkNothingApplied(t, ctx, l, b, acked, before)
	}
	out := appendOK(t, ctx, l, desired(t, "n1", events.PowerOff))
	if out[0].Sequence != b.at(2) {
		t.Fatalf("the append after rejected ones got sequence %d, want %d", out[0].Sequence, b.at(2))
	}
}

// appendN appends n events about node, in batches of 1 to 3: its
// registration first if the log does not hold the node yet, then power
// observations.
func appendN(t *testing.T, ctx context.Context, l eventlog.Log, node string, n int) []events.Event {
	t.Helper()
	var acked []events.Event
	if syncedState(t, ctx, l).Nodes[node] == nil {
		acked = appendOK(t, ctx, l, registered(t, node, 1))
		n--
	}
	for i := 0; i < n; {
		size := min(1+i%3, n-i)
		batch := make([]events.Event, size)
		for j := range batch {
			batch[j] = observed(t, node, []events.PowerState{events.PowerOn, events.PowerOff}[(i+j)%2])
		}
		acked = append(acked, appendOK(t, ctx, l, batch...)...)
		i += size
	}
	return acked
}

func testRead(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	acked := appendN(t, ctx, l, "n1", 20)
	checkSeqs(t, "Append", acked, b.at(1))
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	all := b.plus(acked)
	tests := []struct {
		from  uint64
		limit int
		want  []events.Event
	}{
		// From the start of the log, the baseline's events included.
		{0, 0, all},
		{1, 0, all},
		{0, -1, all},
		{0, 7, all[:7]},
		{1, 1, all[:1]},
		// From the subtest's own events on.
		{b.at(1), 0, acked},
		{b.at(5), 0, acked[4:]},
		{b.at(5), 3, acked[4:7]},
		{b.at(1), 1, acked[:1]},
		{b.at(1), 7, acked[:7]},
		{b.at(18), 10, acked[17:]},
		{b.at(20), 0, acked[19:]},
		{b.at(20), 1, acked[19:]},
		{b.at(21), 0, nil},
		{b.at(21), 5, nil},
		{b.at(1000), 0, nil},
	}
	for _, tt := range tests {
		got, err := l.Read(ctx, tt.from, tt.limit)
		if err != nil {
			t.Fatalf("Read(%d, %d): %v", tt.from, tt.limit, err)
		}
		checkSame(t, fmt.Sprintf("Read(%d, %d)", tt.from, tt.limit), got, tt.want)
	}
}

func testWatchReplayFollow(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	acked := appendN(t, ctx, l, "n1", 10)
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// From 0 and 1: the whole log; from the baseline's end: the subtest's
	// events.
	w0 := startWatch(t, ctx, l, 0)
	w1 := startWatch(t, ctx, l, 1)
	wb := startWatch(t, ctx, l, b.at(1))
	all := b.plus(acked)
	checkSame(t, "Watch(0) replay", w0.next(t, ctx, len(all)), all)
	checkSame(t, "Watch(1) replay", w1.next(t, ctx, len(all)), all)
	checkSame(t, fmt.Sprintf("Watch(%d) replay", b.at(1)), wb.next(t, ctx, 10), acked)

	// Live appends, single and batched, arrive in order, without gaps or
	// duplicates.
	live := appendN(t, ctx, l, "n1", 15)
	checkSeqs(t, "Append", live, b.at(11))
	checkSame(t, "Watch(0) live", w0.next(t, ctx, 15), live)
	checkSame(t, "Watch(1) live", w1.next(t, ctx, 15), live)
	checkSame(t, fmt.Sprintf("Watch(%d) live", b.at(1)), wb.next(t, ctx, 15), live)
	w0.quiet(t, 50*time.Millisecond)
	w1.quiet(t, 0)
	wb.quiet(t, 0)
	w0.stop(t, ctx)
	w1.stop(t, ctx)
	wb.stop(t, ctx)
}

func testWatchFromMiddle(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	acked := appendN(t, ctx, l, "n1", 10)
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	from := b.at(6)
	w := startWatch(t, ctx, l, from)
	checkSame(t, fmt.Sprintf("Watch(%d) replay", from), w.next(t, ctx, 5), acked[5:])
	live := appendN(t, ctx, l, "n1", 5)
	checkSame(t, fmt.Sprintf("Watch(%d) live", from), w.next(t, ctx, 5), live)
	w.quiet(t, 50*time.Millisecond)
	w.stop(t, ctx)

	// From the end exactly: only live events.
	from = b.at(16)
	w = startWatch(t, ctx, l, from)
	w.quiet(t, 50*time.Millisecond)
	live = appendN(t, ctx, l, "n1", 3)
	checkSame(t, fmt.Sprintf("Watch(%d)", from), w.next(t, ctx, 3), live)
	w.stop(t, ctx)
}

func testWatchFromFuture(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	appendN(t, ctx, l, "n1", 5)
	from := b.at(9)
	w := startWatch(t, ctx, l, from)
	more := appendN(t, ctx, l, "n1", 3) // 6, 7, 8 after the baseline: before the watch's start
	checkSeqs(t, "Append", more, b.at(6))
	w.quiet(t, 50*time.Millisecond)
	more = append(more, appendN(t, ctx, l, "n1", 4)...) // 9 … 12
	checkSame(t, fmt.Sprintf("Watch(%d)", from), w.next(t, ctx, 4), more[3:])
	w.stop(t, ctx)
}

func testConcurrentWatchers(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	const watchers, rounds, per = 4, 4, 15
	var acked []events.Event
	type watch struct {
		w     *watcher
		whole bool // from 0: the baseline's events first
	}
	var ws []watch
	for r := range rounds {
		// Start a watcher from the baseline's end in every round, while
		// the log grows.
		ws = append(ws, watch{w: startWatch(t, ctx, l, b.at(1))})
		if r == 1 {
			ws = append(ws, watch{w: startWatch(t, ctx, l, 0), whole: true})
		}
		acked = append(acked, appendN(t, ctx, l, "n1", per)...)
	}
	if len(ws) < watchers {
		t.Fatalf("started %d watchers, want at least %d", len(ws), watchers)
	}
	checkSeqs(t, "Append", acked, b.at(1))
	for i, w := range ws {
		want := acked
		if w.whole {
			want = b.plus(acked)
		}
		checkSame(t, fmt.Sprintf("watcher %d", i), w.w.next(t, ctx, len(want)), want)
	}
	checkSame(t, "Read(0, 0)", readAll(t, ctx, l), b.plus(acked))
	for _, w := range ws {
		w.w.quiet(t, 0)
		w.w.stop(t, ctx)
	}
}

func testWatchCancel(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	appendN(t, ctx, l, "n1", 5)
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	first := b.at(1)

	// Cancelled while waiting for events.
	w := startWatch(t, ctx, l, first)
	w.next(t, ctx, 5)
	w.quiet(t, 20*time.Millisecond)
	w.stop(t, ctx)

	// A deadline ends it with context.DeadlineExceeded. (How many events
	// it replays first is a matter of timing, so only the order is checked.)
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	var got []uint64
	err := l.Watch(dctx, first, func(ev events.Event) error { got = append(got, ev.Sequence); return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch with a deadline = %v, want context.DeadlineExceeded", err)
	}
	for i, seq := range got {
		if seq != b.at(i+1) || i >= 5 {
			t.Fatalf("Watch(%d) with a deadline delivered %v, want a prefix of %d … %d", first, got, first, b.at(5))
		}
	}

	// Cancelled from within fn, while replaying.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = l.Watch(cctx, first, func(ev events.Event) error {
		if ev.Sequence == b.at(2) {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch cancelled from fn = %v, want context.Canceled", err)
	}

	// Already cancelled.
	cctx, cancel = context.WithCancel(ctx)
	cancel()
	done := make(chan error, 1)
	go func() { done <- l.Watch(cctx, b.at(6), func(events.Event) error { return nil }) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch with a cancelled context = %v, want context.Canceled", err)
		}
	case <-ctx.Done():
		t.Fatalf("Watch with a cancelled context did not return")
	}
}

func testWatchFnError(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	appendN(t, ctx, l, "n1", 5)
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	errStop := errors.New("eventlogtest: stop here")
	var seen []uint64
	err := l.Watch(ctx, b.at(2), func(ev events.Event) error {
		seen = append(seen, ev.Sequence)
		if ev.Sequence == b.at(3) {
			return errStop
		}
		return nil
	})
	if err != errStop {
		t.Fatalf("Watch = %v, want fn's error as is", err)
	}
	if want := fmt.Sprint([]uint64{b.at(2), b.at(3)}); fmt.Sprint(seen) != want {
		t.Fatalf("Watch delivered %v, want %s", seen, want)
	}

	// An error while following live appends is returned as well.
	errc := make(chan error, 1)
	go func() {
		errc <- l.Watch(ctx, b.at(6), func(ev events.Event) error {
			if ev.Sequence == b.at(7) {
				return errStop
			}
			return nil
		})
	}()
	appendN(t, ctx, l, "n1", 3)
	select {
	case err := <-errc:
		if err != errStop {
			t.Fatalf("Watch following live appends = %v, want fn's error as is", err)
		}
	case <-ctx.Done():
		t.Fatalf("Watch did not return fn's error")
	}
}

func testStateAfterSync(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	joined := func(m, addr string, voter bool) events.Event {
		return mk(t, events.MemberJoined, m, &events.MemberJoinedData{Address: addr, Voter: voter})
	}
	started := func(node, id, op string) events.Event {
		return mk(t, events.ActionStarted, node, &events.ActionStartedData{Action: id, Reconciler: "power", Operation: op, Attempt: 1})
	}
	obsOn := observed(t, "n1", events.PowerOn)
	batches := [][]events.Event{
		/* 1-3 */ {mk(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1, Member: "cm1"}), registered(t, "n2", 2), registered(t, "n3", 3)},
		/* 4 */ {desired(t, "n1", events.PowerOff)},
		/* 5 */ {obsOn},
		/* 6 */ {desired(t, "n2", events.PowerCycle)},
		/* 7-8 */ {started("n1", "a1", "power.off"), mk(t, events.ActionSucceeded, "n1", &events.ActionSucceededData{Action: "a1"})},
		/* 9 */ {started("n2", "a2", "power.cycle")},
		/* 10 */ {mk(t, events.ActionFailed, "n2", &events.ActionFailedData{Action: "a2", Reason: "bmc timeout", Retry: true})},
		/* 11-13 */ {joined("cm1", "cm1:7000", true), joined("cm2", "cm2:7000", true), joined("cm3", "cm3:7000", false)},
		/* 14 */ {mk(t, events.MemberLeft, "cm3", &events.MemberLeftData{Reason: "removed"})},
		/* 15 */ {mk(t, events.NodeRemoved, "n3", &events.NodeRemovedData{Reason: "gone"})},
		/* 16 */ {mk(t, events.ActionSucceeded, "n2", &events.ActionSucceededData{Action: "other"})},
	}
	for _, batch := range batches {
		appendOK(t, ctx, l, batch...)
	}
	st := syncedState(t, ctx, l)
	if st.Sequence != b.at(16) {
		t.Fatalf("Sequence = %d, want %d", st.Sequence, b.at(16))
	}
	if len(st.Nodes) != len(b.state.Nodes)+2 || st.Nodes["n3"] != nil {
		t.Fatalf("nodes = %s, want the baseline's %d and n1 and n2", stateJSON(t, st), len(b.state.Nodes))
	}
	n1, n2 := st.Nodes["n1"], st.Nodes["n2"]
	if n1 == nil || n2 == nil {
		t.Fatalf("nodes = %s, want the baseline's and n1 and n2", stateJSON(t, st))
	}
	want1 := state.Node{Name: "n1", Slot: 1, Member: "cm1", Desired: events.PowerOff, DesiredSequence: b.at(4),
		Observed: events.PowerOn, ObservedSequence: b.at(5), ObservedAt: obsOn.Time,
		LastAction:         &state.Action{ID: "a1", Reconciler: "power", Operation: "power.off", Status: "succeeded", Sequence: b.at(8)},
		RegisteredSequence: b.at(1), Sequence: b.at(8)}
	want2 := state.Node{Name: "n2", Slot: 2, Desired: events.PowerOn, DesiredSequence: b.at(6), CycleSequence: b.at(6),
		LastAction:         &state.Action{ID: "a2", Reconciler: "power", Operation: "power.cycle", Status: "failed", Reason: "bmc timeout", Sequence: b.at(10)},
		RegisteredSequence: b.at(2), Sequence: b.at(10)}
	for _, c := range []struct{ got, want *state.Node }{{n1, &want1}, {n2, &want2}} {
		if !c.got.ObservedAt.Equal(c.want.ObservedAt) {
			t.Fatalf("node %s observed at %v, want %v", c.want.Name, c.got.ObservedAt, c.want.ObservedAt)
		}
		g, w := *c.got, *c.want
		g.ObservedAt, w.ObservedAt = time.Time{}, time.Time{}
		if gj, wj := objectJSON(t, g), objectJSON(t, w); gj != wj {
			t.Fatalf("node %s:\n got %s\nwant %s", c.want.Name, gj, wj)
		}
	}
	if len(st.Members) != len(b.state.Members)+2 || st.Members["cm3"] != nil {
		t.Fatalf("members = %s, want the baseline's %d and cm1 and cm2", stateJSON(t, st), len(b.state.Members))
	}
	for _, want := range []state.Member{{Name: "cm1", Address: "cm1:7000", Voter: true, Sequence: b.at(11)}, {Name: "cm2", Address: "cm2:7000", Voter: true, Sequence: b.at(12)}} {
		if got := st.Members[want.Name]; got == nil || *got != want {
			t.Fatalf("member %s = %+v, want %+v", want.Name, got, want)
		}
	}
	b.checkUntouched(t, st)
}

func testStateIsCopy(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	appendOK(t, ctx, l, registered(t, "n1", 1), desired(t, "n1", events.PowerOn),
		mk(t, events.ActionStarted, "n1", &events.ActionStartedData{Action: "a1", Reconciler: "power", Operation: "power.on"}),
		mk(t, events.MemberJoined, "cm1", &events.MemberJoinedData{Address: "cm1:7000", Voter: true}))
	st := syncedState(t, ctx, l)
	before := stateJSON(t, st)

	st.Sequence = 99
	st.Nodes["n1"].Desired = events.PowerOff
	st.Nodes["n1"].LastAction.Status = "failed"
	st.Nodes["n2"] = &state.Node{Name: "n2"}
	st.Members["cm1"].Voter = false
	delete(st.Members, "cm1")
	// The baseline's own objects too.
	for name, n := range st.Nodes {
		n.Slot = 99
		delete(st.Nodes, name)
	}
	for name, m := range st.Members {
		m.Address = "elsewhere"
		delete(st.Members, name)
	}

	after := syncedState(t, ctx, l)
	if got := stateJSON(t, after); got != before {
		t.Fatalf("mutating the result of State changed the log's state:\nbefore %s\n after %s", before, got)
	}
	b.checkUntouched(t, after)
	// And the log still works from its own state.
	out := appendOK(t, ctx, l, observed(t, "n1", events.PowerOn))
	if out[0].Sequence != b.at(5) {
		t.Fatalf("sequence after mutating a copy = %d, want %d", out[0].Sequence, b.at(5))
	}
	if _, err := l.Append(ctx, observed(t, "n2", events.PowerOn)); !errors.Is(err, state.ErrUnknownNode) {
		t.Fatalf("Append for a node added only to a copy = %v, want state.ErrUnknownNode", err)
	}
}

func testConcurrentAppenders(t *testing.T, l eventlog.Log, b *baseline) {
	ctx := ctxFor(t)
	const writers, per = 8, 25
	w := startWatch(t, ctx, l, b.at(1))

	var (
		mu    sync.Mutex
		acked []events.Event
		wg    sync.WaitGroup
		errs  = make(chan error, writers)
	)
	// Build the batches up front: t.Fatal must not run in the writers.
	plan := make([][][]events.Event, writers)
	for g := range writers {
		node := fmt.Sprintf("g%d", g)
		plan[g] = append(plan[g], []events.Event{registered(t, node, g+1)})
		for sent := 1; sent < per; {
			var batch []events.Event
			for range min(1+(sent+g)%3, per-sent) {
				batch = append(batch, observed(t, node, []events.PowerState{events.PowerOn, events.PowerOff}[(sent+len(batch))%2]))
			}
			plan[g] = append(plan[g], batch)
			sent += len(batch)
		}
	}
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, batch := range plan[g] {
				out, err := l.Append(ctx, batch...)
				if err != nil {
					errs <- fmt.Errorf("writer %d: Append: %w", g, err)
					return
				}
				if len(out) != len(batch) {
					errs <- fmt.Errorf("writer %d: Append of %d events returned %d", g, len(batch), len(out))
					return
				}
				for i := range out {
					if err := sameEvent(out[i], batch[i]); err != nil {
						errs <- fmt.Errorf("writer %d: Append changed an event: %w", g, err)
						return
					}
					if i > 0 && out[i].Sequence != out[i-1].Sequence+1 {
						errs <- fmt.Errorf("writer %d: a batch got sequences %d then %d", g, out[i-1].Sequence, out[i].Sequence)
						return
					}
				}
				mu.Lock()
				acked = append(acked, out...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = writers * per
	if len(acked) != total {
		t.Fatalf("%d events acknowledged, want %d", len(acked), total)
	}

	bySeq := map[uint64]events.Event{}
	for _, ev := range acked {
		if prev, dup := bySeq[ev.Sequence]; dup {
			t.Fatalf("sequence %d acknowledged twice: %s and %s", ev.Sequence, prev.ID, ev.ID)
		}
		bySeq[ev.Sequence] = ev
	}
	whole := readAll(t, ctx, l)
	checkSeqs(t, "Read(0, 0)", whole, 1)
	if len(whole) != len(b.events)+total {
		t.Fatalf("Read(0, 0) returned %d events, want the baseline's %d and %d", len(whole), len(b.events), total)
	}
	checkSame(t, "Read(0, 0) up to the baseline", whole[:len(b.events)], b.events)
	got := whole[len(b.events):]
	ids := map[string]bool{}
	for _, ev := range got {
		if ids[ev.ID] {
			t.Fatalf("event %s appears twice in the log", ev.ID)
		}
		ids[ev.ID] = true
		want, ok := bySeq[ev.Sequence]
		if !ok {
			t.Fatalf("log holds sequence %d that no Append acknowledged", ev.Sequence)
		}
		if err := sameEvent(ev, want); err != nil {
			t.Fatalf("log's event %d differs from the acknowledged one: %v", ev.Sequence, err)
		}
	}
	checkSame(t, "Watch", w.next(t, ctx, total), got)
	w.quiet(t, 20*time.Millisecond)
	w.stop(t, ctx)

	st := syncedState(t, ctx, l)
	if st.Sequence != b.at(total) || len(st.Nodes) != len(b.state.Nodes)+writers {
		t.Fatalf("state at %d with %d nodes, want %d with %d (the baseline's %d and %d)", st.Sequence, len(st.Nodes), b.at(total), len(b.state.Nodes)+writers, len(b.state.Nodes), writers)
	}
	for g := range writers {
		node := fmt.Sprintf("g%d", g)
		n := st.Nodes[node]
		if n == nil {
			t.Fatalf("node %s missing", node)
		}
		// The node's last event is the last acknowledged one about it.
		var last uint64
		for _, ev := range acked {
			if ev.Subject == node && ev.Sequence > last {
				last = ev.Sequence
			}
		}
		if n.Sequence != last || n.ObservedSequence != last {
			t.Fatalf("node %s at sequence %d (observed %d), want %d", node, n.Sequence, n.ObservedSequence, last)
		}
	}
	b.checkUntouched(t, st)
}
