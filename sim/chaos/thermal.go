package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers/fans"
	"github.com/racklet/rack/reconcilers/hardware"
	"github.com/racklet/rack/sim"
	"github.com/racklet/rack/sim/devrack"
)

// Fans and temperature in chaos runs: four more faults (a fan stuck at
// 0 RPM, a BMC whose sensors go stale, a hot inlet, a hot node) and two
// invariants, checked against the simulator's truth every 50 ms:
//
//  9a. fail-safe: while a fan is stuck, or a present, powered unit's BMC
//      is stale, every fan that turns is driven at 100% — from
//      graceStuck (graceStale) after the fault began;
//  9b. critical temperature: no unit stays on above the critical
//      temperature for more than criticalWithin.
//
// Both are judged only while the control plane can act: a leader seen
// continuously, rack power on, no partition, no hung or slow BMC
// anywhere (a hung BMC costs the power reconciler's single worker its
// CallTimeout; a slow one holds the shared bus), and for 9b no BMC fault
// on the hot unit's slot. The graces are counted from the later of the
// fault's start and the start of that window. Stale sensors and hot nodes
// aim at slots without a member (4 and 5): a stale BMC also freezes the
// power state, which would blind the power reconciler's quorum guard to a
// member's unit, and a thermal shutdown is forced (it does not ask the
// quorum guard). The hot inlet stays below what trips a node.
//
// A thermal shutdown writes a node's desired power (off) like a client
// does, so it goes into the history the linearizability check reads: a
// write of "off" called at the event's time (set just before the append)
// and returned when the checker first saw it in a member's applied log.

// Chaos settings of the fan reconciler.
const (
	fanInterval      = 200 * time.Millisecond
	fanCallTimeout   = 300 * time.Millisecond
	chaosStaleAfter  = time.Second
	chaosCritical    = 80.0
	hotNodeFactor    = 8  // blocked heatsink: a ready unit runs at ~110 °C with full airflow
	hotInletCelsius  = 40 // hot aisle: nodes near 55 °C, well below critical
	thermalShare     = 0.16
	thermalExtraHold = 2500 * time.Millisecond
)

// Invariant bounds (a sample period is fanInterval + fanCallTimeout when a
// BMC does not answer).
var (
	samplePeriod   = fanInterval + fanCallTimeout
	graceStuck     = 2*samplePeriod + time.Second
	graceStale     = chaosStaleAfter + 3*samplePeriod + time.Second
	criticalWithin = time.Duration(fans.DefaultTripSamples)*samplePeriod + observeInterval + 2*time.Second
)

const (
	fFanStuck faultKind = iota + 100
	fStaleSensor
	fHotInlet
	fHotNode
)

// thermalFans is the fan setup of chaos runs.
func thermalFans() devrack.FansConfig {
	p := fans.DefaultPolicy()
	p.CriticalCelsius = chaosCritical
	p.StaleAfter = chaosStaleAfter.String()
	return devrack.FansConfig{FansConfig: hardware.FansConfig{Policy: &p, Interval: fanInterval, CallTimeout: fanCallTimeout}}
}

// drawThermal turns a share of the plans into thermal faults. It always
// draws the same numbers, so the rest of the schedule depends on the seed
// alone.
func drawThermal(rng *rand.Rand, p plan) plan {
	x, k := rng.Float64(), rng.IntN(4)
	if x >= thermalShare {
		return p
	}
	p.kind = []faultKind{fFanStuck, fStaleSensor, fHotInlet, fHotNode}[k]
	p.hold += thermalExtraHold // long enough to reach the graces
	return p
}

// memberless is a slot without a member (4 or 5), from a random slot.
func memberless(slot int) int { return 4 + slot%2 }

// injectThermal injects a thermal fault, or returns nil if it clashes
// with one in force.
func (e *engine) injectThermal(p plan, until time.Time, busy func(string) bool) *active {
	s := e.r.Sim
	switch p.kind {
	case fFanStuck:
		fan := 1 + (p.slot-1)%4
		desc := fmt.Sprintf("fan-stuck %d", fan)
		if busy(desc) {
			return nil
		}
		if err := s.StickFan(fan); err != nil {
			e.logFault("%s: %v", desc, err)
			return nil
		}
		return &active{desc: desc, until: until, heal: func() { _ = s.HealFan(fan) }}
	case fStaleSensor:
		slot := memberless(p.slot)
		desc := fmt.Sprintf("bmc %d stale", slot) // a BMC fault: HealBMC heals it
		if busy(fmt.Sprintf("bmc %d", slot)) {
			return nil
		}
		if err := s.StaleBMC(slot); err != nil {
			e.logFault("%s: %v", desc, err)
			return nil
		}
		return &active{desc: desc, until: until, heal: func() { _ = s.HealBMC(slot) }}
	case fHotInlet:
		if busy("hot-inlet") {
			return nil
		}
		s.SetInletTemperature(hotInletCelsius)
		e.th.hotInlet.Store(true)
		return &active{desc: fmt.Sprintf("hot-inlet %v °C", hotInletCelsius), until: until, heal: func() {
			if e.th.hotInlet.CompareAndSwap(true, false) {
				s.SetInletTemperature(sim.DefaultThermal().Inlet)
			}
		}}
	case fHotNode:
		slot := memberless(p.slot)
		desc := fmt.Sprintf("hot-node %d", slot)
		if busy(desc) {
			return nil
		}
		if err := s.HeatUnit(slot, hotNodeFactor); err != nil {
			e.logFault("%s: %v", desc, err)
			return nil
		}
		return &active{desc: desc, until: until, heal: func() { _ = s.HeatUnit(slot, 1) }}
	}
	return nil
}

// healThermal frees every fan, cools the inlet and every unit.
func (e *engine) healThermal() {
	s := e.r.Sim
	for i := range s.Fans() {
		_ = s.HealFan(i + 1)
	}
	if e.th != nil && e.th.hotInlet.CompareAndSwap(true, false) {
		s.SetInletTemperature(sim.DefaultThermal().Inlet)
	}
	for slot := 1; slot <= e.r.Slots(); slot++ {
		_ = s.HeatUnit(slot, 1)
	}
}

// thermalChecker checks 9a and 9b and collects the fan reconciler's
// writes of desired power and alarms from the log.
type thermalChecker struct {
	start    time.Time
	hotInlet atomic.Bool // a hot inlet is injected

	mu         sync.Mutex
	okSince    time.Time // the window in which the control plane can act
	leader     string
	stuckSince map[int]time.Time // fan → since
	staleSince map[int]time.Time // slot → since
	hotSince   map[int]time.Time // slot → on above critical since
	slotOK     map[int]time.Time // slot → no BMC fault since
	reported   map[string]bool   // episodes already reported
	failChecks int
	critChecks int
	failViol   []string
	critViol   []string

	lastSeq   uint64
	shutdowns []shutdownWrite
	alarms    map[events.AlarmKind]int
}

// shutdownWrite is a desired power off the fan reconciler committed.
type shutdownWrite struct {
	node   string
	called time.Time // the event's time, set just before the append
	seen   time.Time // first seen applied
}

func newThermalChecker(start time.Time) *thermalChecker {
	return &thermalChecker{
		start: start, stuckSince: map[int]time.Time{}, staleSince: map[int]time.Time{}, hotSince: map[int]time.Time{},
		slotOK: map[int]time.Time{}, reported: map[string]bool{}, alarms: map[events.AlarmKind]int{},
	}
}

func (c *thermalChecker) at(t time.Time) time.Duration { return t.Sub(c.start).Round(time.Millisecond) }

func (c *thermalChecker) run(ctx context.Context, e *engine, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ms := e.r.Members()
		registered := map[int]bool{}
		if len(ms) > 0 {
			ms[0].Store().View(func(st *state.State) {
				for _, n := range st.Nodes {
					registered[n.Slot] = true
				}
			})
		}
		c.sample(e, time.Now(), registered)
		c.scanLog(ms)
	}
}

// sample takes the simulator's truth at now and checks 9a and 9b.
// registered are the slots whose node a member's state holds: the fan
// reconciler watches those only (a unit pulled out and back is not
// registered again at once).
func (c *thermalChecker) sample(e *engine, now time.Time, registered map[int]bool) {
	s := e.r.Sim
	units := make([]sim.UnitStatus, e.r.Slots())
	for i := range units {
		units[i], _ = s.Unit(i + 1)
	}
	fs := s.Fans()
	leader := e.leaders.current()

	c.mu.Lock()
	defer c.mu.Unlock()
	ok := leader != "" && leader == c.leader && s.Partitioned() == nil
	for _, u := range units {
		ok = ok && u.RackPower && !slices.Contains(u.Faults, sim.FaultBMCHang) && !slices.Contains(u.Faults, sim.FaultBMCSlow)
	}
	c.leader = leader
	switch {
	case !ok:
		c.okSince = time.Time{}
	case c.okSince.IsZero():
		c.okSince = now
	}
	since := func(m map[int]time.Time, k int, on bool) time.Time {
		if !on {
			delete(m, k)
			return time.Time{}
		}
		if _, in := m[k]; !in {
			m[k] = now
		}
		return m[k]
	}
	// How long a condition has been judgeable: since the later of its
	// start and the window's.
	judged := func(from time.Time) time.Duration {
		if c.okSince.IsZero() || from.IsZero() {
			return 0
		}
		if c.okSince.After(from) {
			from = c.okSince
		}
		return now.Sub(from)
	}

	// 9a. fail-safe.
	var due []string
	for _, f := range fs {
		if from := since(c.stuckSince, f.Fan, f.Stuck); judged(from) >= graceStuck {
			due = append(due, fmt.Sprintf("fan %d stuck since t=%v", f.Fan, c.at(from)))
		}
	}
	for _, u := range units {
		stale := u.Present && u.SlotPower && u.RackPower && registered[u.Slot] && slices.Contains(u.Faults, sim.FaultBMCStale)
		if from := since(c.staleSince, u.Slot, stale); judged(from) >= graceStale {
			due = append(due, fmt.Sprintf("bmc %d stale since t=%v", u.Slot, c.at(from)))
		}
	}
	if len(due) > 0 {
		c.failChecks++
		for _, f := range fs {
			if f.Stuck || f.Duty == 100 {
				continue
			}
			key := fmt.Sprintf("failsafe %v fan %d", due, f.Fan)
			if !c.reported[key] {
				c.reported[key] = true
				c.failViol = append(c.failViol, fmt.Sprintf("t=%v fan %d driven at %.1f%% while %v (leader %s since t=%v)",
					c.at(now), f.Fan, f.Duty, due, leader, c.at(c.okSince)))
			}
		}
	}

	// 9b. critical temperature.
	for _, u := range units {
		since(c.slotOK, u.Slot, len(u.Faults) == 0 && u.SlotPower && u.Present && registered[u.Slot])
		hot := u.Power == drivers.PowerOn && u.Celsius > chaosCritical
		from := since(c.hotSince, u.Slot, hot)
		if !hot {
			continue
		}
		c.critChecks++
		slotOK, fine := c.slotOK[u.Slot]
		if !fine {
			continue
		}
		if slotOK.After(from) {
			from = slotOK
		}
		if d := judged(from); d > criticalWithin {
			key := fmt.Sprintf("critical %d %v", u.Slot, c.hotSince[u.Slot])
			if !c.reported[key] {
				c.reported[key] = true
				c.critViol = append(c.critViol, fmt.Sprintf("t=%v unit %d on at %.1f °C > %v °C for %v (judgeable; leader %s)",
					c.at(now), u.Slot, u.Celsius, chaosCritical, d.Round(time.Millisecond), leader))
			}
		}
	}
}

// scanLog reads the new events of a running member's applied log for the
// fan reconciler's shutdowns and alarms.
func (c *thermalChecker) scanLog(ms []*member.Member) {
	if len(ms) == 0 {
		return
	}
	store := ms[0].Store()
	c.mu.Lock()
	from := c.lastSeq + 1
	c.mu.Unlock()
	if store.LastSequence() < from {
		return
	}
	evs, err := store.Read(from, 0)
	if err != nil || len(evs) == 0 {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range evs {
		switch {
		case ev.Type == events.NodePowerDesired && ev.Actor == fans.Actor:
			c.shutdowns = append(c.shutdowns, shutdownWrite{node: ev.Subject, called: ev.Time, seen: now})
		case ev.Type == events.AlarmRaised:
			if p, err := ev.Payload(); err == nil {
				c.alarms[p.(*events.AlarmRaisedData).Kind]++
			}
		}
	}
	c.lastSeq = evs[len(evs)-1].Sequence
}

// addShutdowns puts the fan reconciler's desired-power writes into the
// clients' history (client id: after the clients and allOn's).
func (c *thermalChecker) addShutdowns(e *engine) int {
	c.mu.Lock()
	ws := append([]shutdownWrite(nil), c.shutdowns...)
	c.mu.Unlock()
	for _, w := range ws {
		call := w.called.Sub(e.hist.start)
		ret := w.seen.Sub(e.hist.start)
		e.hist.add(histOp{
			client: e.cfg.Clients + 1,
			in:     regInput{Node: w.node, Put: true, Value: string(events.PowerOff), Asked: "off (thermal shutdown)"},
			call:   int64(call), ret: int64(max(ret, call)), result: outOK,
		})
	}
	return len(ws)
}

func (c *thermalChecker) report(rep *Report) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rep.FailSafeChecks, rep.FailSafeViolations = c.failChecks, append([]string(nil), c.failViol...)
	rep.CriticalChecks, rep.CriticalViolations = c.critChecks, append([]string(nil), c.critViol...)
	rep.ThermalShutdowns = len(c.shutdowns)
	rep.Alarms = map[string]int{}
	for k, n := range c.alarms {
		rep.Alarms[string(k)] = n
	}
}
