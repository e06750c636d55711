package telemetry

import (
	"sync"
	"time"
)

// Latest keeps the latest sample a member has received. Safe for
// concurrent use.
//
// Ordering: a sample replaces the kept one if it comes from another member
// (leadership moved: the new leader's samples win, whatever the two
// members' clocks say) or is newer by its time. A deposed leader that
// keeps sampling for a moment (until it learns it lost leadership) may
// make the two alternate briefly.
type Latest struct {
	mu       sync.Mutex
	s        Sample
	have     bool
	received time.Time
	now      func() time.Time
}

// NewLatest returns an empty Latest; now is the clock of freshness
// (nil: time.Now).
func NewLatest(now func() time.Time) *Latest {
	if now == nil {
		now = time.Now
	}
	return &Latest{now: now}
}

// Put offers a sample; it reports whether it was kept.
func (l *Latest) Put(s Sample) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.have && s.Member == l.s.Member && !s.Time.After(l.s.Time) {
		return false
	}
	l.s, l.have, l.received = s, true, l.now()
	return true
}

// Get returns the latest sample and how long ago this member received it.
func (l *Latest) Get() (s Sample, age time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.have {
		return Sample{}, 0, false
	}
	return l.s, l.now().Sub(l.received), true
}

// MinFreshFor is the shortest time a sample counts as fresh.
const MinFreshFor = 5 * time.Second

// FreshFor is how long a sample counts as fresh after it was received:
// five sampling periods, at least MinFreshFor. Past it, the exporter stops
// exporting its figures (a leader that stopped sampling must not look
// alive) and GET /v1/telemetry marks it stale.
func FreshFor(s Sample) time.Duration {
	return max(5*s.Interval(), MinFreshFor)
}
