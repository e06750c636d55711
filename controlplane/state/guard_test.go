package state

import (
	"errors"
	"testing"

	"github.com/racklet/rack/events"
)

func TestQuorumGuard(t *testing.T) {
	// Three voting members m1..m3 hosted on n1..n3; n4 hosts none.
	rack := func(observed map[string]string, unreachable ...string) *State {
		s := New()
		for i, name := range []string{"n1", "n2", "n3", "n4"} {
			n := &Node{Name: name, Slot: i + 1, Observed: "on"}
			if i < 3 {
				n.Member = "m" + name[1:]
				s.Members[n.Member] = &Member{Name: n.Member, Address: n.Member, Voter: true}
			}
			if o, ok := observed[name]; ok {
				n.Observed = events.PowerState(o)
			}
			s.Nodes[name] = n
		}
		for _, u := range unreachable {
			s.Nodes[u].Unreachable = true
		}
		return s
	}
	tests := []struct {
		name, node  string
		observed    map[string]string
		unreachable []string
		refused     bool
	}{
		{"all up: one may go", "n1", nil, nil, false},
		{"no member on the node", "n4", map[string]string{"n2": "off", "n3": "off"}, nil, false},
		{"one down already: the second is refused", "n1", map[string]string{"n2": "off"}, nil, true},
		{"unreachable host counts as down", "n1", nil, []string{"n3"}, true},
		{"the target already off still needs the others", "n2", map[string]string{"n2": "off"}, nil, false},
		{"never observed counts as up", "n1", map[string]string{"n2": ""}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rack(tt.observed, tt.unreachable...).QuorumGuard(tt.node)
			if got := errors.Is(err, ErrQuorumGuard); got != tt.refused {
				t.Fatalf("QuorumGuard(%s) = %v, refused=%v want %v", tt.node, err, got, tt.refused)
			}
		})
	}
	// A member whose node is already asked to go down counts as down.
	pending := rack(nil)
	pending.Nodes["n2"].Desired = "off"
	if err := pending.QuorumGuard("n1"); !errors.Is(err, ErrQuorumGuard) {
		t.Fatalf("with n2 going off, n1 off = %v, want refused", err)
	}
	cycling := rack(nil)
	cycling.Nodes["n3"].CycleSequence = 9
	if err := cycling.QuorumGuard("n1"); !errors.Is(err, ErrQuorumGuard) {
		t.Fatalf("with n3 cycling, n1 off = %v, want refused", err)
	}
	// A power-off whose outcome was never recorded (its actor died with
	// the node) counts as down until an observation settles it.
	inflight := rack(nil)
	inflight.Nodes["n2"].ObservedSequence = 5
	inflight.Nodes["n2"].LastAction = &Action{ID: "a", Operation: OpPowerOff, Status: "started", Sequence: 6}
	if err := inflight.QuorumGuard("n1"); !errors.Is(err, ErrQuorumGuard) {
		t.Fatalf("with a power-off of n2 in flight, n1 off = %v, want refused", err)
	}
	inflight.Nodes["n2"].ObservedSequence = 7 // observed on after the action
	if err := inflight.QuorumGuard("n1"); err != nil {
		t.Fatalf("n2 observed on after its action, n1 off = %v, want allowed", err)
	}
	if err := New().QuorumGuard("nx"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("unknown node: %v", err)
	}
}
