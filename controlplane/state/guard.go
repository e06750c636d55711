package state

import (
	"errors"
	"fmt"
)

// ErrQuorumGuard: powering a node off (or cycling it) would leave fewer
// than a quorum of control-plane members up.
var ErrQuorumGuard = errors.New("state: quorum guard")

// MembersUp counts the voting members that are up as far as the state
// knows: a member is down when the node hosting it is observed off (or
// unreachable); a member on no known node counts as up.
func (s *State) MembersUp() (up, voters int) {
	hostOf := map[string]*Node{}
	for _, n := range s.Nodes {
		if n.Member != "" {
			hostOf[n.Member] = n
		}
	}
	for name, m := range s.Members {
		if !m.Voter {
			continue
		}
		voters++
		if n, ok := hostOf[name]; ok && (n.Observed == "off" || n.Unreachable) {
			continue
		}
		up++
	}
	return up, voters
}

// QuorumGuard returns an error wrapping ErrQuorumGuard if powering off
// node (or cycling it) would leave fewer than a quorum of voting members
// up. Nodes that host no member always pass.
func (s *State) QuorumGuard(node string) error {
	n, ok := s.Nodes[node]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownNode, node)
	}
	if n.Member == "" {
		return nil
	}
	m, ok := s.Members[n.Member]
	if !ok || !m.Voter {
		return nil
	}
	up, voters := s.MembersUp()
	quorum := voters/2 + 1
	hostUp := n.Observed != "off" && !n.Unreachable
	after := up
	if hostUp {
		after--
	}
	if after < quorum {
		return fmt.Errorf("%w: %s hosts control-plane member %s; powering it off would leave %d of %d members up, fewer than the quorum of %d (use force to override)",
			ErrQuorumGuard, node, n.Member, after, voters, quorum)
	}
	return nil
}
