package events

import (
	"errors"
	"strings"
	"testing"
)

func TestThermalPayloads(t *testing.T) {
	src := Source("rack1", "m1")
	pol := FanPolicy{Mode: FanCurve, Curve: []CurvePoint{{30, 20}, {60, 100}}, CriticalCelsius: 85}
	tests := []struct {
		name    string
		typ     Type
		subject string
		p       Payload
		field   string // "" if valid
	}{
		{"policy", FanPolicySet, "rack1", &FanPolicySetData{Policy: pol}, ""},
		{"policy without mode", FanPolicySet, "rack1", &FanPolicySetData{Policy: FanPolicy{CriticalCelsius: 85}}, "data.policy.mode"},
		{"policy curve point", FanPolicySet, "rack1", &FanPolicySetData{Policy: FanPolicy{Mode: FanCurve, CriticalCelsius: 85, Curve: []CurvePoint{{30, 20}, {20, 30}}}}, "data.policy.curve[1].celsius"},
		{"raised", AlarmRaised, "fan2", &AlarmRaisedData{Kind: AlarmFanFailed, Reason: "fan 2 turns at 0 RPM", Limit: 100}, ""},
		{"raised without reason", AlarmRaised, "n3", &AlarmRaisedData{Kind: AlarmSensorStale}, "data.reason"},
		{"raised unknown kind", AlarmRaised, "n3", &AlarmRaisedData{Kind: "smoke", Reason: "x"}, "data.kind"},
		{"cleared", AlarmCleared, "n3", &AlarmClearedData{Kind: AlarmCriticalTemperature}, ""},
		{"cleared without kind", AlarmCleared, "n3", &AlarmClearedData{}, "data.kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := New(src, tc.typ, tc.subject, tc.p)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				b, err := Encode(ev)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := Decode(b); err != nil {
					t.Fatalf("decoding what was encoded: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
}

func TestFanPolicyDefaults(t *testing.T) {
	p := FanPolicy{Mode: FanCurve, StaleAfter: "90s"}.WithDefaults()
	if p.Source != SourceMaxNode || p.StaleAfter != "1m30s" || p.StaleAfterDuration().Seconds() != 90 {
		t.Errorf("WithDefaults: %+v", p)
	}
	if d := (FanPolicy{}).StaleAfterDuration(); d != DefaultStaleAfter {
		t.Errorf("empty stale-after: %v", d)
	}
	err := FanPolicy{Mode: FanPID, CriticalCelsius: 85}.Validate()
	if err == nil || !strings.Contains(err.Error(), "pid") {
		t.Errorf("pid without settings: %v", err)
	}
}

// thermalSeeds are encoded fan policy and alarm events, seeds of FuzzDecode.
func thermalSeeds(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, c := range []struct {
		t       Type
		subject string
		p       Payload
	}{
		{FanPolicySet, "rack1", &FanPolicySetData{Policy: FanPolicy{Mode: FanCurve, Curve: []CurvePoint{{30, 20}, {60, 100}}, CriticalCelsius: 85, StaleAfter: "10s"}}},
		{FanPolicySet, "rack1", &FanPolicySetData{Policy: FanPolicy{Mode: FanPID, Source: SourceInlet, PID: &PIDSettings{Setpoint: 30, Kp: 2, Ki: 0.5, MinDuty: 20, MaxDuty: 100}, CriticalCelsius: 85}}},
		{AlarmRaised, "n3", &AlarmRaisedData{Kind: AlarmCriticalTemperature, Reason: "critical temperature 91.2 °C > 90 °C: shutting n3 down", Value: 91.2, Limit: 90}},
		{AlarmCleared, "fan2", &AlarmClearedData{Kind: AlarmFanFailed, Reason: "condition ended"}},
	} {
		ev, err := New(Source("rack1", "m1"), c.t, c.subject, c.p)
		if err != nil {
			f.Fatal(err)
		}
		b, err := Encode(ev)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
