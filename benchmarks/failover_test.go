package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/racklet/rack/benchmarks/results"
	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/controlplane/raftlog"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/sim"
	"github.com/racklet/rack/sim/devrack"
)

// raftTimeouts is one Raft timing setting of BenchmarkFailover; zero
// values take raftlog's defaults.
type raftTimeouts struct{ heartbeat, election time.Duration }

// effective fills in raftlog's defaults.
func (t raftTimeouts) effective() raftTimeouts {
	if t.heartbeat == 0 {
		t.heartbeat = raftlog.DefaultHeartbeatTimeout
	}
	if t.election == 0 {
		t.election = raftlog.DefaultElectionTimeout
	}
	return t
}

func (t raftTimeouts) isDefault() bool { return t == raftTimeouts{} }

func (t raftTimeouts) name() string {
	e := t.effective()
	return fmt.Sprintf("heartbeat=%v/election=%v", e.heartbeat, e.election)
}

// failoverSettings are compared in one run: the defaults first, then the
// others that differ from them.
var failoverSettings = []raftTimeouts{
	{},
	{time.Second, time.Second},
	{500 * time.Millisecond, 500 * time.Millisecond},
	{250 * time.Millisecond, 500 * time.Millisecond},
	{250 * time.Millisecond, 250 * time.Millisecond},
	{200 * time.Millisecond, 400 * time.Millisecond},
}

// idlePeriod and busyPeriod are how long BenchmarkFailover watches a rack
// left alone for elections nobody caused: on the machine as it is, then
// with every core kept busy by other processes.
const (
	idlePeriod = 30 * time.Second
	busyPeriod = 20 * time.Second
)

// BenchmarkFailover: a devrack rack of 5 nodes (three members on slots
// 1–3, the power reconciler on each, acting on the leader) with a steady
// trickle of appends through the two followers. One operation pulls the
// power of the leader's slot (its member dies at once, no shutdown) and
// measures, from just before the pull:
//
//   - commit: until the first append begun after the old leader was gone
//     returns, committed under the new leader;
//   - act and done: a desired-power change of a node without a member is
//     appended right after the pull; until the power reconciler's
//     action.started for it is applied (the reconcile acting), and until
//     the matching node.power.observed is.
//
// Then the slot's power comes back, the member restarts from its data dir
// and the rack settles before the next operation. Each Raft timing setting
// is measured on its own rack; with b.N > 1 the rack is then left alone
// for idlePeriod, and for busyPeriod with every core busy, and the
// elections counted (none is expected: each is a spurious one).
func BenchmarkFailover(b *testing.B) {
	seen := map[raftTimeouts]bool{}
	for _, s := range failoverSettings {
		if e := s.effective(); seen[e] {
			continue
		} else {
			seen[e] = true
		}
		var (
			fr  *failoverRack
			err error
		)
		b.Run(s.name(), func(b *testing.B) {
			if fr == nil && err == nil {
				fr, err = startFailoverRack(s)
			}
			if err != nil {
				b.Fatalf("starting the rack: %v", err)
			}
			benchFailover(b, fr, s)
		})
		if fr != nil {
			fr.close(b)
		}
	}
}

// failoverRack is a devrack rack for BenchmarkFailover.
type failoverRack struct {
	dr *devrack.Rack
	// next is the state the next operation asks of the target node.
	next events.PowerState
}

// failoverTarget is the node whose desired power each operation changes:
// slot 4, which hosts no member.
var failoverTarget = devrack.NodeName(4)

func startFailoverRack(s raftTimeouts) (*failoverRack, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dr, err := devrack.Start(ctx, devrack.Config{
		Slots: 5, Members: 3, BusLatency: zeroBus,
		Timings:          sim.Timings{Firmware: time.Millisecond, Bootstrap: time.Millisecond, OS: time.Millisecond},
		ObserveInterval:  500 * time.Millisecond,
		UnreachableRetry: 200 * time.Millisecond,
		Tune: func(c *member.Config) {
			c.LogLevel = "error"
			c.HeartbeatTimeout, c.ElectionTimeout = s.heartbeat, s.election
		},
	})
	if err != nil {
		return nil, err
	}
	fr := &failoverRack{dr: dr, next: events.PowerOff}
	if err := fr.settle(ctx); err != nil {
		_ = dr.Close(context.Background())
		return nil, err
	}
	return fr, nil
}

func (fr *failoverRack) close(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fr.dr.Close(ctx); err != nil {
		b.Logf("closing the rack: %v", err)
	}
}

// settle waits until every member runs and is a ready voter under one
// ready leader, and every node is observed as desired and reachable.
func (fr *failoverRack) settle(ctx context.Context) error {
	return waitUntil(ctx, func() error {
		ms := fr.dr.Members()
		if len(ms) != 3 {
			return fmt.Errorf("%d of 3 members running", len(ms))
		}
		lead := fr.dr.Leader()
		if lead == nil {
			return errors.New("no ready leader")
		}
		infos, err := lead.Log().Members(ctx)
		if err != nil {
			return err
		}
		voters := 0
		for _, mi := range infos {
			if mi.Voter {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("%d of 3 members are voters", voters)
		}
		for _, m := range ms {
			if err := m.Log().Ready(ctx); err != nil {
				return fmt.Errorf("%s: %w", m.Name(), err)
			}
		}
		st := lead.Log().Store().State()
		for _, n := range st.Nodes {
			if n.Observed != n.Desired || n.Unreachable {
				return fmt.Errorf("node %s: desired %s, observed %s, unreachable %v", n.Name, n.Desired, n.Observed, n.Unreachable)
			}
		}
		return nil
	})
}

// maxTerm is the highest Raft term among the running members.
func (fr *failoverRack) maxTerm() uint64 {
	var t uint64
	for _, m := range fr.dr.Members() {
		t = max(t, m.Log().Raft().CurrentTerm())
	}
	return t
}

// failoverRun is what one operation measured, from just before the pull.
type failoverRun struct {
	commit, act, done time.Duration
	elections         uint64 // terms begun
	stalled           int    // attempts of the desired change that ran out of time
}

// desiredAttempt bounds one attempt to append the desired change.
const desiredAttempt = 250 * time.Millisecond

func benchFailover(b *testing.B, fr *failoverRack, s raftTimeouts) {
	var commit, act, done latencies
	elections, stalled := 0.0, 0.0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run, err := fr.failover()
		if err != nil {
			b.Fatalf("failover %d: %v", i, err)
		}
		commit, act, done = append(commit, run.commit), append(act, run.act), append(done, run.done)
		elections += float64(run.elections)
		stalled += float64(run.stalled)
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = fr.settle(ctx)
		cancel()
		if err != nil {
			b.Fatalf("after failover %d: %v", i, err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(micros(commit.percentile(50)), "commit-p50-µs")
	b.ReportMetric(micros(commit.percentile(99)), "commit-p99-µs")
	b.ReportMetric(micros(act.percentile(50)), "act-p50-µs")
	b.ReportMetric(micros(act.percentile(99)), "act-p99-µs")
	b.ReportMetric(elections/float64(b.N), "elections/op")
	if testing.Verbose() {
		b.Logf("commit: %v", commit)
		b.Logf("act: %v", act)
	}
	var labels map[string]string
	if s.isDefault() {
		labels = map[string]string{"default": "true"}
	}
	e := s.effective()
	note := fmt.Sprintf("heartbeat %v, election %v, lease %v", e.heartbeat, e.election, min(500*time.Millisecond, e.heartbeat))
	for _, d := range []struct {
		what string
		lat  latencies
		more []results.Metric
	}{
		{"commit", commit, []results.Metric{{Name: "elections", Value: elections / float64(b.N), Unit: "/failover"}}},
		{"act", act, []results.Metric{{Name: "timed-out-attempts", Value: stalled / float64(b.N), Unit: "/failover"}}},
		{"done", done, nil},
	} {
		writeRecord(b, results.Record{
			Name: b.Name() + "/" + d.what, Samples: len(d.lat), Labels: labels, Notes: []string{note},
			Metrics: append(results.Latency(d.lat), d.more...),
		})
	}
	if b.N == 1 {
		return // go test's first, probing run
	}
	for _, ph := range []struct {
		name string
		d    time.Duration
		busy bool
	}{{"idle", idlePeriod, false}, {"busy", busyPeriod, true}} {
		n, err := fr.quietElections(ph.d, ph.busy)
		if errors.Is(err, errNoShell) {
			b.Logf("%s: %v", ph.name, err)
			continue
		}
		if err != nil {
			b.Fatalf("%s: %v", ph.name, err)
		}
		b.ReportMetric(float64(n), ph.name+"-elections")
		writeRecord(b, results.Record{
			Name: b.Name() + "/" + ph.name, Samples: 1, Labels: labels, Notes: []string{note},
			Metrics: []results.Metric{{Name: "elections", Value: float64(n), Unit: fmt.Sprintf("/%v", ph.d)}},
		})
	}
}

var errNoShell = errors.New("no sh to keep the cores busy with")

// quietElections leaves the rack alone for d and counts the Raft terms
// begun meanwhile (each is an election). With busy, one busy-looping
// process per core runs meanwhile (a loaded CI machine).
func (fr *failoverRack) quietElections(d time.Duration, busy bool) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	if busy {
		sh, err := exec.LookPath("sh")
		if err != nil {
			return 0, errNoShell
		}
		bctx, bcancel := context.WithTimeout(ctx, d)
		var wg sync.WaitGroup
		defer func() { bcancel(); wg.Wait() }()
		for range runtime.NumCPU() {
			cmd := exec.CommandContext(bctx, sh, "-c", "while :; do :; done")
			if err := cmd.Start(); err != nil {
				return 0, fmt.Errorf("starting a busy loop: %w", err)
			}
			wg.Go(func() { _ = cmd.Wait() })
		}
	}
	before := fr.maxTerm()
	time.Sleep(d)
	if err := fr.settle(ctx); err != nil {
		return 0, err
	}
	return fr.maxTerm() - before, nil
}

// probeSubject is the subject of the trickle's events: action.succeeded
// of no action on no node, which nothing projects or reacts to.
const probeSubject = "failover-probe"

// trickle appends a probe event every few milliseconds through the given
// members, alternately, each append with its own goroutine, and records
// when each began and returned.
type trickle struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	ok     []probe
}

type probe struct{ start, end time.Time }

const trickleEvery = 5 * time.Millisecond

func startTrickle(src string, ms []*member.Member) *trickle {
	ctx, cancel := context.WithCancel(context.Background())
	t := &trickle{cancel: cancel}
	t.wg.Go(func() {
		tick := time.NewTicker(trickleEvery)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			m := ms[i%len(ms)]
			t.wg.Go(func() {
				ev, err := events.New(src, events.ActionSucceeded, probeSubject, &events.ActionSucceededData{Action: events.NewID()})
				if err != nil {
					return
				}
				actx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				start := time.Now()
				if _, err := m.Log().Append(actx, ev); err == nil {
					t.mu.Lock()
					t.ok = append(t.ok, probe{start, time.Now()})
					t.mu.Unlock()
				}
			})
		}
	})
	return t
}

// firstAfter returns when the first append begun at or after since
// returned.
func (t *trickle) firstAfter(since time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first time.Time
	for _, p := range t.ok {
		if !p.start.Before(since) && (first.IsZero() || p.end.Before(first)) {
			first = p.end
		}
	}
	return first, !first.IsZero()
}

func (t *trickle) stop() {
	t.cancel()
	t.wg.Wait()
}

// targetWatch notes when a member's log applies the power reconciler's
// action.started events for the target node and its node.power.observed
// events. It starts before the pull, when the node is settled, so the
// first action.started it sees answers the desired change.
type targetWatch struct {
	mu       sync.Mutex
	started  []seen
	observed []seen
}

type seen struct {
	state events.PowerState
	at    time.Time
}

func (w *targetWatch) apply(ev events.Event) error {
	now := time.Now()
	if ev.Subject != failoverTarget || (ev.Type != events.ActionStarted && ev.Type != events.NodePowerObserved) {
		return nil
	}
	p, err := ev.Payload()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch d := p.(type) {
	case *events.ActionStartedData:
		w.started = append(w.started, seen{at: now})
	case *events.PowerObservedData:
		w.observed = append(w.observed, seen{state: d.State, at: now})
	}
	return nil
}

// answer returns when this member applied the first action.started and
// the first observation of want; zero times for what it has not seen.
func (w *targetWatch) answer(want events.PowerState) (act, done time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.started) > 0 {
		act = w.started[0].at
	}
	for _, s := range w.observed {
		if s.state == want {
			done = s.at
			break
		}
	}
	return act, done
}

// failover runs one operation (see BenchmarkFailover).
func (fr *failoverRack) failover() (failoverRun, error) {
	var run failoverRun
	lead := fr.dr.Leader()
	if lead == nil {
		return run, errors.New("no leader")
	}
	var survivors []*member.Member
	for _, m := range fr.dr.Members() {
		if m != lead {
			survivors = append(survivors, m)
		}
	}
	if len(survivors) != 2 {
		return run, fmt.Errorf("%d followers, want 2", len(survivors))
	}
	slot := fr.dr.MemberSlot(lead.Name())
	want := fr.next
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Watch both survivors; the new leader applies first.
	watches := make([]*targetWatch, len(survivors))
	wctx, wcancel := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	defer func() { wcancel(); wwg.Wait() }()
	for i, m := range survivors {
		w := &targetWatch{}
		watches[i] = w
		from := m.Log().Store().State().Sequence + 1
		wwg.Go(func() { _ = m.Log().Watch(wctx, from, w.apply) })
	}
	src := events.Source(fr.dr.Name(), "bench")
	tr := startTrickle(src, survivors)
	defer tr.stop()
	time.Sleep(100 * time.Millisecond) // the trickle in its stride
	termBefore := fr.maxTerm()

	killedAt := time.Now()
	if err := fr.dr.Sim.PullSlotPower(slot); err != nil {
		return run, err
	}
	// Member.Kill shuts NATS down first, then Raft: once Raft is down,
	// nothing reaches the old leader. (devrack forgets the member only
	// after its reconcilers have stopped, which may take a while.)
	for lead.Log().Raft().State() != raft.Shutdown {
		select {
		case <-ctx.Done():
			return run, fmt.Errorf("%s still runs after its slot lost power: %w", lead.Name(), ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	gone := time.Now()

	// The desired change, as soon as the old leader is gone, through a
	// survivor: it is forwarded to the new leader once there is one. Each
	// attempt is bounded and retried, as a client would: an append
	// forwarded to a leader that died before answering is not bounded by
	// raftlog (README, "Failover").
	ev, err := events.New(src, events.NodePowerDesired, failoverTarget, &events.PowerDesiredData{State: want})
	if err != nil {
		return run, err
	}
	ev.Actor = "bench"
	derr := make(chan error, 1)
	go func() {
		for {
			actx, acancel := context.WithTimeout(ctx, desiredAttempt)
			_, err := survivors[0].Log().Append(actx, ev)
			stalled := errors.Is(err, context.DeadlineExceeded) && actx.Err() != nil
			acancel()
			if err == nil || ctx.Err() != nil {
				derr <- err
				return
			}
			if stalled {
				run.stalled++
			}
		}
	}()

	// Only appends begun once the old leader is gone count: none of them
	// can be committed by it.
	if err := waitUntil(ctx, func() error {
		if _, ok := tr.firstAfter(gone); !ok {
			return errors.New("no append committed under a new leader")
		}
		return nil
	}); err != nil {
		return run, err
	}
	first, _ := tr.firstAfter(gone)

	run.commit = first.Sub(killedAt)
	if err := <-derr; err != nil {
		return run, fmt.Errorf("appending the desired change: %w", err)
	}
	// The earliest apply of each, of the two survivors: the new leader's.
	var act, done time.Time
	if err := waitUntil(ctx, func() error {
		act, done = time.Time{}, time.Time{}
		for _, w := range watches {
			a, d := w.answer(want)
			if !a.IsZero() && (act.IsZero() || a.Before(act)) {
				act = a
			}
			if !d.IsZero() && (done.IsZero() || d.Before(done)) {
				done = d
			}
		}
		if act.IsZero() || done.IsZero() {
			return fmt.Errorf("node %s: no action.started and observed %s yet", failoverTarget, want)
		}
		return nil
	}); err != nil {
		return run, err
	}
	run.act, run.done = act.Sub(killedAt), done.Sub(killedAt)
	run.elections = fr.maxTerm() - termBefore
	tr.stop()
	if want == events.PowerOff {
		fr.next = events.PowerOn
	} else {
		fr.next = events.PowerOff
	}
	return run, fr.dr.Sim.RestoreSlotPower(slot)
}
