package power

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/sim"

	"github.com/racklet/rack/internal/testutil"
)

const testTimeout = 10 * time.Second

var quiet = slog.New(slog.DiscardHandler)

// call is one BMC call seen by the recorder.
type call struct {
	slot       int
	op         string // drivers.OpPowerRead, OpPowerSet+"/"+state, OpPowerCycle
	start, end time.Time
	err        error
}

// recorder decorates a real Backplane (the simulator's): it records every
// power call and, before letting an action through to the hardware, checks
// that the log has committed an action.started of the power reconciler for
// the slot's node with the matching operation, one per action.
type recorder struct {
	drivers.Backplane
	log eventlog.Log

	mu         sync.Mutex
	calls      []call
	violations []string
	used       map[string]bool // action ids that authorised a BMC action
}

var _ drivers.Backplane = (*recorder)(nil)

func newRecorder(bp drivers.Backplane, log eventlog.Log) *recorder {
	return &recorder{Backplane: bp, log: log, used: map[string]bool{}}
}

func (r *recorder) BMC(slot int) (drivers.BMC, error) {
	b, err := r.Backplane.BMC(slot)
	if err != nil {
		return nil, err
	}
	return &recBMC{BMC: b, r: r}, nil
}

// authorise checks the intent of an action on slot in the log.
func (r *recorder) authorise(ctx context.Context, slot int, op string) {
	st, err := r.log.State(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.violations = append(r.violations, fmt.Sprintf("slot %d %s: reading the state: %v", slot, op, err))
		return
	}
	var node *state.Node
	for _, n := range st.Nodes {
		if n.Slot == slot {
			node = n
		}
	}
	switch la := nodeAction(node); {
	case node == nil:
		r.violations = append(r.violations, fmt.Sprintf("slot %d %s: no node in the slot", slot, op))
	case la == nil || la.Status != "started" || la.Reconciler != Name || la.Operation != op:
		r.violations = append(r.violations, fmt.Sprintf("slot %d %s: no action.started committed first (last action %+v)", slot, op, la))
	case r.used[la.ID]:
		r.violations = append(r.violations, fmt.Sprintf("slot %d %s: action %s already used", slot, op, la.ID))
	default:
		// The projection says so; check the log itself too.
		evs, err := r.log.Read(ctx, la.Sequence, 1)
		if err != nil || len(evs) != 1 || evs[0].Type != events.ActionStarted || evs[0].Subject != node.Name {
			r.violations = append(r.violations, fmt.Sprintf("slot %d %s: event %d is not the action.started (%v)", slot, op, la.Sequence, err))
		}
		r.used[la.ID] = true
	}
}

func nodeAction(n *state.Node) *state.Action {
	if n == nil {
		return nil
	}
	return n.LastAction
}

func (r *recorder) record(c call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

// callsOf returns the recorded calls of slot with operation op ("" = all).
func (r *recorder) callsOf(slot int, op string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if c.slot == slot && (op == "" || c.op == op) {
			out = append(out, c)
		}
	}
	return out
}

// actions counts the recorded power actions (not reads) on slot.
func (r *recorder) actions(slot int) int {
	n := 0
	for _, c := range r.callsOf(slot, "") {
		if c.op != drivers.OpPowerRead {
			n++
		}
	}
	return n
}

func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Errorf("BMC action without committed intent: %s", v)
	}
}

type recBMC struct {
	drivers.BMC
	r *recorder
}

func (b *recBMC) PowerState(ctx context.Context) (drivers.PowerState, error) {
	start := time.Now()
	p, err := b.BMC.PowerState(ctx)
	b.r.record(call{slot: b.Slot(), op: drivers.OpPowerRead, start: start, end: time.Now(), err: err})
	return p, err
}

func (b *recBMC) SetPower(ctx context.Context, s drivers.PowerState) error {
	op := opOff
	if s == drivers.PowerOn {
		op = opOn
	}
	b.r.authorise(ctx, b.Slot(), op)
	start := time.Now()
	err := b.BMC.SetPower(ctx, s)
	b.r.record(call{slot: b.Slot(), op: op, start: start, end: time.Now(), err: err})
	return err
}

func (b *recBMC) PowerCycle(ctx context.Context) error {
	b.r.authorise(ctx, b.Slot(), opCycle)
	start := time.Now()
	err := b.BMC.PowerCycle(ctx)
	b.r.record(call{slot: b.Slot(), op: opCycle, start: start, end: time.Now(), err: err})
	return err
}

// harness is a rack: an in-memory log, the simulator behind a recorder,
// and a power reconciler, run by the real runtime (run) or called directly.
type harness struct {
	t    *testing.T
	log  *eventlog.Mem
	rack *sim.Rack
	rec  *recorder
	pr   *Reconciler
	reg  *prometheus.Registry
}

// testConfig is a reconciler config for tests: fast, quiet.
func testConfig() Config {
	return Config{
		Rack:            "rack1",
		Member:          "m1",
		ObserveInterval: 30 * time.Millisecond,
		CallTimeout:     time.Second,
		Logger:          quiet,
	}
}

func newHarness(t *testing.T, sc sim.Config, cfg Config) *harness {
	t.Helper()
	log := eventlog.NewMem(0)
	t.Cleanup(func() { _ = log.Close() })
	if sc.Logger == nil {
		sc.Logger = quiet
	}
	rack, err := sim.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rack.Close() })
	h := &harness{t: t, log: log, rack: rack, rec: newRecorder(rack.Backplane(), log), reg: prometheus.NewRegistry()}
	cfg.Log, cfg.Backplane, cfg.Registerer = log, h.rec, h.reg
	h.pr, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.rec.check(t) })
	return h
}

// run runs the reconciler in the real runtime, leading, until the test ends.
func (h *harness) run(backoff reconcilers.Backoff, opts ...reconcilers.Option) {
	h.t.Helper()
	if backoff == (reconcilers.Backoff{}) {
		backoff = reconcilers.Backoff{Base: 10 * time.Millisecond, Max: time.Second, Jitter: 0.2}
	}
	rt, err := reconcilers.New(reconcilers.Config{Log: h.log, Leadership: reconcilers.NewLeaderSwitch(true), Logger: quiet, Backoff: backoff})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := rt.Register(h.pr, opts...); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("runtime: %v", err)
		}
	})
}

// append appends one event and returns its sequence.
func (h *harness) append(typ events.Type, subject string, p events.Payload) uint64 {
	h.t.Helper()
	ev, err := events.New(events.Source("rack1", "test"), typ, subject, p)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := h.log.Append(context.Background(), ev)
	if err != nil {
		h.t.Fatal(err)
	}
	return out[0].Sequence
}

// register registers nodes n1..nN in slots 1..N, hosting members if given.
func (h *harness) register(n int, members bool) {
	h.t.Helper()
	for i := 1; i <= n; i++ {
		d := &events.NodeRegisteredData{Slot: i}
		if members {
			d.Member = fmt.Sprintf("m%d", i)
			h.append(events.MemberJoined, d.Member, &events.MemberJoinedData{Address: d.Member + ":7481", Voter: true})
		}
		h.append(events.NodeRegistered, fmt.Sprintf("n%d", i), d)
	}
}

func (h *harness) desire(node string, s events.PowerState, force bool) uint64 {
	h.t.Helper()
	return h.append(events.NodePowerDesired, node, &events.PowerDesiredData{State: s, Force: force})
}

func (h *harness) node(name string) *state.Node {
	h.t.Helper()
	st, err := h.log.State(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	n := st.Nodes[name]
	if n == nil {
		h.t.Fatalf("node %s is not registered", name)
	}
	return n
}

func (h *harness) seq() uint64 {
	h.t.Helper()
	st, err := h.log.State(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st.Sequence
}

// events returns the events about subject with sequence >= from, of the
// given types (all if none).
func (h *harness) events(subject string, from uint64, types ...events.Type) []events.Event {
	h.t.Helper()
	evs, err := h.log.Read(context.Background(), from, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []events.Event
	for _, ev := range evs {
		if ev.Subject != subject {
			continue
		}
		if len(types) == 0 {
			out = append(out, ev)
			continue
		}
		for _, t := range types {
			if ev.Type == t {
				out = append(out, ev)
			}
		}
	}
	return out
}

// payload decodes an event's payload as P.
func payload[P events.Payload](t *testing.T, ev events.Event) P {
	t.Helper()
	p, err := ev.Payload()
	if err != nil {
		t.Fatal(err)
	}
	d, ok := p.(P)
	if !ok {
		t.Fatalf("event %d: payload %T", ev.Sequence, p)
	}
	return d
}

// unitPower is the simulator's truth about a slot's power.
func (h *harness) unitPower(slot int) drivers.PowerState {
	h.t.Helper()
	u, err := h.rack.Unit(slot)
	if err != nil {
		h.t.Fatal(err)
	}
	return u.Power
}

// converged waits until node is observed s in the log and its unit is s.
func (h *harness) converged(node string, slot int, s events.PowerState) {
	h.t.Helper()
	testutil.WaitFor(h.t, testTimeout, func() error {
		if got := h.unitPower(slot); got != drivers.PowerState(s) {
			return fmt.Errorf("unit %d is %s, want %s", slot, got, s)
		}
		if n := h.node(node); n.Observed != s {
			return fmt.Errorf("node %s observed %q, want %s", node, n.Observed, s)
		}
		return nil
	})
}

// counter reads a counter of the harness's registry (0 if absent).
func (h *harness) counter(name string, labels map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// fencedOut is a log whose fenced appends fail: a member that lost
// leadership.
type fencedOut struct{ *eventlog.Mem }

func (fencedOut) AppendFenced(context.Context, ...events.Event) ([]events.Event, error) {
	return nil, eventlog.ErrNotLeader
}

// plainLog hides Mem's Fenced capability.
type plainLog struct{ eventlog.Log }

var errNotYet = errors.New("not yet")
