package state

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/racklet/rack/events"
)

func thermalEvent(t *testing.T, typ events.Type, subject string, p events.Payload) events.Event {
	t.Helper()
	ev, err := events.New(events.Source("rack1", "m1"), typ, subject, p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestThermalProjection(t *testing.T) {
	pol := events.FanPolicy{Mode: events.FanCurve, Curve: []events.CurvePoint{{Celsius: 30, Duty: 20}, {Celsius: 60, Duty: 100}}, CriticalCelsius: 85}
	steps := []struct {
		name   string
		evs    []events.Event
		alarms []string // keys raised after the step
		check  func(t *testing.T, th *Thermal)
	}{
		{"policy set", []events.Event{thermalEvent(t, events.FanPolicySet, "rack1", &events.FanPolicySetData{Policy: pol})}, nil,
			func(t *testing.T, th *Thermal) {
				if th.Policy == nil || th.Policy.CriticalCelsius != 85 || th.PolicySequence != 1 || th.PolicySubject != "rack1" {
					t.Errorf("thermal %+v", th)
				}
			}},
		{"two alarms in one batch", []events.Event{
			thermalEvent(t, events.AlarmRaised, "fan2", &events.AlarmRaisedData{Kind: events.AlarmFanFailed, Reason: "stuck"}),
			thermalEvent(t, events.AlarmRaised, "n3", &events.AlarmRaisedData{Kind: events.AlarmSensorStale, Reason: "frozen"}),
		}, []string{"fan-failed/fan2", "sensor-stale/n3"}, nil},
		{"raised again keeps since", []events.Event{
			thermalEvent(t, events.AlarmRaised, "fan2", &events.AlarmRaisedData{Kind: events.AlarmFanFailed, Reason: "still stuck"}),
		}, []string{"sensor-stale/n3", "fan-failed/fan2"}, func(t *testing.T, th *Thermal) {
			a := th.Alarm(events.AlarmFanFailed, "fan2")
			if a.Reason != "still stuck" || a.Sequence != 4 || a.Since.After(time.Now()) {
				t.Errorf("alarm %+v", a)
			}
		}},
		{"cleared, and clearing what is not raised", []events.Event{
			thermalEvent(t, events.AlarmCleared, "fan2", &events.AlarmClearedData{Kind: events.AlarmFanFailed}),
			thermalEvent(t, events.AlarmCleared, "n9", &events.AlarmClearedData{Kind: events.AlarmCriticalTemperature}),
		}, []string{"sensor-stale/n3"}, nil},
	}
	s := New()
	for _, st := range steps {
		before := s.Clone()
		if _, err := s.Apply(st.evs); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		var keys []string
		for _, a := range s.Thermal.AlarmList() {
			keys = append(keys, AlarmKey(a.Kind, a.Subject))
		}
		if !reflect.DeepEqual(keys, st.alarms) {
			t.Errorf("%s: alarms %v, want %v", st.name, keys, st.alarms)
		}
		if st.check != nil {
			st.check(t, s.Thermal)
		}
		// The clone taken before is untouched (deep copy).
		if before.Thermal != nil && before.Thermal == s.Thermal {
			t.Errorf("%s: Apply changed the thermal state in place", st.name)
		}
	}
	// It survives a JSON round trip (snapshots).
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Thermal.Policy, s.Thermal.Policy) || len(back.Thermal.Alarms) != 1 {
		t.Errorf("after a round trip: %+v", back.Thermal)
	}
}
