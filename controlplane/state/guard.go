package state

import (
	"errors"
	"fmt"
)

// ErrQuorumGuard: powering a node off (or cycling it) would leave fewer
// than a quorum of control-plane members up.
var ErrQuorumGuard = errors.New("state: quorum guard")

// memberUp reports whether the member on node n counts as up and staying
// up: the node is not observed off, not unreachable, not about to go down
// (desired off, or a cycle pending), and not under a power-off or cycle
// whose outcome is unknown (its actor may have died with the node before
// recording it; an observation after the action settles it).
func memberUp(n *Node) bool {
	if a := n.LastAction; a != nil && a.Status == "started" && (a.Operation == OpPowerOff || a.Operation == OpPowerCycle) && a.Sequence > n.ObservedSequence {
		return false
	}
	return n.Observed != "off" && !n.Unreachable && n.Desired != "off" && !n.CyclePending()
}

// QuorumGuard returns an error wrapping ErrQuorumGuard if powering off
// node (or cycling it) would leave fewer than a quorum of voting members
// up. A member counts as up unless the node hosting it is observed off,
// unreachable, or already asked to go off or cycle; a member on no
// registered node counts as up, unless its node was removed (HostGone:
// its unit was pulled out). Nodes that host no voter always pass.
func (s *State) QuorumGuard(node string) error {
	n, ok := s.Nodes[node]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownNode, node)
	}
	if n.Member == "" {
		return nil
	}
	if m, ok := s.Members[n.Member]; !ok || !m.Voter {
		return nil
	}
	hostOf := map[string]*Node{}
	for _, h := range s.Nodes {
		if h.Member != "" {
			hostOf[h.Member] = h
		}
	}
	voters, staying := 0, 0
	for name, m := range s.Members {
		if !m.Voter {
			continue
		}
		voters++
		if name == n.Member {
			continue
		}
		if h, ok := hostOf[name]; (!ok && m.HostGone == nil) || (ok && memberUp(h) && !s.FirmwareRebooting(h.Name)) {
			staying++
		}
	}
	quorum := voters/2 + 1
	if staying < quorum {
		return fmt.Errorf("%w: %s hosts control-plane member %s; powering it off would leave %d of %d members up, fewer than the quorum of %d (use force to override)",
			ErrQuorumGuard, node, n.Member, staying, voters, quorum)
	}
	return nil
}
