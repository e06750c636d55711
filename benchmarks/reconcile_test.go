package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/sim"
	"github.com/racklet/rack/sim/devrack"
)

// zeroBus stands for "no BMC bus latency": devrack takes 0 for its 1 ms
// default, so the benchmarks ask for one nanosecond (the simulator then
// arms a timer that fires at once).
const zeroBus = time.Nanosecond

// reconcileCase is one rack of BenchmarkReconcileLatency.
type reconcileCase struct {
	nodes int
	bus   time.Duration
}

func (c reconcileCase) name() string {
	bus := c.bus
	if bus == zeroBus {
		bus = 0
	}
	return fmt.Sprintf("nodes=%d/bus=%v", c.nodes, bus)
}

// BenchmarkReconcileLatency measures, on a devrack simulated rack with
// three members, the time from the commit of a node.power.desired event
// to the commit of the node.power.observed event of the same node in the
// desired state that the power reconciler appends after acting: both as
// the leader's log applies them, seen by a watcher on the leader's log.
// Each operation toggles one node that hosts no member (off, then on),
// without force; changes=C runs C of them at a time on distinct nodes.
func BenchmarkReconcileLatency(b *testing.B) {
	for _, rc := range []reconcileCase{
		{5, zeroBus}, {5, 5 * time.Millisecond},
		{50, zeroBus}, {50, 5 * time.Millisecond},
		{200, zeroBus}, {500, zeroBus}, // 200 and 500 nodes only without bus latency: with 5 ms the bus alone bounds it (README)
	} {
		var (
			dr  *devrack.Rack
			w   *powerWatch
			err error
		)
		get := func(b *testing.B) (*devrack.Rack, *powerWatch) {
			b.Helper()
			if dr == nil && err == nil {
				dr, w, err = startReconcileRack(rc)
			}
			if err != nil {
				b.Fatalf("starting the rack: %v", err)
			}
			return dr, w
		}
		// Only slots 4.. host no member: 5 nodes allow 2 changes at a
		// time, 50 nodes 47.
		for _, c := range slices.Compact([]int{1, min(10, rc.nodes-3), min(100, rc.nodes-3)}) {
			b.Run(fmt.Sprintf("%s/changes=%d", rc.name(), c), func(b *testing.B) {
				dr, w := get(b)
				benchReconcile(b, dr, w, c)
			})
		}
		if dr != nil {
			w.stop()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := dr.Close(ctx); err != nil {
				b.Logf("closing the rack: %v", err)
			}
			cancel()
		}
	}
}

func startReconcileRack(rc reconcileCase) (*devrack.Rack, *powerWatch, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dr, err := devrack.Start(ctx, devrack.Config{
		Slots: rc.nodes, Members: 3, BusLatency: rc.bus,
		Timings:         sim.Timings{Firmware: time.Millisecond, Bootstrap: time.Millisecond, OS: time.Millisecond},
		ObserveInterval: 50 * time.Millisecond,
		Tune:            func(c *member.Config) { c.LogLevel = "warn" },
	})
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*devrack.Rack, *powerWatch, error) {
		_ = dr.Close(context.Background())
		return nil, nil, err
	}
	// Wait for a ready leader and every node observed on.
	var lead *member.Member
	for {
		if lead = dr.Leader(); lead != nil {
			st, err := lead.Log().State(ctx)
			if err != nil {
				return fail(err)
			}
			on := 0
			for _, n := range st.Nodes {
				if n.Observed == events.PowerOn && n.Desired == events.PowerOn {
					on++
				}
			}
			if on == rc.nodes {
				break
			}
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("waiting for every node observed on: %w", ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	w, err := watchPower(lead)
	if err != nil {
		return fail(err)
	}
	return dr, w, nil
}

// powerWatch pairs, on one member's log, each node.power.desired with the
// first following node.power.observed of the same node in that state and
// delivers the time between the two applies (wall clock, as the watcher
// sees them) on the node's channel.
type powerWatch struct {
	m      *member.Member
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	pending map[string]pendingDesired
	results map[string]chan time.Duration
}

type pendingDesired struct {
	state events.PowerState
	at    time.Time
}

func watchPower(m *member.Member) (*powerWatch, error) {
	st, err := m.Log().State(context.Background())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &powerWatch{
		m: m, cancel: cancel, done: make(chan error, 1),
		pending: map[string]pendingDesired{}, results: map[string]chan time.Duration{},
	}
	go func() { w.done <- m.Log().Watch(ctx, st.Sequence+1, w.apply) }()
	return w, nil
}

func (w *powerWatch) apply(ev events.Event) error {
	now := time.Now()
	switch ev.Type {
	case events.NodePowerDesired, events.NodePowerObserved:
	default:
		return nil
	}
	p, err := ev.Payload()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch d := p.(type) {
	case *events.PowerDesiredData:
		w.pending[ev.Subject] = pendingDesired{state: d.State, at: now}
	case *events.PowerObservedData:
		pd, ok := w.pending[ev.Subject]
		if !ok || pd.state != d.State {
			return nil
		}
		delete(w.pending, ev.Subject)
		if ch := w.results[ev.Subject]; ch != nil {
			select {
			case ch <- now.Sub(pd.at):
			default:
			}
		}
	}
	return nil
}

// result returns the channel on which node's latencies arrive.
func (w *powerWatch) result(node string) chan time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := w.results[node]
	if ch == nil {
		ch = make(chan time.Duration, 1)
		w.results[node] = ch
	}
	return ch
}

func (w *powerWatch) stop() {
	w.cancel()
	<-w.done
}

func benchReconcile(b *testing.B, dr *devrack.Rack, w *powerWatch, conc int) {
	if !w.m.Log().IsLeader() {
		b.Fatalf("%s no longer leads", w.m.Name())
	}
	// Worker k owns the nodes of slots 4+k, 4+k+conc, … and changes one at
	// a time, round robin, so no two changes in flight touch one node.
	owned := make([][]string, conc)
	for slot := 4; slot <= dr.Slots(); slot++ {
		k := (slot - 4) % conc
		owned[k] = append(owned[k], devrack.NodeName(slot))
	}
	// The next state of each node: whatever it is not now.
	st, err := w.m.Log().State(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	next := make([]map[string]events.PowerState, conc) // one per worker
	for k, ns := range owned {
		next[k] = map[string]events.PowerState{}
		for _, n := range ns {
			next[k][n] = events.PowerOff
			if st.Nodes[n].Desired == events.PowerOff {
				next[k][n] = events.PowerOn
			}
		}
	}
	lat := make(latencies, b.N)
	src := events.Source(dr.Name(), "bench")
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	b.ResetTimer()
	start := time.Now()
	for k := range conc {
		wg.Go(func() {
			nodes, next, i := owned[k], next[k], 0
			for op := k; op < b.N; op += conc {
				node := nodes[i%len(nodes)]
				i++
				want := next[node]
				ev, err := events.New(src, events.NodePowerDesired, node, &events.PowerDesiredData{State: want})
				if err == nil {
					ev.Actor = "bench"
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err = w.m.Log().Append(ctx, ev)
					cancel()
				}
				if err == nil {
					select {
					case lat[op] = <-w.result(node):
					case <-time.After(30 * time.Second):
						err = fmt.Errorf("%s: no observed %s within 30s", node, want)
					}
				}
				if err != nil {
					errMu.Lock()
					first = errors.Join(first, err)
					errMu.Unlock()
					return
				}
				if want == events.PowerOn {
					next[node] = events.PowerOff
				} else {
					next[node] = events.PowerOn
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if first != nil {
		b.Fatal(first)
	}
	reportLatency(b, lat)
	b.ReportMetric(micros(lat.percentile(90)), "p90-µs")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
	record(b, b.Name(), lat, rate(b.N, elapsed, "changes/s"))
}
