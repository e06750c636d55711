package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers/boot"
	"github.com/racklet/rack/sim/devrack"
)

// actionChecker wraps every member's backplane (devrack.Config.WrapBackplane)
// and checks each power action the member's reconcilers take:
//
//   - intent before action: the calling member's applied log already holds
//     an action.started for the node with the same operation and no outcome;
//   - quorum guard: powering off (or cycling) a unit that hosts a member,
//     unforced, leaves at least a quorum of member units on, by the
//     simulator's truth.
//
// A unit that is down in truth but up in the caller's state because chaos
// pulled its power an instant ago (not yet observed) cannot be the
// reconciler's fault: such calls are counted as excused, not as violations.
type actionChecker struct {
	rack atomic.Pointer[devrack.Rack]

	mu            sync.Mutex
	pulled        map[int]bool // slots whose power chaos has pulled
	removed       map[int]bool // slots whose unit chaos has pulled out
	rackPulled    bool
	calls         int // SetPower/PowerCycle calls seen
	intentChecked int
	guardChecked  int // calls that took a member's unit down
	guardExcused  int
	unchecked     int // calls before the rack was known
	intentViol    []string
	guardViol     []string
	excused       []string
	start         time.Time
}

func newActionChecker(start time.Time) *actionChecker {
	return &actionChecker{pulled: map[int]bool{}, removed: map[int]bool{}, start: start}
}

// setPulled records chaos pulling (or restoring) a slot's power.
func (c *actionChecker) setPulled(slot int, pulled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pulled[slot] = pulled
}

func (c *actionChecker) setRackPulled(pulled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rackPulled = pulled
}

func (c *actionChecker) chaosDown(slot int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rackPulled || c.pulled[slot] || c.removed[slot]
}

// setRemoved records chaos pulling a unit out of slot (or putting it back).
func (c *actionChecker) setRemoved(slot int, removed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removed[slot] = removed
}

// wrap is the devrack.Config.WrapBackplane hook: one call per member
// incarnation.
func (c *actionChecker) wrap(memberName string, b drivers.Backplane) drivers.Backplane {
	return &checkedBackplane{Backplane: b, c: c, member: memberName}
}

type checkedBackplane struct {
	drivers.Backplane
	c      *actionChecker
	member string

	mu sync.Mutex
	m  *member.Member // this incarnation's member, once known
}

func (b *checkedBackplane) BMC(slot int) (drivers.BMC, error) {
	inner, err := b.Backplane.BMC(slot)
	if err != nil {
		return nil, err
	}
	return &checkedBMC{BMC: inner, bp: b}, nil
}

// memberOf finds the member whose reconcilers call through b. devrack's
// lock on the member is held while it kills the member and waits for its
// reconcilers, so the look-up runs aside and gives up with ctx (which the
// kill cancels first).
func (b *checkedBackplane) memberOf(ctx context.Context) (*member.Member, error) {
	b.mu.Lock()
	m := b.m
	b.mu.Unlock()
	if m != nil {
		return m, nil
	}
	r := b.c.rack.Load()
	if r == nil {
		return nil, errors.New("rack not started yet")
	}
	found := make(chan *member.Member, 1)
	go func() { found <- r.Member(b.member) }()
	select {
	case m = <-found:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if m == nil {
		return nil, fmt.Errorf("member %s not running", b.member)
	}
	b.mu.Lock()
	b.m = m
	b.mu.Unlock()
	return m, nil
}

type checkedBMC struct {
	drivers.BMC
	bp *checkedBackplane
}

func (b *checkedBMC) SetPower(ctx context.Context, s drivers.PowerState) error {
	op := state.OpPowerOn
	if s == drivers.PowerOff {
		op = state.OpPowerOff
	}
	b.bp.c.check(ctx, b.bp, b.Slot(), op)
	return b.BMC.SetPower(ctx, s)
}

func (b *checkedBMC) PowerCycle(ctx context.Context) error {
	b.bp.c.check(ctx, b.bp, b.Slot(), state.OpPowerCycle)
	return b.BMC.PowerCycle(ctx)
}

// BootStage keeps the optional capability of the wrapped BMC.
func (b *checkedBMC) BootStage(ctx context.Context) (drivers.BootStage, error) {
	if bs, ok := b.BMC.(drivers.BootStager); ok {
		return bs.BootStage(ctx)
	}
	return "", fmt.Errorf("chaos: bmc of slot %d reports no boot stage", b.Slot())
}

// SetBootSource keeps the optional capability of the wrapped BMC, and
// checks intent before action like the power actions.
func (b *checkedBMC) SetBootSource(ctx context.Context, s drivers.BootSource) error {
	bs, ok := b.BMC.(drivers.BootSourceSetter)
	if !ok {
		return fmt.Errorf("chaos: bmc of slot %d cannot set the boot source", b.Slot())
	}
	b.bp.c.check(ctx, b.bp, b.Slot(), boot.OpSetSource)
	return bs.SetBootSource(ctx, s)
}

func (b *checkedBMC) BootSource(ctx context.Context) (drivers.BootSource, error) {
	if bs, ok := b.BMC.(drivers.BootSourceSetter); ok {
		return bs.BootSource(ctx)
	}
	return "", fmt.Errorf("chaos: bmc of slot %d cannot read the boot source", b.Slot())
}

// check runs both checks for one BMC action, before it reaches the BMC.
func (c *actionChecker) check(ctx context.Context, bp *checkedBackplane, slot int, op string) {
	at := time.Since(c.start).Round(time.Millisecond)
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	r := c.rack.Load()
	m, err := bp.memberOf(ctx)
	if r == nil || err != nil {
		c.mu.Lock()
		c.unchecked++
		c.mu.Unlock()
		return
	}
	node := devrack.NodeName(slot)
	store := m.Log().Store()

	// Intent before action.
	var (
		intentOK bool
		forced   bool
		guardErr error
		stateUp  = map[int]bool{}
		stateOf  = map[int]string{}
	)
	store.View(func(st *state.State) {
		n, ok := st.Nodes[node]
		if !ok {
			return
		}
		forced = n.Force
		if a := n.LastAction; a != nil && a.Status == "started" && a.Operation == op {
			intentOK = true
		}
		guardErr = st.QuorumGuard(node)
		for _, o := range st.Nodes {
			if o.Member != "" {
				stateUp[o.Slot] = o.Observed != events.PowerOff && !o.Unreachable
				desc := fmt.Sprintf("observed %s@%d, unreachable %v", o.Observed, o.ObservedSequence, o.Unreachable)
				if a := o.LastAction; a != nil {
					desc += fmt.Sprintf(", last action %s %s@%d by %s", a.Operation, a.Status, a.Sequence, a.Reconciler)
				}
				stateOf[o.Slot] = desc
			}
		}
	})
	if !intentOK {
		intentOK = intentInLog(m, node, op)
	}
	c.mu.Lock()
	c.intentChecked++
	if !intentOK {
		c.intentViol = append(c.intentViol, fmt.Sprintf("t=%v %s called %s on %s (slot %d) without a committed action.started %s pending in its log", at, bp.member, op, node, slot, op))
	}
	c.mu.Unlock()

	// Quorum guard, by the simulator's truth.
	if op == state.OpPowerOn || op == boot.OpSetSource || slot > len(r.MemberNames()) || forced {
		return
	}
	target, err := r.Sim.Unit(slot)
	if err != nil || target.Power != drivers.PowerOn {
		return // taking nothing down
	}
	names := r.MemberNames()
	quorum := len(names)/2 + 1
	on := 0
	var downs []string
	excusable := true
	for _, name := range names {
		s := r.MemberSlot(name)
		if s == slot {
			continue
		}
		u, err := r.Sim.Unit(s)
		if err == nil && u.Power == drivers.PowerOn {
			on++
			continue
		}
		chaos := c.chaosDown(s)
		downs = append(downs, fmt.Sprintf("%s (slot %d, chaos-pulled=%v, up in %s's state=%v: %s)", name, s, chaos, bp.member, stateUp[s], stateOf[s]))
		if !chaos || !stateUp[s] {
			// Down by the caller's own state, or not by chaos's hand:
			// the reconciler should have known.
			excusable = false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.guardChecked++
	if on >= quorum {
		return
	}
	msg := fmt.Sprintf("t=%v %s ran %s on %s (slot %d) leaving %d of %d member units on (quorum %d); down: %s; state guard: %v",
		at, bp.member, op, node, slot, on, len(names), quorum, strings.Join(downs, ", "), guardErr)
	if excusable && guardErr == nil {
		c.guardExcused++
		c.excused = append(c.excused, msg)
		return
	}
	c.guardViol = append(c.guardViol, msg)
}

// intentInLog scans the tail of the member's applied log for an
// action.started of op on node with no outcome yet.
func intentInLog(m *member.Member, node, op string) bool {
	store := m.Log().Store()
	last := store.LastSequence()
	from := uint64(1)
	if last > 5000 {
		from = last - 5000
	}
	evs, err := store.Read(from, 0)
	if err != nil {
		return false
	}
	pending := map[string]bool{}
	for _, ev := range evs {
		if ev.Subject != node {
			continue
		}
		p, err := ev.Payload()
		if err != nil {
			continue
		}
		switch d := p.(type) {
		case *events.ActionStartedData:
			if d.Operation == op {
				pending[d.Action] = true
			}
		case *events.ActionSucceededData:
			delete(pending, d.Action)
		case *events.ActionFailedData:
			delete(pending, d.Action)
		}
	}
	return len(pending) > 0
}

// leaderSampler records, every few milliseconds, which running members
// consider themselves Raft leader in which term.
type leaderSampler struct {
	mu       sync.Mutex
	leaders  map[uint64][]string // term → members seen leading in it
	samples  int
	last     string // the member last seen leading, and when
	lastTerm uint64
	lastAt   time.Time
}

// current is the member seen leading within the last half second, if any.
// It never blocks on devrack (whose member look-ups wait while a member is
// being killed).
func (s *leaderSampler) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.lastAt) > 500*time.Millisecond {
		return ""
	}
	return s.last
}

func (s *leaderSampler) run(ctx context.Context, r *devrack.Rack, every time.Duration) {
	s.mu.Lock()
	s.leaders = map[uint64][]string{}
	s.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sample(r)
	}
}

func (s *leaderSampler) sample(r *devrack.Rack) {
	for _, m := range r.Members() {
		rf := m.Log().Raft()
		if rf == nil {
			continue
		}
		// Term, state, term: a state read between two equal term reads
		// belongs to that term.
		t1 := rf.CurrentTerm()
		st := rf.State()
		t2 := rf.CurrentTerm()
		if st != raft.Leader || t1 != t2 {
			continue
		}
		s.mu.Lock()
		if !slices.Contains(s.leaders[t1], m.Name()) {
			s.leaders[t1] = append(s.leaders[t1], m.Name())
		}
		s.samples++
		if t1 >= s.lastTerm {
			s.last, s.lastTerm, s.lastAt = m.Name(), t1, time.Now()
		}
		s.mu.Unlock()
	}
}

// violations lists the terms with more than one leader.
func (s *leaderSampler) result() (terms int, viol []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]uint64, 0, len(s.leaders))
	for t := range s.leaders {
		keys = append(keys, t)
	}
	slices.Sort(keys)
	for _, t := range keys {
		if ms := s.leaders[t]; len(ms) > 1 {
			viol = append(viol, fmt.Sprintf("term %d: %s all led", t, strings.Join(ms, ", ")))
		}
	}
	return len(keys), viol
}

// checkLogs compares every member's applied log: sequences contiguous from
// the first kept, the same ids in the same order on the common prefix, and
// every acknowledged append at its sequence on every member.
func checkLogs(r *devrack.Rack, acked []ackedEvent) (lastSeq map[string]uint64, agree []string, lost []string) {
	lastSeq = map[string]uint64{}
	logs := map[string][]events.Event{}
	names := r.MemberNames()
	for _, name := range names {
		m := r.Member(name)
		if m == nil {
			agree = append(agree, fmt.Sprintf("%s is not running: its log cannot be checked", name))
			continue
		}
		evs, err := m.Log().Store().Read(0, 0)
		if err != nil {
			agree = append(agree, fmt.Sprintf("%s: reading its log: %v", name, err))
			continue
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Sequence != evs[i-1].Sequence+1 {
				agree = append(agree, fmt.Sprintf("%s: sequence %d follows %d", name, evs[i].Sequence, evs[i-1].Sequence))
				break
			}
		}
		if len(evs) > 0 && evs[0].Sequence != 1 {
			agree = append(agree, fmt.Sprintf("%s: log starts at sequence %d, not 1", name, evs[0].Sequence))
		}
		logs[name] = evs
		lastSeq[name] = m.Log().Store().LastSequence()
	}
	// Common prefix against the longest log.
	var ref string
	for _, name := range names {
		if _, ok := logs[name]; ok && (ref == "" || len(logs[name]) > len(logs[ref])) {
			ref = name
		}
	}
	for _, name := range names {
		evs, ok := logs[name]
		if !ok || name == ref {
			continue
		}
		for i := range evs {
			if evs[i].ID != logs[ref][i].ID {
				agree = append(agree, fmt.Sprintf("%s and %s differ at sequence %d: %s (%s) vs %s (%s)",
					name, ref, evs[i].Sequence, evs[i].ID, evs[i].Type, logs[ref][i].ID, logs[ref][i].Type))
				break
			}
		}
	}
	for _, a := range acked {
		for _, name := range names {
			evs, ok := logs[name]
			if !ok {
				continue
			}
			i := int(a.seq) - 1
			switch {
			case i < 0 || i >= len(evs):
				lost = append(lost, fmt.Sprintf("%s (set %s %s, acked at sequence %d): %s's log ends at %d", a.id, a.node, a.value, a.seq, name, len(evs)))
			case evs[i].ID != a.id:
				lost = append(lost, fmt.Sprintf("%s (set %s %s, acked at sequence %d): %s has %s (%s) there", a.id, a.node, a.value, a.seq, name, evs[i].ID, evs[i].Type))
			}
		}
	}
	return lastSeq, agree, lost
}
