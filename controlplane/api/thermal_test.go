package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/events"
)

const goodPolicy = `{"mode":"curve","curve":[{"celsius":30,"duty":20},{"celsius":60,"duty":100}],"criticalCelsius":85}`

// TestFanPolicyRoutes: the policy is validated field by field (400 naming
// the field, nothing appended), defaults are filled in, and what is set is
// what GET returns, from the log.
func TestFanPolicyRoutes(t *testing.T) {
	e := newEnv(t)
	if r := e.do(t, "GET", "/v1/fan-policy", ""); r.status != 404 || r.errorBody(t).Code != CodeNotFound {
		t.Fatalf("before any policy: %d %s", r.status, r.body)
	}
	bad := []struct {
		name, body, msg string
	}{
		{"not an object", `[1]`, "invalid body"},
		{"unknown field", `{"mode":"curve","fanCount":3}`, "invalid fanCount"},
		{"wrong type", `{"mode":"curve","criticalCelsius":"hot"}`, "invalid criticalCelsius: must be a JSON number"},
		{"no mode", `{"criticalCelsius":85}`, "invalid mode: is required"},
		{"no critical", `{"mode":"curve","curve":[{"celsius":30,"duty":20},{"celsius":60,"duty":100}]}`, "invalid criticalCelsius: is required"},
		{"duty out of range", `{"mode":"curve","curve":[{"celsius":30,"duty":20},{"celsius":60,"duty":140}],"criticalCelsius":85}`, "invalid curve[1].duty: must be between 0 and 100"},
		{"curve not monotonic", `{"mode":"curve","curve":[{"celsius":30,"duty":60},{"celsius":60,"duty":20}],"criticalCelsius":85}`, "invalid curve[1].duty: must not be below"},
		{"temperatures repeat", `{"mode":"curve","curve":[{"celsius":30,"duty":20},{"celsius":30,"duty":40}],"criticalCelsius":85}`, "invalid curve[1].celsius"},
		{"pid gains all zero", `{"mode":"pid","pid":{"setpoint":40,"minDuty":20,"maxDuty":100},"criticalCelsius":85}`, "invalid pid.kp"},
		{"bad stale-after", `{"mode":"curve","curve":[{"celsius":30,"duty":20},{"celsius":60,"duty":100}],"criticalCelsius":85,"staleAfter":"5 parsecs"}`, "invalid staleAfter"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			before := e.seq(t)
			r := e.do(t, "PUT", "/v1/fan-policy", tc.body)
			if r.status != 400 {
				t.Fatalf("status %d %s, want 400", r.status, r.body)
			}
			if eb := r.errorBody(t); eb.Code != CodeInvalid || !strings.Contains(eb.Message, tc.msg) {
				t.Errorf("error %+v, want %q", eb, tc.msg)
			}
			if e.seq(t) != before {
				t.Error("a refused policy reached the log")
			}
		})
	}

	r := e.do(t, "PUT", "/v1/fan-policy", goodPolicy)
	if r.status != 200 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	var cr CommandResponse
	if err := json.Unmarshal(r.body, &cr); err != nil {
		t.Fatal(err)
	}
	if cr.Event.Type != events.FanPolicySet || cr.Event.Subject != "rack1" || cr.Sequence == 0 {
		t.Fatalf("committed %+v", cr.Event)
	}
	r = e.do(t, "GET", "/v1/fan-policy", "")
	var fp FanPolicyResponse
	if err := json.Unmarshal(r.body, &fp); err != nil || r.status != 200 {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	if fp.Policy.Source != events.SourceMaxNode || fp.Policy.StaleAfter != "10s" || fp.Sequence != cr.Sequence || len(fp.Policy.Curve) != 2 {
		t.Errorf("GET policy %+v", fp)
	}
}

// TestTelemetryRoutes: without telemetry 501, before a sample 503, then
// the sample with its age; /v1/fans joins it with the policy and alarms.
func TestTelemetryRoutes(t *testing.T) {
	if r := newEnv(t).do(t, "GET", "/v1/telemetry", ""); r.status != 501 {
		t.Fatalf("without telemetry: %d %s", r.status, r.body)
	}
	l := telemetry.NewLatest(nil)
	e := newEnv(t, func(c *Config) { c.Telemetry = l })
	if r := e.do(t, "GET", "/v1/telemetry", ""); r.status != 503 || r.errorBody(t).Code != CodeUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("before a sample: %d %s", r.status, r.body)
	}
	l.Put(telemetry.Sample{
		Rack: "rack1", Member: "m2", Time: time.Now().UTC(), IntervalSeconds: 1, Duty: 100, FailSafe: true, FailSafeReason: "fan-failed/fan1",
		Nodes: []telemetry.NodeSample{{Name: "n1", Slot: 1, OK: true, Watts: 3.5, Joules: 42, Celsius: 40}},
		Fans:  []telemetry.FanSample{{Fan: 1, RPM: 0, Duty: 100, Failed: true}},
	})
	ev, _ := events.New(events.Source("rack1", "m2"), events.AlarmRaised, "fan1", &events.AlarmRaisedData{Kind: events.AlarmFanFailed, Reason: "stuck"})
	if _, err := e.log.Append(context.Background(), ev); err != nil {
		t.Fatal(err)
	}

	r := e.do(t, "GET", "/v1/telemetry", "")
	var tr TelemetryResponse
	if err := json.Unmarshal(r.body, &tr); err != nil || r.status != 200 {
		t.Fatalf("telemetry: %d %s", r.status, r.body)
	}
	if !tr.Fresh || tr.Member != "m2" || len(tr.Nodes) != 1 || tr.Nodes[0].Joules != 42 {
		t.Errorf("telemetry %+v", tr)
	}
	r = e.do(t, "GET", "/v1/fans", "")
	var fr FansResponse
	if err := json.Unmarshal(r.body, &fr); err != nil || r.status != 200 {
		t.Fatalf("fans: %d %s", r.status, r.body)
	}
	if !fr.FailSafe || len(fr.Fans) != 1 || !fr.Fans[0].Failed || len(fr.Alarms) != 1 || fr.Alarms[0].Subject != "fan1" || fr.Policy != nil {
		t.Errorf("fans %+v", fr)
	}
}

// FuzzFanPolicyBody: whatever the body, PUT /v1/fan-policy never answers
// 5xx, and a refused policy never reaches the log; an accepted one is
// valid in the state.
func FuzzFanPolicyBody(f *testing.F) {
	for _, s := range []string{goodPolicy,
		`{"mode":"pid","pid":{"setpoint":40,"kp":2,"ki":0.1,"kd":0,"minDuty":20,"maxDuty":100},"criticalCelsius":85,"staleAfter":"3s"}`,
		`{"mode":"curve","curve":[]}`, `{"mode":"curve","curve":[{"celsius":1e309}]}`, `{`, `null`, `{"staleAfter":-1}`,
	} {
		f.Add(s)
	}
	mem := eventlog.NewMem(0)
	defer mem.Close()
	srv, err := New(Config{Rack: "rack1", Member: "m1", Log: mem})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		before, _ := mem.State(context.Background())
		req := httptest.NewRequest(http.MethodPut, "/v1/fan-policy", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: %d %s", body, rec.Code, rec.Body)
		}
		after, _ := mem.State(context.Background())
		if rec.Code >= 400 && after.Sequence != before.Sequence {
			t.Fatalf("refused (%d) but the log moved", rec.Code)
		}
		if rec.Code == 200 {
			if err := after.Thermal.Policy.Validate(); err != nil {
				t.Fatalf("accepted an invalid policy: %v", err)
			}
		}
	})
}
