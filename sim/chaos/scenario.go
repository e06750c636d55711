// Package chaos runs seeded chaos scenarios against a whole simulated rack
// (sim/devrack): faults (pulled slot and rack power, partitions between
// members, hung, slow and unreachable BMCs, units pulled out of their
// slots and put back, boot specs with badly signed images) come and go
// while clients stream desired-power changes and linearizable reads
// through random members; then
// everything heals, the rack must converge, and the run is checked:
//
//  1. no acknowledged event is lost (every acked SetPower is in every
//     member's log at its sequence);
//  2. the members' logs agree (same ids in the same order, contiguous);
//  3. at most one leader per Raft term (sampled every few milliseconds);
//  4. the clients' history is linearizable (porcupine, a register per
//     node's desired power);
//  5. observed power (and the simulator's truth) converges to desired
//     within Config.ConvergeTimeout after the final heal;
//  6. no BMC action ran without its action.started committed first in the
//     acting member's log;
//  7. the power reconciler never took a member's unit down leaving fewer
//     than a quorum of member units on (simulator truth), unforced;
//  8. every pulled unit's node was removed from the log while it was out
//     and registered again when it was back; a badly signed image never
//     started booting (see hotswap.go);
//  9. with a fan stuck or a sensor stale, every fan that turns runs at
//     100% within a grace; no unit stays on above the critical
//     temperature (faults: stuck fans, stale sensors, hot inlet, hot
//     nodes; see thermal.go).
//
// A math/rand/v2 PCG seeded from Config.Seed drives every choice of the
// schedule (fault kinds, targets, hold times, gaps, client operations), so a
// seed replays the same schedule. The control plane's timing is not
// deterministic (real goroutines, sockets and clocks): which member leads
// when a "pull the leader's slot" fault fires, and how operations
// interleave, differ between replays.
//
// Run is the engine; chaos_test.go's TestChaos drives it from the
// RACKLET_CHAOS_SEED and RACKLET_CHAOS_DURATION environment variables (make
// chaos).
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/sim"
	"github.com/racklet/rack/sim/devrack"
)

// Config describes a chaos run. Zero values take the defaults.
type Config struct {
	Seed uint64
	// Duration of the fault phase (default 60s).
	Duration time.Duration
	// ConvergeTimeout bounds convergence after the final heal (default 60s).
	ConvergeTimeout time.Duration
	// FaultConvergeTimeout bounds a per-fault convergence sample (default 20s).
	FaultConvergeTimeout time.Duration
	// Clients is the number of client goroutines (default 3).
	Clients int
	// Dir holds the members' data; "" makes a temporary one.
	Dir string
	// Out receives progress lines and the report (default io.Discard).
	Out io.Writer
	// Logger receives the rack's logs (default: discarded).
	Logger *slog.Logger
	// VisualizeDir is where a failed linearizability check's HTML goes
	// ("" the system's temporary dir).
	VisualizeDir string
	// LinearizabilityTimeout bounds porcupine (default 60s); past it the
	// verdict is Unknown, which is reported but is no violation.
	LinearizabilityTimeout time.Duration
}

func (c *Config) defaults() {
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.ConvergeTimeout <= 0 {
		c.ConvergeTimeout = 60 * time.Second
	}
	if c.FaultConvergeTimeout <= 0 {
		c.FaultConvergeTimeout = 20 * time.Second
	}
	if c.Clients <= 0 {
		c.Clients = 3
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LinearizabilityTimeout <= 0 {
		c.LinearizabilityTimeout = 60 * time.Second
	}
}

// Rack timings: fast boots and observation, so faults heal quickly.
var (
	bootTimings     = sim.Timings{Firmware: 50 * time.Millisecond, Bootstrap: 50 * time.Millisecond, OS: 100 * time.Millisecond}
	observeInterval = 100 * time.Millisecond
)

const (
	writeTimeout = 4 * time.Second
	readTimeout  = 3 * time.Second
)

type engine struct {
	cfg     Config
	r       *devrack.Rack
	start   time.Time
	hist    *history
	checker *actionChecker
	hs      *hotswap // unit pulls and bad boots (hotswap.go)
	th      *thermalChecker
	leaders leaderSampler
	hc      *http.Client

	pauseWrites atomic.Bool

	mu         sync.Mutex
	faultLog   []string
	samples    []time.Duration
	sampleMiss int
	ops        opCounts
}

// Run runs one chaos scenario and returns its report. The error is for a
// run that could not be carried out (the rack did not start); violated
// invariants are in the report (Report.Violations).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	e := &engine{cfg: cfg, start: time.Now()}
	e.hist = &history{start: e.start}
	e.checker = newActionChecker(e.start)
	e.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer e.hc.CloseIdleConnections()
	e.printf("chaos: seed %d, fault phase %v, %d clients\n", cfg.Seed, cfg.Duration, cfg.Clients)

	hs, err := newHotswap()
	if err != nil {
		return nil, fmt.Errorf("chaos: starting the image host: %w", err)
	}
	defer hs.images.Close()
	e.hs = hs
	startCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	r, err := devrack.Start(startCtx, devrack.Config{
		Dir: cfg.Dir, Seed: cfg.Seed, Timings: bootTimings, ObserveInterval: observeInterval,
		Logger: cfg.Logger, WrapBackplane: e.checker.wrap, Boot: hs.bootConfig(),
		Fans: thermalFans(),
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("chaos: starting the rack: %w", err)
	}
	e.r = r
	e.checker.rack.Store(r)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Close(cctx); err != nil {
			e.printf("chaos: closing the rack: %v\n", err)
		}
	}()
	e.printf("chaos: rack up after %v\n", time.Since(e.start).Round(time.Millisecond))
	if err := e.waitConverged(ctx, 30*time.Second, true); err != nil {
		return nil, fmt.Errorf("chaos: the fresh rack did not converge: %w", err)
	}

	samplerCtx, stopSampler := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); e.leaders.run(samplerCtx, r, 5*time.Millisecond) }()
	e.th = newThermalChecker(e.start)
	bg.Go(func() { e.th.run(samplerCtx, e, 50*time.Millisecond) })

	// Fault phase, with clients.
	phaseStart := time.Now()
	clientCtx, stopClients := context.WithCancel(ctx)
	var clients sync.WaitGroup
	for i := range cfg.Clients {
		clients.Add(1)
		go func() { defer clients.Done(); e.client(clientCtx, i) }()
	}
	rounds := e.faults(ctx, cfg.Duration)
	stopClients()
	// Clients finish their request in flight (bounded by its timeout).
	clients.Wait()

	// Heal everything, set every node on, converge.
	e.healAll()
	healedAt := time.Now()
	e.settleSwaps(ctx, cfg.ConvergeTimeout/2)
	e.printf("chaos: fault phase over after %v (%d rounds); everything healed\n", time.Since(phaseStart).Round(time.Millisecond), rounds)
	e.allOn(ctx, healedAt.Add(cfg.ConvergeTimeout))
	convErr := e.waitConverged(ctx, max(0, cfg.ConvergeTimeout-time.Since(healedAt)), true)
	convergedAfter := time.Since(healedAt)
	stopSampler()
	bg.Wait()
	if convErr == nil {
		e.printf("chaos: converged %v after the final heal\n", convergedAfter.Round(time.Millisecond))
		// Let every member apply the tail before comparing logs.
		e.waitLogsEqual(ctx, 15*time.Second)
	}

	rep := &Report{
		Seed: cfg.Seed, Duration: cfg.Duration, Elapsed: time.Since(e.start), Rounds: rounds,
		Faults: r.Sim.Faults(), FaultLog: e.faultLog, Ops: e.ops,
		ConvergeTimeout: cfg.ConvergeTimeout, Converged: convErr == nil, ConvergedAfter: convergedAfter,
		FaultConvergence: e.samples, FaultConvergenceMiss: e.sampleMiss,
	}
	if convErr != nil {
		rep.ConvergeErr = convErr.Error()
	}
	acked := e.hist.ackedEvents()
	rep.Acked = len(acked)
	rep.LastSequence, rep.LogDisagreements, rep.Lost = checkLogs(r, acked)
	rep.Terms, rep.LeaderViolations = e.leaders.result()
	e.th.addShutdowns(e)
	e.th.report(rep)
	rep.Lin = e.hist.check(cfg.LinearizabilityTimeout, cfg.VisualizeDir)
	c := e.checker
	c.mu.Lock()
	rep.ActionCalls, rep.ActionsUnchecked = c.calls, c.unchecked
	rep.IntentChecked, rep.IntentViolations = c.intentChecked, append([]string(nil), c.intentViol...)
	rep.GuardChecked, rep.GuardViolations = c.guardChecked, append([]string(nil), c.guardViol...)
	rep.GuardExcused = append([]string(nil), c.excused...)
	c.mu.Unlock()
	rep.UnitPulls, rep.RemovalsExcused, rep.BadBoots, rep.BadBootsRefused, rep.HotswapViolations = e.checkHotswap()
	return rep, nil
}

func (e *engine) printf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(e.cfg.Out, format, args...)
}

func (e *engine) since() time.Duration { return time.Since(e.start).Round(time.Millisecond) }

// ---- faults ----

type faultKind int

const (
	fSlotPower faultKind = iota
	fRackPower
	fPartition
	fBMCHang
	fBMCSlow
	fBMCDisconnect
	fUnitPull // hotswap.go
	fBadBoot
)

// plan is one fault of a round, drawn up front so the random stream does
// not depend on the control plane's timing.
type plan struct {
	kind         faultKind
	targetLeader bool // slot power, partition: aim at the leader
	slot         int  // random slot (slot power when not the leader's, BMC faults)
	alone        int  // partition: index of the member cut off when not the leader
	hold         time.Duration
	extra        time.Duration // slow BMC latency
}

func drawPlan(rng *rand.Rand) plan {
	p := plan{
		targetLeader: rng.Float64() < 0.6,
		slot:         1 + rng.IntN(5),
		alone:        rng.IntN(3),
		hold:         500*time.Millisecond + time.Duration(rng.Int64N(int64(2500*time.Millisecond))),
		extra:        time.Duration(50+rng.IntN(400)) * time.Millisecond,
	}
	switch x := rng.Float64(); {
	case x < 0.32:
		p.kind = fSlotPower
	case x < 0.40:
		p.kind = fRackPower
		p.hold = p.hold * 2 / 3
	case x < 0.62:
		p.kind = fPartition
	case x < 0.78:
		p.kind = fBMCHang
	case x < 0.83:
		p.kind = fBMCSlow
	case x < 0.88:
		p.kind = fBMCDisconnect
	case x < 0.96:
		p.kind = fUnitPull
	default:
		p.kind = fBadBoot
	}
	return drawThermal(rng, p) // thermal.go
}

// active is an injected fault and how to heal it.
type active struct {
	desc  string
	until time.Time
	heal  func()
	// ready, if set, holds the fault past until while it says false.
	ready func() bool
}

// faults runs rounds until the phase ends: each round injects one or two
// (overlapping) faults, heals them when their hold is over, and then,
// often, waits for the rack to converge (with client writes paused) to
// take a per-fault convergence sample.
func (e *engine) faults(ctx context.Context, d time.Duration) int {
	rng := rand.New(rand.NewPCG(e.cfg.Seed, 0xc4a05))
	end := time.Now().Add(d)
	rounds := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		rounds++
		first := drawPlan(rng)
		second := drawPlan(rng)
		two := rng.Float64() < 0.4
		secondAfter := time.Duration(rng.Int64N(int64(first.hold)))
		measure := rng.Float64() < 0.6
		gap := 200*time.Millisecond + time.Duration(rng.Int64N(int64(1300*time.Millisecond)))

		var live []*active
		if a := e.inject(first, live); a != nil {
			live = append(live, a)
		}
		secondAt := time.Now().Add(secondAfter)
		secondDone := !two
		for len(live) > 0 || !secondDone {
			now := time.Now()
			kept := live[:0]
			e.trackSwaps()
			for _, a := range live {
				if (now.Before(a.until) || a.ready != nil && !a.ready()) && ctx.Err() == nil {
					kept = append(kept, a)
					continue
				}
				a.heal()
				e.logFault("heal   %s", a.desc)
			}
			live = kept
			if !secondDone && !time.Now().Before(secondAt) {
				secondDone = true
				if a := e.inject(second, live); a != nil {
					live = append(live, a)
				}
			}
			sleep(ctx, 20*time.Millisecond)
		}
		healed := time.Now()
		if measure && ctx.Err() == nil {
			// Bounded by the sample bound and by the end of the phase (a
			// sample cut by the phase's end is dropped, not missed).
			within := min(e.cfg.FaultConvergeTimeout, max(time.Until(end), time.Second))
			e.pauseWrites.Store(true)
			err := e.waitConverged(ctx, within, false)
			took := time.Since(healed)
			e.pauseWrites.Store(false)
			e.mu.Lock()
			switch {
			case err == nil:
				e.samples = append(e.samples, took)
			case within == e.cfg.FaultConvergeTimeout:
				e.sampleMiss++
			}
			e.mu.Unlock()
			if err == nil {
				e.logFault("converged %v after the heal", took.Round(time.Millisecond))
			} else {
				e.logFault("NOT converged %v after the heal: %v", took.Round(time.Millisecond), err)
			}
		}
		sleep(ctx, gap)
	}
	return rounds
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (e *engine) logFault(format string, args ...any) {
	line := fmt.Sprintf("t=%-9v ", e.since()) + fmt.Sprintf(format, args...)
	e.mu.Lock()
	e.faultLog = append(e.faultLog, line)
	fmt.Fprintf(e.cfg.Out, "chaos: %s\n", line)
	e.mu.Unlock()
}

func (e *engine) leaderSlot() (int, string) {
	if name := e.leaders.current(); name != "" {
		return e.r.MemberSlot(name), name
	}
	return 0, ""
}

// inject applies a planned fault, unless it clashes with one in force
// (then it is skipped); it returns how to heal it.
func (e *engine) inject(p plan, live []*active) *active {
	r := e.r
	until := time.Now().Add(p.hold)
	busy := func(prefix string) bool {
		for _, a := range live {
			if len(a.desc) >= len(prefix) && a.desc[:len(prefix)] == prefix {
				return true
			}
		}
		return false
	}
	var a *active
	switch p.kind {
	case fSlotPower:
		slot, who := p.slot, ""
		if p.targetLeader {
			if s, name := e.leaderSlot(); s != 0 {
				slot, who = s, " (leader "+name+")"
			}
		}
		desc := fmt.Sprintf("slot-power %d", slot)
		if busy(desc) {
			return nil
		}
		if err := r.Sim.PullSlotPower(slot); err != nil {
			e.logFault("pull slot %d: %v", slot, err)
			return nil
		}
		e.checker.setPulled(slot, true)
		a = &active{desc: desc + who, until: until, heal: func() {
			_ = r.Sim.RestoreSlotPower(slot)
			e.checker.setPulled(slot, false)
		}}
	case fRackPower:
		if busy("rack-power") {
			return nil
		}
		r.Sim.PullRackPower()
		e.checker.setRackPulled(true)
		a = &active{desc: "rack-power", until: until, heal: func() {
			r.Sim.RestoreRackPower()
			e.checker.setRackPulled(false)
		}}
	case fPartition:
		if busy("partition") {
			return nil
		}
		names := r.MemberNames()
		alone := names[p.alone%len(names)]
		what := "random member"
		if p.targetLeader {
			if _, name := e.leaderSlot(); name != "" {
				alone, what = name, "leader"
			}
		}
		var rest []string
		for _, n := range names {
			if n != alone {
				rest = append(rest, n)
			}
		}
		if err := r.Sim.Partition([]string{alone}, rest); err != nil {
			e.logFault("partition: %v", err)
			return nil
		}
		a = &active{desc: fmt.Sprintf("partition [%s] | %v (%s isolated)", alone, rest, what), until: until, heal: func() {
			_ = r.Sim.HealNetwork()
		}}
	case fBMCHang, fBMCSlow, fBMCDisconnect:
		slot := p.slot
		desc := fmt.Sprintf("bmc %d", slot)
		if busy(desc) {
			return nil
		}
		var err error
		switch p.kind {
		case fBMCHang:
			err = r.Sim.HangBMC(slot)
			desc += " hang"
		case fBMCSlow:
			err = r.Sim.SlowBMC(slot, p.extra)
			desc += fmt.Sprintf(" slow +%v", p.extra)
		default:
			err = r.Sim.DisconnectBMC(slot)
			desc += " unreachable"
		}
		if err != nil {
			e.logFault("%s: %v", desc, err)
			return nil
		}
		a = &active{desc: desc, until: until, heal: func() { _ = r.Sim.HealBMC(slot) }}
	case fUnitPull:
		if busy(fmt.Sprintf("unit-pull %d", p.slot)) {
			return nil
		}
		if a = e.pull(p.slot, until); a == nil {
			return nil
		}
	case fBadBoot:
		if a = e.badBoot(devrack.NodeName(p.slot)); a == nil {
			return nil
		}
	case fFanStuck, fStaleSensor, fHotInlet, fHotNode:
		if a = e.injectThermal(p, until, busy); a == nil {
			return nil
		}
	}
	e.logFault("inject %s for %v", a.desc, p.hold.Round(time.Millisecond))
	return a
}

// healAll restores every slot's and the rack's power, heals every BMC and
// the network.
func (e *engine) healAll() {
	r := e.r
	_ = r.Sim.HealNetwork()
	e.healThermal()
	r.Sim.RestoreRackPower()
	e.checker.setRackPulled(false)
	for s := 1; s <= r.Slots(); s++ {
		_ = r.Sim.HealBMC(s)
		_ = r.Sim.RestoreSlotPower(s)
		e.checker.setPulled(s, false)
		if u, err := r.Sim.Unit(s); err == nil && !u.Present {
			_ = r.Sim.InsertUnit(s) // the fault loop puts pulled units back; this is a safety net
			e.checker.setRemoved(s, false)
		}
	}
}

// ---- clients ----

type opCounts struct {
	WritesAcked, WritesRefused, WritesQuorumGuard, WritesUnknown int
	ReadsOK, ReadsFailed                                         int
	// RefusedBy counts the definite refusals by API error code.
	RefusedBy map[string]int
	// SwappedNotFound counts the 404s for nodes whose unit was pulled
	// out at the time (expected; hotswap.go).
	SwappedNotFound int
	// Unexpected lists 4xx answers other than the quorum guard's, for
	// writes and reads, and 404s of nodes that exist (the first 20).
	Unexpected []string
}

// clientFor returns a client of a running member, starting from the
// member at index i.
func (e *engine) clientFor(i int) (*client.Client, string) {
	names := e.r.MemberNames()
	for k := range names {
		name := names[(i+k)%len(names)]
		if m := e.r.Member(name); m != nil {
			c, err := client.New(m.APIURL(), client.WithHTTPClient(e.hc), client.WithUserAgent("racklet-chaos"))
			if err == nil {
				return c, name
			}
		}
	}
	return nil, ""
}

// client streams operations: writes (SetPower, never forced) and
// linearizable reads of random nodes through random members.
func (e *engine) client(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(e.cfg.Seed, uint64(0x100+id)))
	slots := e.r.Slots()
	for ctx.Err() == nil {
		via := rng.IntN(3)
		write := rng.Float64() < 0.45
		node := devrack.NodeName(1 + rng.IntN(slots))
		var asked events.PowerState
		switch x := rng.Float64(); {
		case x < 0.45:
			asked = events.PowerOn
		case x < 0.8:
			asked = events.PowerOff
		default:
			asked = events.PowerCycle
		}
		pause := time.Duration(20+rng.IntN(230)) * time.Millisecond
		if write && e.pauseWrites.Load() {
			write = false
		}
		c, _ := e.clientFor(via)
		if c == nil {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		if write {
			e.write(ctx, id, c, node, asked)
		} else {
			e.read(ctx, id, c, node)
		}
		sleep(ctx, pause)
	}
}

// write does one SetPower and records it. The client's own context is
// not cut by the end of the phase: the request runs to its timeout.
func (e *engine) write(_ context.Context, id int, c *client.Client, node string, asked events.PowerState) bool {
	in := regInput{Node: node, Put: true, Value: desiredOf(asked), Asked: string(asked)}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	call := e.hist.now()
	ev, err := c.SetPower(ctx, node, asked, false)
	ret := e.hist.now()
	op := histOp{client: id, in: in, call: call, ret: ret}
	var ae *client.APIError
	view := ""
	swapped := errors.As(err, &ae) && ae.Code == "not_found" && e.churning(node, call, ret)
	if errors.As(err, &ae) && ae.Status/100 == 4 && ae.Code != "quorum_guard" {
		view = e.memberView(c.URL())
	}
	e.mu.Lock()
	switch {
	case err == nil:
		op.result = outOK
		e.ops.WritesAcked++
	case errors.As(err, &ae) && ae.Status/100 == 4:
		op.result = outRefused
		e.ops.WritesRefused++
		if ae.Code == "quorum_guard" {
			e.ops.WritesQuorumGuard++
		}
		if e.ops.RefusedBy == nil {
			e.ops.RefusedBy = map[string]int{}
		}
		e.ops.RefusedBy[fmt.Sprintf("%d %s", ae.Status, ae.Code)]++
		if swapped {
			e.ops.SwappedNotFound++
		} else if ae.Code != "quorum_guard" && len(e.ops.Unexpected) < 20 {
			e.ops.Unexpected = append(e.ops.Unexpected, fmt.Sprintf("t=%v set %s %s via %s: %v%s", time.Duration(call).Round(time.Millisecond), node, asked, c.URL(), err, view))
		}
	default:
		op.result = outUnknown
		e.ops.WritesUnknown++
	}
	e.mu.Unlock()
	e.hist.add(op)
	if err == nil {
		e.hist.ack(ackedEvent{id: ev.ID, node: node, value: string(asked), seq: ev.Sequence})
	}
	return err == nil
}

func (e *engine) read(_ context.Context, id int, c *client.Client, node string) {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	call := e.hist.now()
	n, err := c.Node(ctx, node)
	ret := e.hist.now()
	op := histOp{client: id, in: regInput{Node: node}, call: call, ret: ret}
	var ae *client.APIError
	view := ""
	swapped := errors.As(err, &ae) && ae.Code == "not_found" && e.churning(node, call, ret)
	if errors.As(err, &ae) && ae.Status/100 == 4 && !swapped {
		view = e.memberView(c.URL())
	}
	e.mu.Lock()
	if err == nil {
		op.result, op.out = outOK, string(n.Desired)
		e.ops.ReadsOK++
	} else {
		op.result = outUnknown
		e.ops.ReadsFailed++
		if swapped {
			e.ops.SwappedNotFound++
		}
		if view != "" && len(e.ops.Unexpected) < 20 {
			e.ops.Unexpected = append(e.ops.Unexpected, fmt.Sprintf("t=%v get %s via %s: %v%s", time.Duration(call).Round(time.Millisecond), node, c.URL(), err, view))
		}
	}
	e.mu.Unlock()
	e.hist.add(op)
}

// memberView describes, for a report, the member serving url: its name,
// applied sequence and how many nodes its state holds.
func (e *engine) memberView(url string) string {
	for _, m := range e.r.Members() {
		if m.APIURL() != url {
			continue
		}
		st := m.Log().Store().State()
		return fmt.Sprintf(" [member %s now: applied sequence %d, %d nodes, raft %s term %d, applied index %d]",
			m.Name(), st.Sequence, len(st.Nodes), m.Log().Raft().State(), m.Log().Raft().CurrentTerm(), m.Log().Raft().AppliedIndex())
	}
	return " [member gone]"
}

// allOn sets every node's desired power on (recorded in the history), so
// every member runs again for the final checks.
func (e *engine) allOn(ctx context.Context, deadline time.Time) {
	id := e.cfg.Clients
	for slot := 1; slot <= e.r.Slots(); slot++ {
		node := devrack.NodeName(slot)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			c, _ := e.clientFor(slot)
			if c != nil && e.write(ctx, id, c, node, events.PowerOn) {
				break
			}
			sleep(ctx, 200*time.Millisecond)
		}
	}
}

// ---- convergence ----

// converged checks, through a linearizable read, that every node's
// observed power is its desired power with no cycle pending, and that the
// simulator's truth agrees; with allMembers, also that every member runs
// (after the final heal every node is desired on).
func (e *engine) converged(ctx context.Context, allMembers bool) error {
	r := e.r
	if n := len(r.Members()); allMembers && n != len(r.MemberNames()) {
		return fmt.Errorf("%d of %d members running", n, len(r.MemberNames()))
	}
	c, _ := e.clientFor(0)
	if c == nil {
		return errors.New("no member running")
	}
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	nodes, err := c.Nodes(rctx)
	if err != nil {
		return err
	}
	if len(nodes) != r.Slots() {
		return fmt.Errorf("%d nodes, want %d", len(nodes), r.Slots())
	}
	for _, n := range nodes {
		// A cycle superseded by a later off stays "pending" in the state
		// until the node is wanted on again (the power reconciler then
		// completes it by powering on): it is not waited for here.
		// A cycle the quorum guard refused is settled too: the refusal is
		// its recorded outcome, and it stays until someone asks again.
		refused := n.Refusal != nil && n.Refusal.State == events.PowerCycle && n.Refusal.Sequence > n.CycleSequence
		pending := n.CyclePending() && !(n.Desired == events.PowerOff && n.DesiredSequence > n.CycleSequence) && !refused
		if n.Desired != n.Observed || pending {
			detail := ""
			if n.Unreachable {
				detail += ", unreachable"
			}
			if a := n.LastAction; a != nil {
				detail += fmt.Sprintf(", last action %s %s@%d %s", a.Operation, a.Status, a.Sequence, a.Reason)
			}
			if f := n.Refusal; f != nil {
				detail += fmt.Sprintf(", refused %s@%d", f.State, f.Sequence)
			}
			return fmt.Errorf("%s: desired %q@%d, observed %q@%d, cycle pending %v%s", n.Name, n.Desired, n.DesiredSequence, n.Observed, n.ObservedSequence, pending, detail)
		}
		u, err := r.Sim.Unit(n.Slot)
		if err != nil {
			return err
		}
		if string(u.Power) != string(n.Desired) {
			return fmt.Errorf("%s: desired and observed %q, but the unit is %s", n.Name, n.Desired, u.Power)
		}
		if u.Power == drivers.PowerOn && len(u.Faults) > 0 {
			return fmt.Errorf("%s: bmc faults %v", n.Name, u.Faults)
		}
	}
	return nil
}

func (e *engine) waitConverged(ctx context.Context, within time.Duration, allMembers bool) error {
	deadline := time.Now().Add(within)
	for {
		err := e.converged(ctx, allMembers)
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			return err
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// waitLogsEqual waits until every running member has applied the same
// last sequence (bounded; the log checks report what differs).
func (e *engine) waitLogsEqual(ctx context.Context, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ms := e.r.Members()
		same := len(ms) == len(e.r.MemberNames())
		for i := 1; same && i < len(ms); i++ {
			same = ms[i].Log().Store().LastSequence() == ms[0].Log().Store().LastSequence()
		}
		if same {
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
}
