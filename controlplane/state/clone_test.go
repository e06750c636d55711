package state

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/racklet/rack/events"
)

// rackOf returns a state of n nodes, every other one with a last action,
// a refusal and a boot, as a busy rack has.
func rackOf(n int) *State {
	s := New()
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		node := &Node{Name: name, Slot: i + 1, Desired: events.PowerOn, Observed: events.PowerOn, ObservedAt: time.Unix(int64(i), 0)}
		if i%2 == 0 {
			node.LastAction = &Action{ID: fmt.Sprintf("a%d", i), Operation: "power.on"}
			node.Refusal = &Refusal{Reason: "quorum"}
			node.Boot = &Boot{Phase: BootBooting, Image: "https://images/" + name}
		}
		s.Nodes[name] = node
	}
	return s
}

// TestCloneIsDeep: a clone equals its original, and changing anything a
// clone's node points to leaves the original alone (readers may change
// their copy).
func TestCloneIsDeep(t *testing.T) {
	s := rackOf(9)
	c := s.Clone()
	if !reflect.DeepEqual(s, c) {
		t.Fatal("the clone differs from the original")
	}
	for name, cn := range c.Nodes {
		n := s.Nodes[name]
		if cn == n {
			t.Fatalf("node %s is shared", name)
		}
		cn.Observed = events.PowerOff
		if cn.LastAction != nil {
			if cn.LastAction == n.LastAction || cn.Refusal == n.Refusal || cn.Boot == n.Boot {
				t.Fatalf("node %s shares what it points to", name)
			}
			cn.LastAction.Operation, cn.Refusal.Reason, cn.Boot.Phase = "x", "x", BootFailed
		}
	}
	if !reflect.DeepEqual(s, rackOf(9)) {
		t.Fatal("changing the clone changed the original")
	}
}

// BenchmarkClone is what a reader pays for a copy of the state of a rack.
func BenchmarkClone(b *testing.B) {
	for _, n := range []int{5, 50, 500} {
		s := rackOf(n)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = s.Clone()
			}
		})
	}
}
