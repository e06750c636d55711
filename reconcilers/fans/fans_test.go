package fans

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/internal/testutil"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/sim"
)

// TestPolicyDrivesTheFans: with every sensor fine the duty is the curve's
// at the hottest node, a hotter inlet raises it, and a new policy in the
// log takes over at the next sample.
func TestPolicyDrivesTheFans(t *testing.T) {
	h := newHarness(t, simConfig(3))
	s := h.steps(6)
	if s.FailSafe {
		t.Fatalf("fail-safe with healthy sensors: %s", s.FailSafeReason)
	}
	if want := curveDuty(testPolicy().Curve, s.SourceCelsius); s.Duty != want || s.Duty >= 100 {
		t.Fatalf("duty %v%% at %v °C, want the curve's %v%%", s.Duty, s.SourceCelsius, want)
	}
	if err := h.allFansAt(s.Duty); err != nil {
		t.Fatal(err)
	}
	hottest := math.Inf(-1)
	for _, n := range s.Nodes {
		if !n.OK || n.Stale || n.Joules <= 0 {
			t.Fatalf("node sample %+v", n)
		}
		hottest = math.Max(hottest, n.Celsius)
	}
	if s.SourceCelsius != hottest {
		t.Errorf("the policy followed %v °C, the hottest node is at %v °C", s.SourceCelsius, hottest)
	}
	if len(s.Fans) != 4 || !s.Totals.OK || s.Totals.Joules <= 0 {
		t.Errorf("sample fans %v, totals %+v", s.Fans, s.Totals)
	}
	if a := h.state().Thermal.AlarmList(); len(a) != 0 {
		t.Errorf("alarms with healthy sensors: %+v", a)
	}

	// A hot aisle: more air, no alarm.
	h.rack.SetInletTemperature(40)
	hot := h.steps(6)
	if hot.FailSafe || hot.Duty <= s.Duty {
		t.Errorf("inlet 40 °C: duty %v%% (fail-safe %v), want more than %v%%", hot.Duty, hot.FailSafe, s.Duty)
	}

	// A new policy in the log applies at the next sample.
	flat := testPolicy()
	flat.Curve = []events.CurvePoint{{Celsius: 0, Duty: 70}, {Celsius: 100, Duty: 70}}
	h.append(events.FanPolicySet, "rack1", &events.FanPolicySetData{Policy: flat})
	if s := h.step(); s.Duty != 70 {
		t.Errorf("after a flat 70%% policy: duty %v%%", s.Duty)
	}
	if err := h.allFansAt(70); err != nil {
		t.Error(err)
	}
}

// TestStuckFan: a fan at 0 RPM while driven puts every fan at 100% at the
// next sample and raises one alarm (not one per sample); freed, the alarm
// clears and the policy resumes.
func TestStuckFan(t *testing.T) {
	h := newHarness(t, simConfig(3))
	before := h.steps(3)
	if before.Duty >= 100 {
		t.Fatalf("baseline duty %v%%, want below 100", before.Duty)
	}
	from := h.seq()
	if err := h.rack.StickFan(2); err != nil {
		t.Fatal(err)
	}
	s := h.step()
	if !s.FailSafe || s.Duty != 100 || !s.Fans[1].Failed {
		t.Fatalf("with fan 2 stuck: fail-safe %v, duty %v, fans %+v", s.FailSafe, s.Duty, s.Fans)
	}
	if err := h.allFansAt(100); err != nil {
		t.Fatal(err)
	}
	a := h.alarm(events.AlarmFanFailed, "fan2")
	if a == nil || !strings.Contains(a.Reason, "fan 2 turns at 0 RPM") {
		t.Fatalf("alarm %+v, want fan-failed fan2", a)
	}
	h.steps(4)
	if evs := h.alarmEvents(from); len(evs) != 1 || evs[0].Type != events.AlarmRaised || evs[0].Subject != "fan2" {
		t.Fatalf("alarm events after 5 samples with fan 2 stuck: %v, want one alarm.raised fan2", evs)
	}

	if err := h.rack.HealFan(2); err != nil {
		t.Fatal(err)
	}
	s = h.step()
	if s.FailSafe {
		t.Fatalf("fan 2 turning again, still fail-safe: %s", s.FailSafeReason)
	}
	evs := h.alarmEvents(from)
	if len(evs) != 2 || evs[1].Type != events.AlarmCleared || evs[1].Subject != "fan2" {
		t.Fatalf("alarm events after the heal: %v, want raised then cleared", evs)
	}
	if d := payloadOf[*events.AlarmClearedData](t, evs[1]); d.Kind != events.AlarmFanFailed {
		t.Errorf("cleared %+v", d)
	}
	if s := h.steps(2); s.Duty >= 100 {
		t.Errorf("policy did not resume: duty %v%%", s.Duty)
	}
}

// TestSensorFaults: a stale BMC (same readings), an unreachable one and a
// hung one each raise their alarm once the policy's stale-after (3 s) has
// passed, put the fans at 100%, and clear once the sensor is back.
func TestSensorFaults(t *testing.T) {
	// A missing sensor's clock starts at its last good read, a stale
	// one's at its first stale read (its power reading's noise makes it
	// differ from the last live one): one sample later.
	tests := []struct {
		name   string
		inject func(r *sim.Rack) error
		kind   events.AlarmKind
		after  int
	}{
		{"stale", func(r *sim.Rack) error { return r.StaleBMC(2) }, events.AlarmSensorStale, 4},
		{"unreachable", func(r *sim.Rack) error { return r.DisconnectBMC(2) }, events.AlarmSensorMissing, 3},
		{"hung", func(r *sim.Rack) error { return r.HangBMC(2) }, events.AlarmSensorMissing, 3},
		{"slot power pulled", func(r *sim.Rack) error { return r.PullSlotPower(2) }, events.AlarmSensorMissing, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, simConfig(3), func(c *Config) { c.CallTimeout = 20 * time.Millisecond })
			h.steps(2)
			from := h.seq()
			if err := tc.inject(h.rack); err != nil {
				t.Fatal(err)
			}
			// Stale-after is 3 s.
			if s := h.steps(tc.after - 1); s.FailSafe {
				t.Fatalf("fail-safe %d s into the fault: %s", tc.after-1, s.FailSafeReason)
			}
			s := h.step()
			if !s.FailSafe || s.Duty != 100 {
				t.Fatalf("%d s into the fault: fail-safe %v, duty %v", tc.after, s.FailSafe, s.Duty)
			}
			if err := h.allFansAt(100); err != nil {
				t.Fatal(err)
			}
			if a := h.alarm(tc.kind, "n2"); a == nil {
				t.Fatalf("no %s alarm on n2; alarms %+v", tc.kind, h.state().Thermal.AlarmList())
			}
			if n := s.Nodes[1]; n.OK == (tc.kind == events.AlarmSensorMissing) || n.Stale != (tc.kind == events.AlarmSensorStale) {
				t.Errorf("n2's sample %+v", n)
			}
			h.steps(3)
			if evs := h.alarmEvents(from); len(evs) != 1 {
				t.Fatalf("alarm events: %v, want one", evs)
			}

			must(t, h.rack.HealBMC(2))
			must(t, h.rack.RestoreSlotPower(2))
			s = h.steps(2)
			if s.FailSafe {
				t.Fatalf("healed, still fail-safe: %s", s.FailSafeReason)
			}
			if evs := h.alarmEvents(from); len(evs) != 2 || evs[1].Type != events.AlarmCleared {
				t.Fatalf("alarm events after the heal: %v", evs)
			}
		})
	}
}

// TestNewLeaderKeepsRaisedAlarms: a reconciler that starts afresh (a new
// leader) keeps the fans at 100% for an alarm the log has raised until it
// sees the condition end itself.
func TestNewLeaderKeepsRaisedAlarms(t *testing.T) {
	h := newHarness(t, simConfig(2))
	h.steps(2)
	must(t, h.rack.StaleBMC(1))
	if s := h.steps(4); !s.FailSafe || h.alarm(events.AlarmSensorStale, "n1") == nil {
		t.Fatal("the stale sensor raised no alarm")
	}
	must(t, h.rack.HealBMC(1))

	cfg := h.cfg
	cfg.Registerer = nil
	next, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.fr = next
	// One sample of a healed sensor is no evidence that it lives.
	if s := h.step(); !s.FailSafe || s.Duty != 100 {
		t.Fatalf("new leader's first sample: fail-safe %v, duty %v", s.FailSafe, s.Duty)
	}
	if s := h.step(); s.FailSafe {
		t.Fatalf("new leader's second sample (readings changed): still fail-safe: %s", s.FailSafeReason)
	}
	if h.alarm(events.AlarmSensorStale, "n1") != nil {
		t.Error("the alarm is still raised")
	}
}

// TestCriticalTemperature: a node over the critical temperature for two
// samples is shut down through the power path (a forced desired off with
// an alarm saying why, in one batch), even when the quorum guard would
// refuse; cooled, the alarm clears and the node stays off; powered on
// while still hot, it goes off again.
func TestCriticalTemperature(t *testing.T) {
	h := newHarness(t, simConfig(3))
	// n1 hosts m1; m2 and m3 are on n2 and n3, and n2 is off: powering n1
	// off would leave 1 of 3 members, which the guard refuses.
	for i, n := range []string{"n1", "n2", "n3"} {
		m := fmt.Sprintf("m%d", i+1)
		h.append(events.MemberJoined, m, &events.MemberJoinedData{Address: m + ":7481", Voter: true})
		h.append(events.NodeRemoved, n, &events.NodeRemovedData{})
		h.append(events.NodeRegistered, n, &events.NodeRegisteredData{Slot: i + 1, Member: m})
		h.append(events.NodePowerDesired, n, &events.PowerDesiredData{State: events.PowerOn})
		h.powerStep(n)
	}
	h.append(events.NodePowerDesired, "n2", &events.PowerDesiredData{State: events.PowerOff, Force: true})
	h.powerStep("n2")
	if err := h.state().QuorumGuard("n1"); !errors.Is(err, state.ErrQuorumGuard) {
		t.Fatalf("quorum guard on n1: %v, want a refusal", err)
	}
	h.steps(2)

	from := h.seq()
	must(t, h.rack.HeatUnit(1, 6))
	s := h.step()
	if evs := h.alarmEvents(from); len(evs) != 0 {
		t.Fatalf("one sample over critical already raised %v", evs)
	}
	if s.Duty != 100 {
		t.Errorf("n1 at %v °C: duty %v%%, want the curve's 100%%", s.SourceCelsius, s.Duty)
	}
	h.step()
	evs, err := h.log.Read(context.Background(), from+1, 0)
	must(t, err)
	if len(evs) != 2 || evs[0].Type != events.AlarmRaised || evs[1].Type != events.NodePowerDesired ||
		evs[0].Subject != "n1" || evs[1].Subject != "n1" || evs[1].Actor != Actor {
		t.Fatalf("after two samples over critical: %v, want alarm.raised and power.desired off for n1 in one batch", evs)
	}
	a := payloadOf[*events.AlarmRaisedData](t, evs[0])
	if a.Kind != events.AlarmCriticalTemperature || !strings.HasPrefix(a.Reason, "critical temperature ") ||
		!strings.Contains(a.Reason, " °C > 80 °C: shutting n1 down") || a.Limit != 80 || a.Value <= 80 {
		t.Errorf("alarm %+v", a)
	}
	if d := payloadOf[*events.PowerDesiredData](t, evs[1]); d.State != events.PowerOff || !d.Force {
		t.Errorf("desired %+v, want a forced off", d)
	}
	// The power reconciler carries it out, guard or not.
	h.powerStep("n1")
	if u, _ := h.rack.Unit(1); u.Power != drivers.PowerOff {
		t.Fatalf("unit 1 is %s after the power reconciler ran", u.Power)
	}

	// Off, it cools below critical − 5: the alarm clears, the node stays off.
	h.steps(2)
	if a := h.alarm(events.AlarmCriticalTemperature, "n1"); a != nil {
		t.Fatalf("alarm still raised when off: %+v (n1 at %v °C)", a, unitCelsius(t, h.rack, 1))
	}
	if n := h.state().Nodes["n1"]; n.Desired != events.PowerOff {
		t.Errorf("n1 desired %s after cooling, want off until an operator says otherwise", n.Desired)
	}

	// Powered on while the fault is still there: off again.
	from = h.seq()
	h.append(events.NodePowerDesired, "n1", &events.PowerDesiredData{State: events.PowerOn, Force: true})
	h.powerStep("n1")
	h.steps(3)
	if n := h.state().Nodes["n1"]; n.Desired != events.PowerOff || n.DesiredSequence <= from+1 {
		t.Errorf("n1 powered on while hot: desired %s@%d, want a new off", n.Desired, n.DesiredSequence)
	}
}

func unitCelsius(t *testing.T, r *sim.Rack, slot int) float64 {
	u, err := r.Unit(slot)
	must(t, err)
	return u.Celsius
}

// TestPIDHoldsTheSetpoint: a PID policy brings the hottest node to its
// setpoint and holds it there, within the duty range.
func TestPIDHoldsTheSetpoint(t *testing.T) {
	p := events.FanPolicy{
		Mode:            events.FanPID,
		PID:             &events.PIDSettings{Setpoint: 40, Kp: 4, Ki: 3, MinDuty: 10, MaxDuty: 100},
		CriticalCelsius: 80, StaleAfter: "3s",
	}
	h := newHarness(t, simConfig(2), func(c *Config) { c.Policy = p })
	s := h.steps(40)
	if s.FailSafe || math.Abs(s.SourceCelsius-40) > 0.5 {
		t.Fatalf("after 40 samples: %.2f °C at %.1f%% (fail-safe %v), want 40 ± 0.5 °C", s.SourceCelsius, s.Duty, s.FailSafe)
	}
	if s.Duty < 10 || s.Duty > 100 {
		t.Errorf("duty %v%% out of [10, 100]", s.Duty)
	}
}

func TestCurveDuty(t *testing.T) {
	pts := []events.CurvePoint{{Celsius: 30, Duty: 20}, {Celsius: 50, Duty: 40}, {Celsius: 70, Duty: 100}}
	for _, tc := range []struct{ c, want float64 }{
		{-10, 20}, {30, 20}, {40, 30}, {50, 40}, {60, 70}, {70, 100}, {95, 100},
	} {
		if got := curveDuty(pts, tc.c); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("curveDuty(%v) = %v, want %v", tc.c, got, tc.want)
		}
	}
}

func TestPIDController(t *testing.T) {
	p := events.FanPolicy{Mode: events.FanPID, PID: &events.PIDSettings{Setpoint: 50, Kp: 2, Ki: 1, Kd: 1, MinDuty: 20, MaxDuty: 90}}
	tests := []struct {
		name  string
		temps []float64
		want  float64
	}{
		{"cold clamps to min", []float64{30, 30, 30}, 20},
		{"hot clamps to max", []float64{90, 90, 90}, 90},
		// e=5: 2·5 = 10 → min 20; then ∫ grows 5 per second: 10+5 = 15, 10+10 = 20, 10+15 = 25.
		{"integral accumulates", []float64{55, 55, 55, 55}, 25},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newController(p)
			var got float64
			for i, temp := range tc.temps {
				got = c.duty(temp, t0.Add(time.Duration(i)*time.Second))
			}
			if math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("duty = %v, want %v", got, tc.want)
			}
		})
	}
	// Anti-windup: an hour too hot, then at the setpoint, the duty comes
	// down at once rather than after an hour.
	c := newController(p)
	for i := range 3600 {
		c.duty(90, t0.Add(time.Duration(i)*time.Second))
	}
	if got := c.duty(50, t0.Add(3600*time.Second)); got > 90 {
		t.Errorf("after wind-up: %v", got)
	}
}

// TestInRuntime: the reconciler under the real runtime samples from the
// start (the resync lists the rack), a fan policy in the log wakes it at
// once, and a stuck fan puts the others at 100%.
func TestInRuntime(t *testing.T) {
	sc := simConfig(2)
	sc.Clock = nil
	rack, err := sim.New(sc)
	must(t, err)
	t.Cleanup(func() { _ = rack.Close() })
	log := newMemWithNodes(t, 2)
	var mu sync.Mutex
	var samples []telemetry.Sample
	fr, err := New(Config{
		Log: log, Backplane: rack.Backplane(), Rack: "rack1", Member: "m1", Policy: testPolicy(),
		Interval: time.Hour, Logger: quiet,
		Publish: func(_ context.Context, s telemetry.Sample) error {
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			return nil
		},
	})
	must(t, err)
	rt, err := reconcilers.New(reconcilers.Config{Log: log, Leadership: reconcilers.NewLeaderSwitch(true), Logger: quiet})
	must(t, err)
	must(t, rt.Register(fr))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runtime: %v", err)
		}
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(samples)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if count() < 1 {
			return errors.New("no sample yet")
		}
		return nil
	})
	must(t, rack.StickFan(1))
	flat := testPolicy()
	flat.Curve = []events.CurvePoint{{Celsius: 0, Duty: 60}, {Celsius: 100, Duty: 60}}
	ev, err := events.New(events.Source("rack1", "test"), events.FanPolicySet, "rack1", &events.FanPolicySetData{Policy: flat})
	must(t, err)
	_, err = log.Append(context.Background(), ev)
	must(t, err)
	// The interval is an hour: only the policy event can have woken it.
	testutil.WaitFor(t, 10*time.Second, func() error {
		for _, f := range rack.Fans() {
			if f.Duty != 100 {
				return fmt.Errorf("fan %d at %v%%", f.Fan, f.Duty)
			}
		}
		st, err := log.State(context.Background())
		if err != nil {
			return err
		}
		if st.Thermal.Alarm(events.AlarmFanFailed, "fan1") == nil {
			return errors.New("no alarm for fan 1")
		}
		return nil
	})
}

// newMemWithNodes is an in-memory log with nodes n1..nN registered in
// slots 1..N and desired on.
func newMemWithNodes(t *testing.T, n int) *eventlog.Mem {
	t.Helper()
	log := eventlog.NewMem(0)
	t.Cleanup(func() { _ = log.Close() })
	for s := 1; s <= n; s++ {
		name := fmt.Sprintf("n%d", s)
		for _, e := range []struct {
			typ events.Type
			p   events.Payload
		}{
			{events.NodeRegistered, &events.NodeRegisteredData{Slot: s}},
			{events.NodePowerDesired, &events.PowerDesiredData{State: events.PowerOn}},
		} {
			ev, err := events.New(events.Source("rack1", "test"), e.typ, name, e.p)
			must(t, err)
			_, err = log.Append(context.Background(), ev)
			must(t, err)
		}
	}
	return log
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
