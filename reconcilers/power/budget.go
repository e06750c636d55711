package power

import (
	"sync"
	"time"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// budget tracks the units this reconciler powered on, to stagger power-ons
// within the rack's power budget (see the package documentation for the
// model). Safe for concurrent use.
type budget struct {
	watts   float64 // 0: unlimited
	unit    float64
	inrush  float64
	window  time.Duration
	observe time.Duration // retry when waiting for no inrush

	mu sync.Mutex
	// powered holds, per node, when this reconciler last powered it on.
	// A record counts the unit as on until the unit is observed off.
	powered map[string]poweredOn
}

// poweredOn is a power-on this reconciler did or is doing.
type poweredOn struct {
	// pending: the BMC call is in flight (in inrush, whatever the time).
	pending bool
	// at: when the BMC call returned.
	at time.Time
}

func newBudget(cfg Config) *budget {
	return &budget{
		watts:   cfg.BudgetWatts,
		unit:    cfg.UnitWatts,
		inrush:  cfg.InrushWatts,
		window:  cfg.InrushWindow,
		observe: cfg.ObserveInterval,
		powered: map[string]poweredOn{},
	}
}

// draw is the modelled draw of every unit but node's, at now: the units on
// (in st or in the records) at UnitWatts, those in their inrush window at
// InrushWatts. wait is how long until the earliest inrush window ends (0
// if no unit is in one).
func (b *budget) draw(st *state.State, node string, now time.Time) (watts float64, wait time.Duration) {
	names := map[string]bool{}
	for name, n := range st.Nodes {
		if n.Observed == events.PowerOn {
			names[name] = true
		}
	}
	for name := range b.powered {
		if _, ok := st.Nodes[name]; ok {
			names[name] = true
		}
	}
	delete(names, node)
	for name := range names {
		watts += b.unit
		p, ok := b.powered[name]
		if !ok {
			continue
		}
		left := b.window
		if !p.pending {
			left = p.at.Add(b.window).Sub(now)
		}
		if left > 0 {
			watts += b.inrush - b.unit
			if wait == 0 || left < wait {
				wait = left
			}
		}
	}
	return watts, wait
}

// admit decides whether node may be powered on now. If so it reserves the
// unit's inrush (the record stays pending until poweredOn) and returns
// true; otherwise it returns how long to wait before asking again.
func (b *budget) admit(st *state.State, node string, now time.Time) (ok bool, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.watts <= 0 {
		b.powered[node] = poweredOn{pending: true}
		return true, 0
	}
	watts, wait := b.draw(st, node, now)
	if watts+b.inrush <= b.watts {
		b.powered[node] = poweredOn{pending: true}
		return true, 0
	}
	if wait <= 0 {
		// Only steady draw: nothing will free up soon by itself.
		wait = b.observe
	}
	return false, max(wait, time.Millisecond)
}

// poweredOn ends node's pending reservation: its BMC call returned at now
// (successfully or not: a timed-out call may have taken effect, so the
// unit counts as on until it is observed off).
func (b *budget) poweredOn(node string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.powered[node] = poweredOn{at: now}
}

// cancel drops node's reservation when the power-on was not attempted.
func (b *budget) cancel(node string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.powered[node]; ok && p.pending {
		delete(b.powered, node)
	}
}

// observed updates node's record with an observation: a unit seen off is
// off; a unit seen on past its inrush window needs no record (the state
// has it on).
func (b *budget) observed(node string, p events.PowerState, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rec, ok := b.powered[node]
	if !ok || rec.pending {
		return
	}
	if p == events.PowerOff || now.Sub(rec.at) >= b.window {
		delete(b.powered, node)
	}
}

// forget drops node's record (the node is gone).
func (b *budget) forget(node string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.powered, node)
}
