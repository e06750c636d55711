package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/racklet/rack/events"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// ev builds a valid event with a fixed time (t0 plus sec seconds), so that
// expected states can be written out in full.
func ev(t testing.TB, typ events.Type, subject string, p events.Payload) events.Event {
	t.Helper()
	e, err := events.New(events.Source("rack1", "m1"), typ, subject, p)
	if err != nil {
		t.Fatalf("events.New(%s, %s): %v", typ, subject, err)
	}
	e.Time = t0
	return e
}

func reg(t testing.TB, n string, slot int) events.Event {
	return ev(t, events.NodeRegistered, n, &events.NodeRegisteredData{Slot: slot})
}
func regMember(t testing.TB, n string, slot int, member string) events.Event {
	return ev(t, events.NodeRegistered, n, &events.NodeRegisteredData{Slot: slot, Member: member})
}
func rm(t testing.TB, n string) events.Event {
	return ev(t, events.NodeRemoved, n, &events.NodeRemovedData{Reason: "test"})
}
func want(t testing.TB, n string, s events.PowerState, force bool) events.Event {
	return ev(t, events.NodePowerDesired, n, &events.PowerDesiredData{State: s, Force: force})
}
func obs(t testing.TB, n string, s events.PowerState) events.Event {
	return ev(t, events.NodePowerObserved, n, &events.PowerObservedData{State: s})
}
func started(t testing.TB, n, id string) events.Event {
	return ev(t, events.ActionStarted, n, &events.ActionStartedData{Action: id, Reconciler: "power", Operation: "power.off"})
}
func succeeded(t testing.TB, n, id string) events.Event {
	return ev(t, events.ActionSucceeded, n, &events.ActionSucceededData{Action: id})
}
func failed(t testing.TB, n, id, reason string) events.Event {
	return ev(t, events.ActionFailed, n, &events.ActionFailedData{Action: id, Reason: reason})
}
func joined(t testing.TB, m, addr string, voter bool) events.Event {
	return ev(t, events.MemberJoined, m, &events.MemberJoinedData{Address: addr, Voter: voter})
}
func left(t testing.TB, m string) events.Event {
	return ev(t, events.MemberLeft, m, &events.MemberLeftData{})
}

func batch(evs ...events.Event) []events.Event { return evs }

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding: %v", err)
	}
	return string(b)
}

func mustApply(t testing.TB, s *State, evs []events.Event) []events.Event {
	t.Helper()
	out, err := s.Apply(evs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return out
}

func TestApply(t *testing.T) {
	tests := []struct {
		name  string
		setup [][]events.Event
		batch []events.Event
		want  *State
	}{
		{
			name:  "register",
			batch: batch(regMember(t, "n1", 3, "m3")),
			want: &State{Sequence: 1, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 3, Member: "m3", RegisteredSequence: 1, Sequence: 1},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "remove",
			setup: [][]events.Event{{reg(t, "n1", 1), reg(t, "n2", 2)}},
			batch: batch(rm(t, "n1")),
			want: &State{Sequence: 3, Nodes: map[string]*Node{
				"n2": {Name: "n2", Slot: 2, RegisteredSequence: 2, Sequence: 2},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "desired off",
			setup: [][]events.Event{{reg(t, "n1", 1)}},
			batch: batch(want(t, "n1", events.PowerOff, false)),
			want: &State{Sequence: 2, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, Desired: events.PowerOff, DesiredSequence: 2, RegisteredSequence: 1, Sequence: 2},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "desired cycle forced",
			setup: [][]events.Event{{reg(t, "n1", 1)}},
			batch: batch(want(t, "n1", events.PowerCycle, true)),
			want: &State{Sequence: 2, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, Desired: events.PowerOn, DesiredSequence: 2, CycleSequence: 2, Force: true, RegisteredSequence: 1, Sequence: 2},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "off after a pending cycle supersedes it, clears force",
			setup: [][]events.Event{{reg(t, "n1", 1)}, {want(t, "n1", events.PowerCycle, true)}},
			batch: batch(want(t, "n1", events.PowerOff, false)),
			want: &State{Sequence: 3, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, Desired: events.PowerOff, DesiredSequence: 3, CycleSequence: 2, CycleDoneSequence: 2, RegisteredSequence: 1, Sequence: 3},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "on after a pending cycle keeps it pending",
			setup: [][]events.Event{{reg(t, "n1", 1)}, {want(t, "n1", events.PowerCycle, false)}},
			batch: batch(want(t, "n1", events.PowerOn, false)),
			want: &State{Sequence: 3, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, Desired: events.PowerOn, DesiredSequence: 3, CycleSequence: 2, RegisteredSequence: 1, Sequence: 3},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "observed",
			setup: [][]events.Event{{reg(t, "n1", 1)}},
			batch: batch(obs(t, "n1", events.PowerOn)),
			want: &State{Sequence: 2, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, Observed: events.PowerOn, ObservedSequence: 2, ObservedAt: t0, RegisteredSequence: 1, Sequence: 2},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "action started",
			setup: [][]events.Event{{reg(t, "n1", 1)}},
			batch: batch(started(t, "n1", "a1")),
			want: &State{Sequence: 2, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, LastAction: &Action{ID: "a1", Reconciler: "power", Operation: "power.off", Status: "started", Sequence: 2}, RegisteredSequence: 1, Sequence: 2},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "action succeeded",
			setup: [][]events.Event{{reg(t, "n1", 1)}, {started(t, "n1", "a1")}},
			batch: batch(succeeded(t, "n1", "a1")),
			want: &State{Sequence: 3, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, LastAction: &Action{ID: "a1", Reconciler: "power", Operation: "power.off", Status: "succeeded", Sequence: 3}, RegisteredSequence: 1, Sequence: 3},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "action failed",
			setup: [][]events.Event{{reg(t, "n1", 1)}, {started(t, "n1", "a1")}},
			batch: batch(failed(t, "n1", "a1", "bmc timeout")),
			want: &State{Sequence: 3, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, LastAction: &Action{ID: "a1", Reconciler: "power", Operation: "power.off", Status: "failed", Reason: "bmc timeout", Sequence: 3}, RegisteredSequence: 1, Sequence: 3},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "failed then retried and succeeded clears the reason",
			setup: [][]events.Event{{reg(t, "n1", 1)}, {started(t, "n1", "a1")}, {failed(t, "n1", "a1", "x")}},
			batch: batch(succeeded(t, "n1", "a1")),
			want: &State{Sequence: 4, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, LastAction: &Action{ID: "a1", Reconciler: "power", Operation: "power.off", Status: "succeeded", Sequence: 4}, RegisteredSequence: 1, Sequence: 4},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "outcome of another action takes a sequence, changes nothing",
			setup: [][]events.Event{{reg(t, "n1", 1)}, {started(t, "n1", "a1")}},
			batch: batch(succeeded(t, "n1", "a0"), failed(t, "n1", "a0", "x")),
			want: &State{Sequence: 4, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, LastAction: &Action{ID: "a1", Reconciler: "power", Operation: "power.off", Status: "started", Sequence: 2}, RegisteredSequence: 1, Sequence: 2},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "outcome of an action on a removed node is accepted",
			setup: [][]events.Event{{reg(t, "n1", 1)}, {started(t, "n1", "a1")}, {rm(t, "n1")}},
			batch: batch(succeeded(t, "n1", "a1"), failed(t, "n9", "a2", "x")),
			want:  &State{Sequence: 5, Nodes: map[string]*Node{}, Members: map[string]*Member{}},
		},
		{
			name:  "member joined",
			batch: batch(joined(t, "m1", "m1:7000", true)),
			want:  &State{Sequence: 1, Nodes: map[string]*Node{}, Members: map[string]*Member{"m1": {Name: "m1", Address: "m1:7000", Voter: true, Sequence: 1}}},
		},
		{
			name:  "member joined again updates",
			setup: [][]events.Event{{joined(t, "m1", "m1:7000", true)}},
			batch: batch(joined(t, "m1", "m1:7001", false)),
			want:  &State{Sequence: 2, Nodes: map[string]*Node{}, Members: map[string]*Member{"m1": {Name: "m1", Address: "m1:7001", Voter: false, Sequence: 2}}},
		},
		{
			name:  "member left",
			setup: [][]events.Event{{joined(t, "m1", "m1:7000", true), joined(t, "m2", "m2:7000", true)}},
			batch: batch(left(t, "m1")),
			want:  &State{Sequence: 3, Nodes: map[string]*Node{}, Members: map[string]*Member{"m2": {Name: "m2", Address: "m2:7000", Voter: true, Sequence: 2}}},
		},
		{
			name:  "member joined and left in one batch",
			batch: batch(joined(t, "m1", "a", true), left(t, "m1")),
			want:  &State{Sequence: 2, Nodes: map[string]*Node{}, Members: map[string]*Member{}},
		},
		{
			name:  "member left and joined again in one batch",
			setup: [][]events.Event{{joined(t, "m1", "a", true)}},
			batch: batch(left(t, "m1"), joined(t, "m1", "b", false)),
			want:  &State{Sequence: 3, Nodes: map[string]*Node{}, Members: map[string]*Member{"m1": {Name: "m1", Address: "b", Sequence: 3}}},
		},
		{
			name:  "register and set power in one batch",
			batch: batch(reg(t, "n1", 1), want(t, "n1", events.PowerOn, false), obs(t, "n1", events.PowerOff), started(t, "n1", "a1")),
			want: &State{Sequence: 4, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, Desired: events.PowerOn, DesiredSequence: 2, Observed: events.PowerOff, ObservedSequence: 3, ObservedAt: t0,
					LastAction: &Action{ID: "a1", Reconciler: "power", Operation: "power.off", Status: "started", Sequence: 4}, RegisteredSequence: 1, Sequence: 4},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "register remove register in one batch",
			batch: batch(reg(t, "n1", 1), want(t, "n1", events.PowerOn, false), rm(t, "n1"), reg(t, "n1", 7)),
			want: &State{Sequence: 4, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 7, RegisteredSequence: 4, Sequence: 4},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "remove and register an existing node in one batch",
			setup: [][]events.Event{{reg(t, "n1", 1), want(t, "n1", events.PowerOff, false), started(t, "n1", "a1")}},
			batch: batch(rm(t, "n1"), reg(t, "n1", 2), obs(t, "n1", events.PowerOn)),
			want: &State{Sequence: 6, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 2, Observed: events.PowerOn, ObservedSequence: 6, ObservedAt: t0, RegisteredSequence: 5, Sequence: 6},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "remove register remove an existing node in one batch",
			setup: [][]events.Event{{reg(t, "n1", 1), reg(t, "n2", 2)}},
			batch: batch(rm(t, "n1"), reg(t, "n1", 2), rm(t, "n1")),
			want: &State{Sequence: 5, Nodes: map[string]*Node{
				"n2": {Name: "n2", Slot: 2, RegisteredSequence: 2, Sequence: 2},
			}, Members: map[string]*Member{}},
		},
		{
			name:  "empty batch",
			setup: [][]events.Event{{reg(t, "n1", 1)}},
			batch: nil,
			want: &State{Sequence: 1, Nodes: map[string]*Node{
				"n1": {Name: "n1", Slot: 1, RegisteredSequence: 1, Sequence: 1},
			}, Members: map[string]*Member{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			for _, b := range tt.setup {
				mustApply(t, s, b)
			}
			from := s.Sequence + 1
			out := mustApply(t, s, tt.batch)
			if len(out) != len(tt.batch) {
				t.Fatalf("Apply returned %d events, want %d", len(out), len(tt.batch))
			}
			for i, e := range out {
				if e.Sequence != from+uint64(i) {
					t.Fatalf("event %d got sequence %d, want %d", i, e.Sequence, from+uint64(i))
				}
				if e.ID != tt.batch[i].ID || tt.batch[i].Sequence != 0 {
					t.Fatalf("Apply changed its input or the event's id")
				}
			}
			if got, want := mustJSON(t, s), mustJSON(t, tt.want); got != want {
				t.Fatalf("state:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestApplyRejects(t *testing.T) {
	setup := [][]events.Event{
		{reg(t, "n1", 1), reg(t, "n2", 2), want(t, "n1", events.PowerOn, false), started(t, "n1", "a1")},
		{joined(t, "m1", "m1:7000", true), obs(t, "n2", events.PowerOff)},
	}
	invalid := want(t, "n1", events.PowerOff, false)
	invalid.Data = json.RawMessage(`{"state":"sideways"}`)
	unknownType := want(t, "n1", events.PowerOff, false)
	unknownType.Type = "io.racklet.node.exploded"
	noData := obs(t, "n1", events.PowerOn)
	noData.Data = nil

	tests := []struct {
		name  string
		batch []events.Event
		err   error
	}{
		{"desired unknown node", batch(want(t, "n9", events.PowerOn, false)), ErrUnknownNode},
		{"observed unknown node", batch(obs(t, "n9", events.PowerOn)), ErrUnknownNode},
		{"action on unknown node", batch(started(t, "n9", "a1")), ErrUnknownNode},
		{"remove unknown node", batch(rm(t, "n9")), ErrUnknownNode},
		{"unknown node in the middle", batch(want(t, "n1", events.PowerOff, false), obs(t, "n9", events.PowerOn), want(t, "n2", events.PowerOff, false)), ErrUnknownNode},
		{"removed earlier in the batch", batch(rm(t, "n1"), want(t, "n1", events.PowerOff, false)), ErrUnknownNode},
		{"removed twice in the batch", batch(rm(t, "n2"), rm(t, "n2")), ErrUnknownNode},
		{"register existing", batch(reg(t, "n1", 1)), ErrNodeExists},
		{"register twice in the batch", batch(reg(t, "n3", 3), obs(t, "n3", events.PowerOn), reg(t, "n3", 3)), ErrNodeExists},
		{"register after register-remove-register", batch(rm(t, "n1"), reg(t, "n1", 1), reg(t, "n1", 1)), ErrNodeExists},
		{"member left unknown", batch(left(t, "m9")), ErrUnknownMember},
		{"member left twice", batch(left(t, "m1"), left(t, "m1")), ErrUnknownMember},
		{"member joined then left twice", batch(joined(t, "m2", "x", true), left(t, "m2"), left(t, "m2")), ErrUnknownMember},
		{"invalid payload", batch(want(t, "n1", events.PowerOff, false), invalid), events.ErrInvalid},
		{"unknown type", batch(unknownType), events.ErrInvalid},
		{"no data", batch(reg(t, "n3", 3), noData), events.ErrInvalid},
		{"valid batch then rejection", batch(reg(t, "n3", 3), want(t, "n3", events.PowerOn, false), joined(t, "m2", "x", true), left(t, "m1"), rm(t, "n2"), obs(t, "n2", events.PowerOn)), ErrUnknownNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			for _, b := range setup {
				mustApply(t, s, b)
			}
			before := mustJSON(t, s)
			// Keep pointers to the live objects: a rejection must not
			// have written through them either.
			n1, m1 := s.Nodes["n1"], s.Members["m1"]
			n1Before, m1Before := mustJSON(t, n1), mustJSON(t, m1)

			out, err := s.Apply(tt.batch)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Apply = %v, want %v", err, tt.err)
			}
			if out != nil {
				t.Fatalf("a rejected Apply returned %d events", len(out))
			}
			if after := mustJSON(t, s); after != before {
				t.Fatalf("a rejected batch changed the state:\nbefore %s\n after %s", before, after)
			}
			if mustJSON(t, n1) != n1Before || mustJSON(t, m1) != m1Before || s.Nodes["n1"] != n1 || s.Members["m1"] != m1 {
				t.Fatalf("a rejected batch changed a node or member in place")
			}
			// The next batch continues the sequence without a hole.
			out = mustApply(t, s, batch(obs(t, "n1", events.PowerOn)))
			if out[0].Sequence != 7 {
				t.Fatalf("the batch after a rejection got sequence %d, want 7", out[0].Sequence)
			}
		})
	}
}

// randomBatch builds a batch over a few names, so that many batches fit
// and many are rejected.
func randomBatch(t testing.TB, r *rand.Rand) []events.Event {
	nodes := []string{"n1", "n2", "n3", "n4"}
	members := []string{"m1", "m2", "m3"}
	states := []events.PowerState{events.PowerOn, events.PowerOff, events.PowerCycle}
	b := make([]events.Event, 1+r.IntN(4))
	for i := range b {
		n := nodes[r.IntN(len(nodes))]
		m := members[r.IntN(len(members))]
		var e events.Event
		switch r.IntN(11) {
		case 0:
			e = ev(t, events.NodeRegistered, n, &events.NodeRegisteredData{Slot: r.IntN(8), Member: m})
		case 1:
			e = rm(t, n)
		case 2:
			e = want(t, n, states[r.IntN(3)], r.IntN(2) == 0)
		case 3:
			e = obs(t, n, states[r.IntN(2)])
		case 4:
			e = started(t, n, fmt.Sprintf("a%d", r.IntN(3)))
		case 5:
			e = succeeded(t, n, fmt.Sprintf("a%d", r.IntN(3)))
		case 6:
			e = failed(t, n, fmt.Sprintf("a%d", r.IntN(3)), "no")
		case 7:
			e = joined(t, m, fmt.Sprintf("%s:%d", m, r.IntN(3)), r.IntN(2) == 0)
		case 8:
			e = left(t, m)
		case 9:
			e = reg(t, n, 1) // registers are likely to clash
		default:
			e = want(t, n, events.PowerOn, false)
			if r.IntN(4) == 0 {
				e.Data = json.RawMessage(`{"state":"sideways"}`)
			}
		}
		e.Time = t0.Add(time.Duration(r.IntN(1000)) * time.Second)
		b[i] = e
	}
	return b
}

func TestApplyDeterministic(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 42} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
			var batches [][]events.Event
			for range 300 {
				batches = append(batches, randomBatch(t, r))
			}
			a, b := New(), New()
			var mid *State
			applied, rejected := 0, 0
			for i, bt := range batches {
				outA, errA := a.Apply(bt)
				outB, errB := b.Apply(bt)
				if fmt.Sprint(errA) != fmt.Sprint(errB) {
					t.Fatalf("batch %d: errors differ: %v vs %v", i, errA, errB)
				}
				if mustJSON(t, outA) != mustJSON(t, outB) {
					t.Fatalf("batch %d: returned events differ", i)
				}
				if errA != nil {
					rejected++
				} else {
					applied++
				}
				if i == len(batches)/2 {
					mid = a.Clone()
				}
			}
			if applied < 30 || rejected < 30 {
				t.Fatalf("the random batches are lopsided: %d applied, %d rejected", applied, rejected)
			}
			ja, jb := mustJSON(t, a), mustJSON(t, b)
			if ja != jb {
				t.Fatalf("two states fed the same batches differ:\n%s\n%s", ja, jb)
			}
			// A clone taken midway, fed the rest, ends in the same state.
			for _, bt := range batches[len(batches)/2+1:] {
				_, _ = mid.Apply(bt)
			}
			if jm := mustJSON(t, mid); jm != ja {
				t.Fatalf("state continued from a mid-way clone differs:\n%s\n%s", jm, ja)
			}
			// And a JSON round trip of the state (what a snapshot does) is
			// exact.
			var back State
			if err := json.Unmarshal([]byte(ja), &back); err != nil {
				t.Fatal(err)
			}
			if mustJSON(t, &back) != ja {
				t.Fatalf("state does not survive a JSON round trip")
			}
		})
	}
}

func TestClone(t *testing.T) {
	s := New()
	mustApply(t, s, batch(regMember(t, "n1", 1, "m1"), want(t, "n1", events.PowerOn, true), obs(t, "n1", events.PowerOff),
		started(t, "n1", "a1"), reg(t, "n2", 2), joined(t, "m1", "m1:7000", true)))
	before := mustJSON(t, s)

	c := s.Clone()
	if mustJSON(t, c) != before {
		t.Fatalf("clone differs:\n%s\n%s", mustJSON(t, c), before)
	}
	c.Sequence = 100
	c.Nodes["n1"].Desired = events.PowerOff
	c.Nodes["n1"].LastAction.Status = "failed"
	c.Nodes["n1"].LastAction = nil
	c.Nodes["n2"].Slot = 9
	delete(c.Nodes, "n2")
	c.Nodes["n3"] = &Node{Name: "n3"}
	c.Members["m1"].Address = "elsewhere"
	c.Members["m2"] = &Member{Name: "m2"}
	if after := mustJSON(t, s); after != before {
		t.Fatalf("mutating a clone changed the original:\nbefore %s\n after %s", before, after)
	}

	// And the other way round.
	c = s.Clone()
	cBefore := mustJSON(t, c)
	s.Nodes["n1"].LastAction.Status = "succeeded"
	mustApply(t, s, batch(succeeded(t, "n1", "a1"), rm(t, "n2"), left(t, "m1")))
	if mustJSON(t, c) != cBefore {
		t.Fatalf("changing the original changed a clone")
	}

	empty := New().Clone()
	if empty.Nodes == nil || empty.Members == nil {
		t.Fatalf("clone of an empty state has nil maps")
	}
}

func TestLists(t *testing.T) {
	s := New()
	mustApply(t, s, batch(reg(t, "b", 2), reg(t, "a", 2), reg(t, "z", 1), reg(t, "c", 0),
		joined(t, "m2", "x", true), joined(t, "m1", "y", true)))
	var names []string
	for _, n := range s.NodeList() {
		names = append(names, n.Name)
	}
	if fmt.Sprint(names) != "[c z a b]" {
		t.Fatalf("NodeList order = %v, want [c z a b]", names)
	}
	names = nil
	for _, m := range s.MemberList() {
		names = append(names, m.Name)
	}
	if fmt.Sprint(names) != "[m1 m2]" {
		t.Fatalf("MemberList order = %v, want [m1 m2]", names)
	}
}
