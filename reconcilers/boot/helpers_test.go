package boot_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/internal/testutil"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/reconcilers/boot"
	"github.com/racklet/rack/reconcilers/power"
	"github.com/racklet/rack/reconcilers/presence"
	"github.com/racklet/rack/sim"
	"github.com/racklet/rack/sim/imagehost"
)

const testTimeout = 15 * time.Second

var quiet = slog.New(slog.DiscardHandler)

// Stage durations of the simulated units, on the manual clock the tests
// move by hand: every stage is seen.
var timings = sim.Timings{Firmware: 10 * time.Second, Bootstrap: 20 * time.Second, OS: 10 * time.Second}

// recorder wraps the simulator's backplane: it counts the actions on each
// slot and checks, before each reaches the BMC, that its action.started
// is committed (intent before action).
type recorder struct {
	drivers.Backplane
	log eventlog.Log

	mu         sync.Mutex
	actions    map[int][]string // slot → operations, in order
	violations []string
}

func (r *recorder) BMC(slot int) (drivers.BMC, error) {
	b, err := r.Backplane.BMC(slot)
	if err != nil {
		return nil, err
	}
	return &recBMC{BMC: b, r: r}, nil
}

func (r *recorder) act(ctx context.Context, slot int, op, reconciler string) {
	st, err := r.log.State(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.actions[slot] = append(r.actions[slot], op)
	if err != nil {
		r.violations = append(r.violations, err.Error())
		return
	}
	n := st.NodeAtSlot(slot)
	if n == nil || n.LastAction == nil || n.LastAction.Status != "started" || n.LastAction.Operation != op || n.LastAction.Reconciler != reconciler {
		var la *state.Action
		if n != nil {
			la = n.LastAction
		}
		r.violations = append(r.violations, fmt.Sprintf("slot %d %s without a committed action.started (last action %+v)", slot, op, la))
	}
}

// count counts the operations op on slot.
func (r *recorder) count(slot int, op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, o := range r.actions[slot] {
		if o == op {
			n++
		}
	}
	return n
}

type recBMC struct {
	drivers.BMC
	r *recorder
}

func (b *recBMC) SetPower(ctx context.Context, s drivers.PowerState) error {
	op := state.OpPowerOff
	if s == drivers.PowerOn {
		op = state.OpPowerOn
	}
	b.r.act(ctx, b.Slot(), op, power.Name)
	return b.BMC.SetPower(ctx, s)
}

func (b *recBMC) PowerCycle(ctx context.Context) error {
	b.r.act(ctx, b.Slot(), state.OpPowerCycle, power.Name)
	return b.BMC.PowerCycle(ctx)
}

func (b *recBMC) BootStage(ctx context.Context) (drivers.BootStage, error) {
	return b.BMC.(drivers.BootStager).BootStage(ctx)
}

func (b *recBMC) SetBootSource(ctx context.Context, s drivers.BootSource) error {
	b.r.act(ctx, b.Slot(), boot.OpSetSource, boot.Name)
	return b.BMC.(drivers.BootSourceSetter).SetBootSource(ctx, s)
}

func (b *recBMC) BootSource(ctx context.Context) (drivers.BootSource, error) {
	return b.BMC.(drivers.BootSourceSetter).BootSource(ctx)
}

// harness is a rack: an in-memory log, the simulator on a manual clock
// behind a recorder, an image host, and the power, boot and presence
// reconcilers in the real runtime.
type harness struct {
	t      *testing.T
	log    *eventlog.Mem
	rack   *sim.Rack
	clock  *sim.ManualClock
	rec    *recorder
	images *imagehost.Host
}

type options struct {
	timeouts boot.Timeouts
	members  bool // n1..n3 host members m1..m3
	empty    []int
}

func newHarness(t *testing.T, o options) *harness {
	t.Helper()
	log := eventlog.NewMem(0)
	t.Cleanup(func() { _ = log.Close() })
	clock := sim.NewManualClock(time.Unix(1_700_000_000, 0))
	rack, err := sim.New(sim.Config{Slots: 3, StartOn: true, Clock: clock, Timings: timings, Empty: o.empty, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rack.Close() })
	images, err := imagehost.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(images.Close)
	h := &harness{t: t, log: log, rack: rack, clock: clock, images: images,
		rec: &recorder{Backplane: rack.Backplane(), log: log, actions: map[int][]string{}}}
	t.Cleanup(func() {
		h.rec.mu.Lock()
		defer h.rec.mu.Unlock()
		for _, v := range h.rec.violations {
			t.Errorf("intent before action: %s", v)
		}
	})

	// Nodes n1..n3 in slots 1..3 (the occupied ones), desired on.
	for slot := 1; slot <= 3; slot++ {
		skip := false
		for _, e := range o.empty {
			skip = skip || e == slot
		}
		if skip {
			continue
		}
		d := &events.NodeRegisteredData{Slot: slot}
		if o.members {
			d.Member = fmt.Sprintf("m%d", slot)
			h.append(events.MemberJoined, d.Member, &events.MemberJoinedData{Address: d.Member, Voter: true})
		}
		name := fmt.Sprintf("n%d", slot)
		h.append(events.NodeRegistered, name, d)
		h.append(events.NodePowerDesired, name, &events.PowerDesiredData{State: events.PowerOn})
	}

	pr, err := power.New(power.Config{Log: log, Backplane: h.rec, Rack: "rack1", Member: "m1",
		ObserveInterval: 20 * time.Millisecond, CallTimeout: time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	br, err := boot.New(boot.Config{Log: log, Backplane: h.rec, Rack: "rack1", Member: "m1",
		Keyring: images.Keyring(), RootCAs: images.Roots(), Timeouts: o.timeouts,
		PollInterval: 10 * time.Millisecond, CallTimeout: time.Second, FetchTimeout: 5 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	pres, err := presence.New(presence.Config{Log: log, Backplane: h.rec, Rack: "rack1", Member: "m1",
		Interval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := reconcilers.New(reconcilers.Config{Log: log, Leadership: reconcilers.NewLeaderSwitch(true), Logger: quiet,
		Backoff: reconcilers.Backoff{Base: 10 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: 0.2}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []reconcilers.Reconciler{pr, br, pres} {
		if err := rt.Register(r); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runtime: %v", err)
		}
	})
	return h
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

// node returns the node, or nil if it is not registered.
func (h *harness) node(name string) *state.Node {
	h.t.Helper()
	st, err := h.log.State(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st.Nodes[name]
}

// publish serves a good signed image at path and returns it.
func (h *harness) publish(path string) imagehost.Image {
	h.t.Helper()
	img, err := h.images.Publish(path, []byte("kernel+initramfs of "+path), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return img
}

// waitOn waits until node is observed on.
func (h *harness) waitOn(node string) {
	h.t.Helper()
	testutil.WaitFor(h.t, testTimeout, func() error {
		n := h.node(node)
		if n == nil || n.Observed != events.PowerOn {
			return fmt.Errorf("node %s not observed on: %+v", node, n)
		}
		return nil
	})
}

// waitBoot waits until node's boot of spec is in phase, and returns it.
func (h *harness) waitBoot(node string, spec uint64, phase string) *state.Boot {
	h.t.Helper()
	var b *state.Boot
	testutil.WaitFor(h.t, testTimeout, func() error {
		n := h.node(node)
		if n == nil || n.Boot == nil {
			return fmt.Errorf("node %s has no boot", node)
		}
		b = n.Boot
		if b.DesiredSequence != spec || b.Phase != phase {
			return fmt.Errorf("node %s boot %d %s (stage %q, reason %q), want %d %s", node, b.DesiredSequence, b.Phase, b.Stage, b.Reason, spec, phase)
		}
		return nil
	})
	return b
}

// waitStage waits until node's current boot has reached stage.
func (h *harness) waitStage(node string, stage events.BootStage) {
	h.t.Helper()
	testutil.WaitFor(h.t, testTimeout, func() error {
		n := h.node(node)
		if n == nil || n.Boot == nil {
			return fmt.Errorf("node %s has no boot", node)
		}
		if got := n.Boot.StageThisBoot(); got != stage {
			return fmt.Errorf("node %s stage %q (phase %s, reason %q), want %q", node, got, n.Boot.Phase, n.Boot.Reason, stage)
		}
		return nil
	})
}

// events returns the events about subject from sequence from, of the given
// types (all if none).
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
		keep := len(types) == 0
		for _, t := range types {
			keep = keep || ev.Type == t
		}
		if keep {
			out = append(out, ev)
		}
	}
	return out
}

func payload[P events.Payload](t *testing.T, ev events.Event) P {
	t.Helper()
	p, err := ev.Payload()
	if err != nil {
		t.Fatal(err)
	}
	d, ok := p.(P)
	if !ok {
		t.Fatalf("event %d %s: payload %T", ev.Sequence, ev.Type, p)
	}
	return d
}
