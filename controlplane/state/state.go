// Package state is the rack's state: a deterministic projection of the event
// log. Apply is the only way it changes; the same events in the same order
// always give the same state, on every member.
package state

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/racklet/rack/events"
)

// Rejections: an event that does not fit the state is refused at apply time
// (deterministically, on every member), and nothing of its batch is applied.
var (
	ErrUnknownNode   = errors.New("state: unknown node")
	ErrNodeExists    = errors.New("state: node already registered")
	ErrUnknownMember = errors.New("state: unknown member")
)

// Node is a compute unit in the rack, as the log has it.
type Node struct {
	Name   string `json:"name"`
	Slot   int    `json:"slot,omitempty"`
	Member string `json:"member,omitempty"`

	// Desired power: on or off; "" until someone sets it. A cycle request
	// sets Desired to on and CycleSequence to its sequence.
	Desired         events.PowerState `json:"desired,omitempty"`
	DesiredSequence uint64            `json:"desiredSequence,omitempty"`
	CycleSequence   uint64            `json:"cycleSequence,omitempty"`
	Force           bool              `json:"force,omitempty"`

	// Observed power, as a BMC last reported it; "" if never observed.
	Observed         events.PowerState `json:"observed,omitempty"`
	ObservedSequence uint64            `json:"observedSequence,omitempty"`
	ObservedAt       time.Time         `json:"observedAt,omitzero"`

	// CycleDoneSequence is the CycleSequence the last completed power
	// cycle realised: a cycle is pending while CycleSequence is greater.
	CycleDoneSequence uint64 `json:"cycleDoneSequence,omitempty"`

	// LastAction is the most recent action a reconciler took on the node.
	LastAction *Action `json:"lastAction,omitempty"`
	// Refusal is set when a reconciler refused the current desired power
	// (e.g. the quorum guard); cleared by the next desired power.
	Refusal *Refusal `json:"refusal,omitempty"`
	// Unreachable is set while the node's BMC keeps failing.
	Unreachable       bool   `json:"unreachable,omitempty"`
	UnreachableReason string `json:"unreachableReason,omitempty"`

	// Present is set once a unit was seen seated in the node's slot
	// (node.inserted); Boot is the node's boot (boot.go).
	Present bool  `json:"present,omitempty"`
	Boot    *Boot `json:"boot,omitempty"`

	RegisteredSequence uint64 `json:"registeredSequence"`
	// Sequence is the sequence of the last event about this node.
	Sequence uint64 `json:"sequence"`
}

// Refusal is a reconciler's refusal to realise a desired power state.
type Refusal struct {
	State    events.PowerState `json:"state"`
	Reason   string            `json:"reason"`
	Sequence uint64            `json:"sequence"`
}

// Action is a reconciler's action on a node.
type Action struct {
	ID         string `json:"id"`
	Reconciler string `json:"reconciler"`
	Operation  string `json:"operation"`
	Target     uint64 `json:"target,omitempty"`
	// Status: started, succeeded or failed.
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Sequence uint64 `json:"sequence"`
}

// Operations reconcilers record in action events.
const (
	OpPowerOn    = "power.on"
	OpPowerOff   = "power.off"
	OpPowerCycle = "power.cycle"
)

// CyclePending reports whether a requested power cycle has not been done.
func (n *Node) CyclePending() bool { return n.CycleSequence > n.CycleDoneSequence }

// Member is a control-plane member, as the log has it.
type Member struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Voter    bool   `json:"voter"`
	Sequence uint64 `json:"sequence"`
	// HostGone is set while the node hosting the member is removed (boot.go).
	HostGone *HostGone `json:"hostGone,omitempty"`
}

// State is the projection of the log up to Sequence.
type State struct {
	// Sequence is the sequence of the last applied event.
	Sequence uint64             `json:"sequence"`
	Nodes    map[string]*Node   `json:"nodes"`
	Members  map[string]*Member `json:"members"`
	// Firmware holds the firmware components, by name (firmware.go).
	Firmware map[string]*Firmware `json:"firmware,omitempty"`
	// Thermal is the fan policy and the alarms (thermal.go).
	Thermal *Thermal `json:"thermal,omitempty"`
}

// New returns the empty state, before the first event.
func New() *State {
	return &State{Nodes: map[string]*Node{}, Members: map[string]*Member{}, Firmware: map[string]*Firmware{}}
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	c := &State{Sequence: s.Sequence, Nodes: make(map[string]*Node, len(s.Nodes)), Members: make(map[string]*Member, len(s.Members))}
	// The nodes and what they point to are copied into a few slices, not
	// one allocation each: readers clone the state often (every
	// Reconcile), and at hundreds of nodes the allocations and the GC
	// work they cause were most of the CPU (BenchmarkClone). The slices
	// are allocated at their final size, so the pointers into them stay.
	var nAct, nRef, nBoot int
	for _, n := range s.Nodes {
		if n.LastAction != nil {
			nAct++
		}
		if n.Refusal != nil {
			nRef++
		}
		if n.Boot != nil {
			nBoot++
		}
	}
	nodes := make([]Node, len(s.Nodes))
	acts, refs, boots := make([]Action, nAct), make([]Refusal, nRef), make([]Boot, nBoot)
	i := 0
	for k, n := range s.Nodes {
		cn := &nodes[i]
		i++
		*cn = *n
		if n.LastAction != nil {
			acts[0] = *n.LastAction
			cn.LastAction, acts = &acts[0], acts[1:]
		}
		if n.Refusal != nil {
			refs[0] = *n.Refusal
			cn.Refusal, refs = &refs[0], refs[1:]
		}
		if n.Boot != nil {
			boots[0] = *n.Boot
			cn.Boot, boots = &boots[0], boots[1:]
		}
		c.Nodes[k] = cn
	}
	for k, m := range s.Members {
		mm := *m
		mm.HostGone = m.HostGone.clone()
		c.Members[k] = &mm
	}
	c.Firmware = cloneFirmware(s.Firmware)
	c.Thermal = s.Thermal.clone()
	return c
}

func (n *Node) clone() *Node {
	c := *n
	if n.LastAction != nil {
		a := *n.LastAction
		c.LastAction = &a
	}
	if n.Refusal != nil {
		r := *n.Refusal
		c.Refusal = &r
	}
	c.Boot = n.Boot.clone()
	return &c
}

// NodeList returns the nodes sorted by slot, then name.
func (s *State) NodeList() []*Node {
	out := make([]*Node, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Slot != out[j].Slot {
			return out[i].Slot < out[j].Slot
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// MemberList returns the members sorted by name.
func (s *State) MemberList() []*Member {
	out := make([]*Member, 0, len(s.Members))
	for _, m := range s.Members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Apply applies a batch of events atomically: either every event fits the
// state and is applied, in order, each getting the next sequence, or none
// is and the error says why. It returns the events with their sequences.
// Events must already be valid (events.Event.Validate).
func (s *State) Apply(evs []events.Event) ([]events.Event, error) {
	// Check the whole batch against a scratch copy of what it touches, so a
	// rejection leaves s unchanged.
	scratch := &State{Sequence: s.Sequence, Nodes: map[string]*Node{}, Members: map[string]*Member{}}
	gone := map[string]bool{}
	var fw firmwareScratch
	var th thermalScratch
	lookupNode := func(name string) *Node {
		if n, ok := scratch.Nodes[name]; ok {
			return n
		}
		if gone[name] {
			return nil
		}
		if n, ok := s.Nodes[name]; ok {
			c := n.clone()
			scratch.Nodes[name] = c
			return c
		}
		return nil
	}
	out := make([]events.Event, len(evs))
	for i, ev := range evs {
		p, err := ev.Payload()
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		scratch.Sequence++
		seq := scratch.Sequence
		ev.Sequence = seq
		out[i] = ev
		switch d := p.(type) {
		case *events.NodeRegisteredData:
			if lookupNode(ev.Subject) != nil {
				return nil, fmt.Errorf("%w: %s", ErrNodeExists, ev.Subject)
			}
			delete(gone, ev.Subject)
			hostBack(s, scratch, d.Member)
			scratch.Nodes[ev.Subject] = &Node{Name: ev.Subject, Slot: d.Slot, Member: d.Member, RegisteredSequence: seq, Sequence: seq}
		case *events.NodeRemovedData:
			if lookupNode(ev.Subject) == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownNode, ev.Subject)
			}
			hostGone(s, scratch, lookupNode(ev.Subject), seq, ev.Time)
			delete(scratch.Nodes, ev.Subject)
			gone[ev.Subject] = true
			fw.nodeRemoved(ev.Subject)
		case *events.PowerDesiredData:
			n := lookupNode(ev.Subject)
			if n == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownNode, ev.Subject)
			}
			n.Desired, n.DesiredSequence, n.Force, n.Sequence = d.State, seq, d.Force, seq
			n.Refusal = nil
			if d.State == events.PowerOff && n.CyclePending() {
				// Off supersedes a cycle not done yet.
				n.CycleDoneSequence = n.CycleSequence
			}
			if d.State == events.PowerCycle {
				n.Desired, n.CycleSequence = events.PowerOn, seq
			}
		case *events.PowerObservedData:
			n := lookupNode(ev.Subject)
			if n == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownNode, ev.Subject)
			}
			n.Observed, n.ObservedSequence, n.ObservedAt, n.Sequence = d.State, seq, ev.Time, seq
		case *events.ActionStartedData:
			n := lookupNode(ev.Subject)
			if n == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownNode, ev.Subject)
			}
			n.LastAction = &Action{ID: d.Action, Reconciler: d.Reconciler, Operation: d.Operation, Target: d.Target, Status: "started", Sequence: seq}
			n.Sequence = seq
		case *events.ActionSucceededData:
			// Actions may outlive their node (removed meanwhile); then
			// there is nothing to project.
			if n := lookupNode(ev.Subject); n != nil && n.LastAction != nil && n.LastAction.ID == d.Action {
				n.LastAction.Status, n.LastAction.Reason, n.LastAction.Sequence, n.Sequence = "succeeded", "", seq, seq
				if n.LastAction.Operation == OpPowerCycle && n.LastAction.Target > n.CycleDoneSequence {
					n.CycleDoneSequence = n.LastAction.Target
				}
			}
		case *events.ActionFailedData:
			if n := lookupNode(ev.Subject); n != nil && n.LastAction != nil && n.LastAction.ID == d.Action {
				n.LastAction.Status, n.LastAction.Reason, n.LastAction.Sequence, n.Sequence = "failed", d.Reason, seq, seq
			}
		case *events.PowerRefusedData:
			n := lookupNode(ev.Subject)
			if n == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownNode, ev.Subject)
			}
			n.Refusal, n.Sequence = &Refusal{State: d.State, Reason: d.Reason, Sequence: seq}, seq
		case *events.NodeUnreachableData:
			n := lookupNode(ev.Subject)
			if n == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownNode, ev.Subject)
			}
			n.Unreachable, n.UnreachableReason, n.Sequence = true, d.Reason, seq
		case *events.NodeReachableData:
			n := lookupNode(ev.Subject)
			if n == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownNode, ev.Subject)
			}
			n.Unreachable, n.UnreachableReason, n.Sequence = false, "", seq
		case *events.MemberJoinedData:
			scratch.Members[ev.Subject] = &Member{Name: ev.Subject, Address: d.Address, Voter: d.Voter, Sequence: seq}
		case *events.MemberLeftData:
			m, touched := scratch.Members[ev.Subject]
			if !touched {
				m = s.Members[ev.Subject]
			}
			if m == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownMember, ev.Subject)
			}
			scratch.Members[ev.Subject] = nil
		case *events.FirmwareDesiredData, *events.FirmwareObservedData, *events.FirmwareStepData, *events.FirmwareRefusedData:
			if err := fw.apply(s, ev, seq, p, lookupNode); err != nil {
				return nil, err
			}
		case *events.BootDesiredData, *events.BootStartedData, *events.BootStageData, *events.BootFailedData, *events.BootRefusedData, *events.NodeInsertedData:
			n := lookupNode(ev.Subject)
			if n == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownNode, ev.Subject)
			}
			if err := n.applyBoot(p, seq, ev.Time); err != nil {
				return nil, err
			}
		case *events.FanPolicySetData, *events.AlarmRaisedData, *events.AlarmClearedData:
			if err := th.apply(s, ev, seq, p); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("state: no projection for event type %s", ev.Type)
		}
	}
	// Commit the scratch copy.
	for name := range gone {
		if _, back := scratch.Nodes[name]; !back {
			delete(s.Nodes, name)
		}
	}
	for name, n := range scratch.Nodes {
		s.Nodes[name] = n
	}
	for name, m := range scratch.Members {
		if m == nil {
			delete(s.Members, name)
		} else {
			s.Members[name] = m
		}
	}
	fw.commit(s)
	th.commit(s)
	s.Sequence = scratch.Sequence
	return out, nil
}
