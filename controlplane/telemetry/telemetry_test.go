package telemetry

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/racklet/rack/internal/testutil"
)

var t0 = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

func sample(member string, at time.Time) Sample {
	return Sample{
		Rack: "rack1", Member: member, Time: at, IntervalSeconds: 1,
		Totals: RackTotals{OK: true, Watts: 20.5, Joules: 1234.5, InletCelsius: 25.1},
		Nodes: []NodeSample{
			{Name: "n1", Slot: 1, OK: true, Watts: 3.5, Joules: 100, Celsius: 41.2},
			{Name: "n2", Slot: 2, Error: "sensors.read slot 2: drivers: unreachable"},
		},
		Fans: []FanSample{{Fan: 1, RPM: 3000, Duty: 50}, {Fan: 2, RPM: 0, Duty: 50, Failed: true}},
		Duty: 100, FailSafe: true, FailSafeReason: "fan-failed/fan2",
	}
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestLatestOrdering(t *testing.T) {
	c := &clock{now: t0}
	l := NewLatest(c.Now)
	if _, _, ok := l.Get(); ok {
		t.Fatal("an empty Latest has a sample")
	}
	steps := []struct {
		name string
		s    Sample
		kept bool
	}{
		{"first", sample("m1", t0), true},
		{"newer, same sampler", sample("m1", t0.Add(time.Second)), true},
		{"older, same sampler (late delivery)", sample("m1", t0), false},
		{"another sampler, whatever its clock (a new leader)", sample("m2", t0.Add(-time.Hour)), true},
	}
	for _, st := range steps {
		if got := l.Put(st.s); got != st.kept {
			t.Errorf("%s: kept %v, want %v", st.name, got, st.kept)
		}
	}
	c.now = t0.Add(3 * time.Second)
	s, age, ok := l.Get()
	if !ok || s.Member != "m2" || age != 3*time.Second {
		t.Errorf("Get: %s, age %v, %v", s.Member, age, ok)
	}
}

func TestDecode(t *testing.T) {
	good, err := Encode(sample("m1", t0))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := Decode(good); err != nil || s.Nodes[0].Celsius != 41.2 {
		t.Fatalf("Decode: %+v, %v", s, err)
	}
	for name, b := range map[string]string{
		"not json":      "{",
		"unknown field": `{"rack":"rack1","member":"m1","time":"2026-01-01T00:00:00Z","extra":1}`,
		"bad rack":      `{"rack":"Rack!","member":"m1","time":"2026-01-01T00:00:00Z"}`,
		"no time":       `{"rack":"rack1","member":"m1"}`,
		"fan numbering": `{"rack":"rack1","member":"m1","time":"2026-01-01T00:00:00Z","fans":[{"fan":2}]}`,
		"repeated node": `{"rack":"rack1","member":"m1","time":"2026-01-01T00:00:00Z","nodes":[{"name":"n1"},{"name":"n1"}]}`,
		"duty over 100": `{"rack":"rack1","member":"m1","time":"2026-01-01T00:00:00Z","duty":101}`,
		"trailing data": `{"rack":"rack1","member":"m1","time":"2026-01-01T00:00:00Z"} {}`,
	} {
		if _, err := Decode([]byte(b)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want %v", name, err, ErrInvalid)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample("m1", t0))
	f.Add(good)
	f.Add([]byte(`{"rack":"rack1","member":"m1","time":"2026-01-01T00:00:00Z","nodes":[{"name":"n1","watts":1e308}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		again, err := Encode(s)
		if err != nil {
			t.Fatalf("a decoded sample does not encode: %v", err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("a decoded sample does not decode again: %v", err)
		}
	})
}

func scrape(t *testing.T, reg *prometheus.Registry, accept string) string {
	t.Helper()
	ts := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	defer ts.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL, nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCollector: the sample's figures as metrics, OpenMetrics-valid, with
// the energy as counters; a node that did not answer has no series; a
// stale sample exports only its timestamp.
func TestCollector(t *testing.T) {
	c := &clock{now: t0}
	l := NewLatest(c.Now)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(l))
	if body := scrape(t, reg, "text/plain"); strings.Contains(body, "racklet_") {
		t.Fatalf("metrics before any sample:\n%s", body)
	}
	l.Put(sample("m1", t0))

	om := scrape(t, reg, "application/openmetrics-text; version=1.0.0")
	if err := testutil.CheckOpenMetrics(om); err != nil {
		t.Fatalf("%v\n%s", err, om)
	}
	for _, want := range []string{
		"# TYPE racklet_node_energy_joules counter",
		`racklet_node_energy_joules_total{node="n1"} 100`,
		"# TYPE racklet_rack_energy_joules counter",
		"racklet_rack_energy_joules_total 1234.5",
		`racklet_fan_rpm{fan="2"} 0`,
		"racklet_fans_failsafe 1",
	} {
		if !strings.Contains(om, want) {
			t.Errorf("OpenMetrics lacks %q:\n%s", want, om)
		}
	}

	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(scrape(t, reg, "text/plain")))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"racklet_node_power_watts", map[string]string{"node": "n1"}, 3.5},
		{"racklet_node_temperature_celsius", map[string]string{"node": "n1"}, 41.2},
		{"racklet_rack_power_watts", nil, 20.5},
		{"racklet_rack_inlet_celsius", nil, 25.1},
		{"racklet_fan_duty_percent", map[string]string{"fan": "1"}, 50},
		{"racklet_telemetry_sample_timestamp_seconds", nil, float64(t0.Unix())},
	}
	for _, tc := range tests {
		if got, ok := Value(mfs, tc.family, tc.labels); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.family, tc.labels, got, ok, tc.want)
		}
	}
	if _, ok := Value(mfs, "racklet_node_power_watts", map[string]string{"node": "n2"}); ok {
		t.Error("n2 did not answer, but has a power series")
	}

	c.now = t0.Add(MinFreshFor + time.Second)
	body := scrape(t, reg, "text/plain")
	if strings.Contains(body, "racklet_node_power_watts") || !strings.Contains(body, "racklet_telemetry_sample_timestamp_seconds") {
		t.Errorf("stale sample exported:\n%s", body)
	}
}
