package reconcilers

import "sync"

// Leadership tells the runtime whether this member leads the rack.
//
// LeaderCh delivers true when the member becomes leader and false when it
// stops. Like hashicorp/raft's LeaderCh it may coalesce values (a slow
// reader sees the latest); the runtime therefore treats every true as the
// start of a new leadership term, restarting its reconcilers if they were
// already running. A closed channel means leadership is gone for good.
type Leadership interface {
	LeaderCh() <-chan bool
}

// LeaderSwitch is a Leadership set by hand: for single-member setups and
// tests. Its channel has one reader (the runtime). Safe for concurrent use.
type LeaderSwitch struct {
	mu      sync.Mutex
	ch      chan bool
	leading bool
}

var _ Leadership = (*LeaderSwitch)(nil)

// NewLeaderSwitch returns a switch that starts leading or not.
func NewLeaderSwitch(leading bool) *LeaderSwitch {
	s := &LeaderSwitch{ch: make(chan bool, 1), leading: leading}
	if leading {
		s.ch <- true
	}
	return s
}

// LeaderCh implements Leadership.
func (s *LeaderSwitch) LeaderCh() <-chan bool { return s.ch }

// Set changes leadership. Setting the current value does nothing; a value
// not yet read is replaced by the newer one.
func (s *LeaderSwitch) Set(leading bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if leading == s.leading {
		return
	}
	s.leading = leading
	select {
	case <-s.ch:
	default:
	}
	s.ch <- leading
}
