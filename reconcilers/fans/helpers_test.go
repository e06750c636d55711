package fans

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/reconcilers/power"
	"github.com/racklet/rack/sim"
)

var quiet = slog.New(slog.DiscardHandler)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

const interval = time.Second

// testPolicy: a curve from 20% at 30 °C to 100% at 60 °C, critical at
// 80 °C, sensors stale after 3 s.
func testPolicy() events.FanPolicy {
	return events.FanPolicy{
		Mode:            events.FanCurve,
		Curve:           []events.CurvePoint{{Celsius: 30, Duty: 20}, {Celsius: 60, Duty: 100}},
		CriticalCelsius: 80,
		StaleAfter:      "3s",
	}
}

// harness: the simulator on a manual clock, an in-memory log with the
// rack's nodes registered and on, the fan reconciler on the same clock,
// called directly one sample at a time (deterministic), and a power
// reconciler to carry shutdowns out.
type harness struct {
	t     *testing.T
	log   *eventlog.Mem
	rack  *sim.Rack
	clk   *sim.ManualClock
	fr    *Reconciler
	pr    *power.Reconciler
	reg   *prometheus.Registry
	cfg   Config
	slots int

	mu      sync.Mutex
	samples []telemetry.Sample
}

// simConfig is a rack of slots units, on and ready, with four fans and no
// temperature noise or lag (readings are exact; energy still grows).
func simConfig(slots int) sim.Config {
	th := sim.DefaultThermal()
	th.Tau, th.NoiseCelsius = 0, 0
	fans := sim.DefaultFans()
	fans.NoiseRPM = 0
	return sim.Config{Slots: slots, Seed: 1, StartOn: true, Thermal: th, Fans: fans, Logger: quiet}
}

func newHarness(t *testing.T, sc sim.Config, mutate ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, log: eventlog.NewMem(0), clk: sim.NewManualClock(t0), reg: prometheus.NewRegistry(), slots: sc.Slots}
	t.Cleanup(func() { _ = h.log.Close() })
	sc.Clock = h.clk
	var err error
	h.rack, err = sim.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.rack.Close() })
	h.cfg = Config{
		Log: h.log, Backplane: h.rack.Backplane(), Rack: "rack1", Member: "m1",
		Policy: testPolicy(), Interval: interval, CallTimeout: time.Second,
		Logger: quiet, Registerer: h.reg, Now: h.clk.Now,
		Publish: func(_ context.Context, s telemetry.Sample) error {
			h.mu.Lock()
			h.samples = append(h.samples, s)
			h.mu.Unlock()
			return nil
		},
	}
	for _, m := range mutate {
		m(&h.cfg)
	}
	h.fr, err = New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.pr, err = power.New(power.Config{Log: h.log, Backplane: h.rack.Backplane(), Rack: "rack1", Member: "m1", Logger: quiet, CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for s := 1; s <= sc.Slots; s++ {
		name := fmt.Sprintf("n%d", s)
		h.append(events.NodeRegistered, name, &events.NodeRegisteredData{Slot: s})
		h.append(events.NodePowerDesired, name, &events.PowerDesiredData{State: events.PowerOn})
	}
	return h
}

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

// step advances the clock one interval and takes one sample.
func (h *harness) step() telemetry.Sample {
	h.t.Helper()
	h.clk.Advance(interval)
	res, err := h.fr.Reconcile(h.t.Context(), reconcilers.Request{Name: "rack1"})
	if err != nil {
		h.t.Fatalf("Reconcile: %v", err)
	}
	if res.RequeueAfter != interval {
		h.t.Fatalf("RequeueAfter = %v, want %v", res.RequeueAfter, interval)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.samples[len(h.samples)-1]
}

func (h *harness) steps(n int) telemetry.Sample {
	h.t.Helper()
	var s telemetry.Sample
	for range n {
		s = h.step()
	}
	return s
}

// powerStep lets the power reconciler act on node.
func (h *harness) powerStep(node string) {
	h.t.Helper()
	if _, err := h.pr.Reconcile(h.t.Context(), reconcilers.Request{Name: node}); err != nil {
		h.t.Fatalf("power Reconcile(%s): %v", node, err)
	}
}

func (h *harness) state() *state.State {
	h.t.Helper()
	st, err := h.log.State(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *harness) seq() uint64 { return h.state().Sequence }

// alarmEvents returns the alarm events since sequence from (exclusive).
func (h *harness) alarmEvents(from uint64) []events.Event {
	h.t.Helper()
	evs, err := h.log.Read(context.Background(), from+1, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []events.Event
	for _, ev := range evs {
		if ev.Type == events.AlarmRaised || ev.Type == events.AlarmCleared {
			out = append(out, ev)
		}
	}
	return out
}

// duties is the duty every fan is driven with, by the simulator's truth.
func (h *harness) duties() []float64 {
	var out []float64
	for _, f := range h.rack.Fans() {
		out = append(out, f.Duty)
	}
	return out
}

// allFansAt checks that the simulator drives every fan at duty.
func (h *harness) allFansAt(duty float64) error {
	for _, f := range h.rack.Fans() {
		if f.Duty != duty {
			return fmt.Errorf("fan %d driven at %v%%, want %v%% (all: %v)", f.Fan, f.Duty, duty, h.duties())
		}
	}
	return nil
}

func (h *harness) alarm(kind events.AlarmKind, subject string) *state.Alarm {
	return h.state().Thermal.Alarm(kind, subject)
}

// payloadOf decodes an event's payload as P.
func payloadOf[P events.Payload](t *testing.T, ev events.Event) P {
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
