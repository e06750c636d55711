package state

import (
	"errors"
	"fmt"
	"time"

	"github.com/racklet/rack/events"
)

// ErrStaleBoot: a node.boot.started or node.boot.refused names a boot spec
// that is not the node's current one (a newer spec arrived meanwhile). The
// batch is rejected, so a power cycle asked for in the same batch is not
// recorded either.
var ErrStaleBoot = errors.New("state: boot spec is not the current one")

// Phases of a node's boot (Boot.Phase).
const (
	// BootPending: a spec is desired; the boot reconciler has not started
	// it yet (it verifies the image first).
	BootPending = "pending"
	// BootRefused: the spec's image did not verify; nothing was done.
	BootRefused = "refused"
	// BootBooting: the boot source is set and a power cycle asked for;
	// stages are followed.
	BootBooting = "booting"
	// BootReady: the node reached the ready stage in this boot.
	BootReady = "ready"
	// BootFailed: the boot did not complete (stage timeout, failure
	// reported by the node, powered off meanwhile).
	BootFailed = "failed"
)

// Boot is a node's boot: the desired spec, how far the boot of it came,
// and the last stage the node reached.
type Boot struct {
	// The desired spec (node.boot.desired).
	Source          events.BootSource `json:"source,omitempty"`
	Image           string            `json:"image,omitempty"`
	Digest          string            `json:"digest,omitempty"`
	KeyID           string            `json:"keyId,omitempty"`
	DesiredSequence uint64            `json:"desiredSequence,omitempty"`

	// Phase is one of the Boot* phases; "" when no spec was ever desired
	// (the node only reported stages).
	Phase string `json:"phase,omitempty"`
	// StartedSequence and StartedAt: node.boot.started of the spec.
	StartedSequence uint64    `json:"startedSequence,omitempty"`
	StartedAt       time.Time `json:"startedAt,omitzero"`
	// CycleSequence is the node.power.desired cycle the boot asked for
	// (committed with node.boot.started): the boot runs once the node's
	// CycleDoneSequence reaches it.
	CycleSequence uint64 `json:"cycleSequence,omitempty"`

	// The last stage the node reached, whatever the spec.
	Stage         events.BootStage `json:"stage,omitempty"`
	StageSequence uint64           `json:"stageSequence,omitempty"`
	StageAt       time.Time        `json:"stageAt,omitzero"`
	// ImageDigest is the image the node last said it booted.
	ImageDigest string `json:"imageDigest,omitempty"`

	// Why the spec failed or was refused, and in which stage it failed.
	Reason         string           `json:"reason,omitempty"`
	FailedStage    events.BootStage `json:"failedStage,omitempty"`
	ResultSequence uint64           `json:"resultSequence,omitempty"`
}

func (b *Boot) clone() *Boot {
	if b == nil {
		return nil
	}
	c := *b
	return &c
}

// StageThisBoot is the stage the node reached in the boot started for the
// current spec, "" if none yet.
func (b *Boot) StageThisBoot() events.BootStage {
	if b == nil || b.StartedSequence == 0 || b.StageSequence < b.StartedSequence {
		return ""
	}
	return b.Stage
}

// HostGone records that the node hosting a control-plane member was
// removed (its unit pulled out); cleared when a node hosting the member is
// registered again. The presence reconciler removes the member from the
// Raft configuration after a grace period.
type HostGone struct {
	Node     string    `json:"node"`
	Slot     int       `json:"slot,omitempty"`
	Sequence uint64    `json:"sequence"`
	At       time.Time `json:"at"`
}

func (h *HostGone) clone() *HostGone {
	if h == nil {
		return nil
	}
	c := *h
	return &c
}

// applyBoot projects the boot and presence events of node n (a scratch
// copy) at sequence seq, written at time at.
func (n *Node) applyBoot(p events.Payload, seq uint64, at time.Time) error {
	b := n.Boot
	if b == nil {
		b = &Boot{}
	}
	switch d := p.(type) {
	case *events.BootDesiredData:
		// A new spec starts afresh; the node's last stage stays (it is
		// where the node is, whatever it was asked to boot).
		b = &Boot{
			Source: d.Source, Image: d.Image, Digest: d.Digest, KeyID: d.KeyID, DesiredSequence: seq, Phase: BootPending,
			Stage: b.Stage, StageSequence: b.StageSequence, StageAt: b.StageAt, ImageDigest: b.ImageDigest,
		}
	case *events.BootStartedData:
		if d.Target != b.DesiredSequence || b.Phase != BootPending {
			return fmt.Errorf("%w: node %s: boot.started for spec %d, the spec is %d (%s)", ErrStaleBoot, n.Name, d.Target, b.DesiredSequence, phaseOf(b))
		}
		b.Phase, b.StartedSequence, b.StartedAt, b.CycleSequence = BootBooting, seq, at, n.CycleSequence
	case *events.BootRefusedData:
		if d.Target != b.DesiredSequence || b.Phase != BootPending {
			return fmt.Errorf("%w: node %s: boot.refused for spec %d, the spec is %d (%s)", ErrStaleBoot, n.Name, d.Target, b.DesiredSequence, phaseOf(b))
		}
		b.Phase, b.Reason, b.ResultSequence = BootRefused, d.Reason, seq
	case *events.BootStageData:
		b.Stage, b.StageSequence, b.StageAt = d.Stage, seq, at
		if d.ImageDigest != "" {
			b.ImageDigest = d.ImageDigest
		}
		if b.Phase == BootBooting && d.Stage == events.BootStageReady && (d.Target == 0 || d.Target == b.DesiredSequence) {
			b.Phase, b.ResultSequence = BootReady, seq
		}
	case *events.BootFailedData:
		// A failure of another spec than the current one is history: the
		// event stays in the log, the current boot is not affected.
		if (d.Target == 0 || d.Target == b.DesiredSequence) && (b.Phase == BootPending || b.Phase == BootBooting) {
			b.Phase, b.Reason, b.FailedStage, b.ResultSequence = BootFailed, d.Reason, d.Stage, seq
		}
	case *events.NodeInsertedData:
		n.Present, n.Slot, n.Sequence = true, d.Slot, seq
		return nil
	default:
		return fmt.Errorf("state: no boot projection for %T", p)
	}
	n.Boot, n.Sequence = b, seq
	return nil
}

func phaseOf(b *Boot) string {
	if b.Phase == "" {
		return "no spec"
	}
	return b.Phase
}

// memberForUpdate returns the scratch copy of member name, copying it from
// s on first use; nil if it does not exist (or left in this batch).
func memberForUpdate(s, scratch *State, name string) *Member {
	if m, touched := scratch.Members[name]; touched {
		return m
	}
	m, ok := s.Members[name]
	if !ok {
		return nil
	}
	c := *m
	c.HostGone = m.HostGone.clone()
	scratch.Members[name] = &c
	return &c
}

// hostGone records, on the member node n hosted, that n was removed.
func hostGone(s, scratch *State, n *Node, seq uint64, at time.Time) {
	if n == nil || n.Member == "" {
		return
	}
	if m := memberForUpdate(s, scratch, n.Member); m != nil {
		m.HostGone = &HostGone{Node: n.Name, Slot: n.Slot, Sequence: seq, At: at}
	}
}

// hostBack clears the record of a gone host when a node hosting member is
// registered.
func hostBack(s, scratch *State, member string) {
	if member == "" {
		return
	}
	if m, ok := s.Members[member]; ok && m.HostGone == nil {
		if _, touched := scratch.Members[member]; !touched {
			return // nothing to clear; do not copy
		}
	}
	if m := memberForUpdate(s, scratch, member); m != nil {
		m.HostGone = nil
	}
}

// NodeAtSlot returns the node registered in slot (the first by name if
// several claim it), or nil.
func (s *State) NodeAtSlot(slot int) *Node {
	var found *Node
	for _, n := range s.Nodes {
		if n.Slot == slot && (found == nil || n.Name < found.Name) {
			found = n
		}
	}
	return found
}
