package fans

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/racklet/rack/events"
)

func TestParsePolicy(t *testing.T) {
	good := []struct {
		name string
		doc  string
		want events.FanPolicy
	}{
		{"yaml curve, defaults filled", `
mode: curve
curve:
  - {celsius: 35, duty: 20}
  - {celsius: 70, duty: 100}
criticalCelsius: 85
`, events.FanPolicy{Mode: events.FanCurve, Source: events.SourceMaxNode, CriticalCelsius: 85, StaleAfter: "10s",
			Curve: []events.CurvePoint{{Celsius: 35, Duty: 20}, {Celsius: 70, Duty: 100}}}},
		{"json pid on the inlet", `{"mode":"pid","source":"inlet","pid":{"setpoint":30,"kp":4,"ki":0.5,"kd":0,"minDuty":20,"maxDuty":100},"criticalCelsius":90,"staleAfter":"1m30s"}`,
			events.FanPolicy{Mode: events.FanPID, Source: events.SourceInlet, CriticalCelsius: 90, StaleAfter: "1m30s",
				PID: &events.PIDSettings{Setpoint: 30, Kp: 4, Ki: 0.5, MinDuty: 20, MaxDuty: 100}}},
		{"stale-after made canonical", "mode: curve\ncurve: [{celsius: 30, duty: 0}, {celsius: 60, duty: 0}]\ncriticalCelsius: 80\nstaleAfter: 2000ms\n",
			events.FanPolicy{Mode: events.FanCurve, Source: events.SourceMaxNode, CriticalCelsius: 80, StaleAfter: "2s",
				Curve: []events.CurvePoint{{Celsius: 30}, {Celsius: 60}}}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePolicy([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	curve := "mode: curve\ncriticalCelsius: 85\ncurve:\n"
	bad := []struct {
		name, doc, field string
	}{
		{"empty", "", "empty"},
		{"not a mapping", "- 1\n- 2\n", "mapping"},
		{"two documents", "mode: curve\n---\nmode: pid\n", "more than one document"},
		{"unknown field", "mode: curve\nfan: 3\n", "fan is not a known field"},
		{"wrong type", "mode: curve\ncriticalCelsius: hot\n", "criticalCelsius must be a number"},
		{"no mode", "criticalCelsius: 85\n", "mode"},
		{"bad mode", "mode: bang-bang\ncriticalCelsius: 85\n", "mode"},
		{"no critical", "mode: curve\ncurve: [{celsius: 30, duty: 20}, {celsius: 60, duty: 100}]\n", "criticalCelsius: is required"},
		{"critical too low", "mode: curve\ncriticalCelsius: 20\n", "criticalCelsius"},
		{"one point", curve + "  - {celsius: 30, duty: 20}\n", "curve: must have 2"},
		{"temperatures not increasing", curve + "  - {celsius: 30, duty: 20}\n  - {celsius: 30, duty: 50}\n", "curve[1].celsius"},
		{"duty decreasing", curve + "  - {celsius: 30, duty: 50}\n  - {celsius: 40, duty: 20}\n", "curve[1].duty"},
		{"duty over 100", curve + "  - {celsius: 30, duty: 50}\n  - {celsius: 40, duty: 120}\n", "curve[1].duty"},
		{"negative duty", curve + "  - {celsius: 30, duty: -5}\n  - {celsius: 40, duty: 20}\n", "curve[0].duty"},
		{"critical below the curve", "mode: curve\ncriticalCelsius: 50\ncurve: [{celsius: 60, duty: 20}, {celsius: 70, duty: 100}]\n", "criticalCelsius: must be above"},
		{"curve with pid", curve + "  - {celsius: 30, duty: 20}\n  - {celsius: 40, duty: 50}\npid: {setpoint: 40, kp: 1, minDuty: 0, maxDuty: 100}\n", "pid"},
		{"pid without settings", "mode: pid\ncriticalCelsius: 85\n", "pid: is required"},
		{"pid all gains zero", "mode: pid\ncriticalCelsius: 85\npid: {setpoint: 40, minDuty: 0, maxDuty: 100}\n", "pid.kp"},
		{"pid min above max", "mode: pid\ncriticalCelsius: 85\npid: {setpoint: 40, kp: 1, minDuty: 60, maxDuty: 50}\n", "pid.maxDuty"},
		{"pid negative gain", "mode: pid\ncriticalCelsius: 85\npid: {setpoint: 40, kp: -1, minDuty: 0, maxDuty: 100}\n", "pid.kp"},
		{"setpoint above critical", "mode: pid\ncriticalCelsius: 85\npid: {setpoint: 90, kp: 1, minDuty: 0, maxDuty: 100}\n", "criticalCelsius: must be above the setpoint"},
		{"bad source", "mode: curve\nsource: exhaust\ncriticalCelsius: 85\n", "source"},
		{"bad stale-after", curve + "  - {celsius: 30, duty: 20}\n  - {celsius: 40, duty: 50}\nstaleAfter: soon\n", "staleAfter"},
		{"stale-after too short", curve + "  - {celsius: 30, duty: 20}\n  - {celsius: 40, duty: 50}\nstaleAfter: 1ms\n", "staleAfter"},
		{"nan", curve + "  - {celsius: .nan, duty: 20}\n  - {celsius: 40, duty: 50}\n", "NaN"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.doc))
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("err = %v, want %v", err, ErrPolicy)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not say %q", err, tc.field)
			}
		})
	}
}

func TestDefaultPolicyIsValid(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzParsePolicy: any document is either refused with ErrPolicy or gives a
// valid policy that survives a JSON round trip unchanged.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"mode: curve\ncurve: [{celsius: 30, duty: 20}, {celsius: 60, duty: 100}]\ncriticalCelsius: 80\n",
		`{"mode":"pid","pid":{"setpoint":40,"kp":1,"ki":0,"kd":0,"minDuty":0,"maxDuty":100},"criticalCelsius":80,"staleAfter":"5s"}`,
		"mode: curve\n---\n", "&a [*a]", "mode: [1, 2]", "{", "criticalCelsius: 1e400", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("error %v is not ErrPolicy", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed policy is invalid: %v", err)
		}
		j, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParsePolicy(j)
		if err != nil {
			t.Fatalf("round trip of %s: %v", j, err)
		}
		if !reflect.DeepEqual(p, again) {
			t.Fatalf("round trip changed %+v into %+v", p, again)
		}
	})
}
