package devrack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/internal/testutil"
	"github.com/racklet/rack/reconcilers/hardware"
	"github.com/racklet/rack/sim"
)

// Tolerances of TestEnergyMetricsMatchTheModel (see docs/architecture.md):
// a counter may differ from the model by its monitor's calibration gain
// (σ = sim.DefaultPower().EnergyGainError = 0.2%, so 1% is 5σ); a power
// reading by its noise (σ = 0.05 W, so 0.3 W is 6σ) plus, for the rack,
// the fan draw that a duty write since the sample may have changed.
const (
	energyTolerance     = 0.01
	nodeWattsTolerance  = 0.3
	rackWattsTolerance  = 0.5
	temperatureTolerace = 1.0
)

func scrapeMetrics(t *testing.T, url, accept string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// TestEnergyMetricsMatchTheModel runs a rack on a manual clock, lets an
// hour of simulated time pass, and scrapes the member's /metrics over
// real HTTP: every node's and the rack's energy counter and power gauge
// match the simulator's own model (sim.Rack.Unit, RackJoules, RackWatts)
// within the tolerances above, and the exposition is valid OpenMetrics.
func TestEnergyMetricsMatchTheModel(t *testing.T) {
	clk := sim.NewManualClock(time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Start(ctx, Config{
		Dir: t.TempDir(), Seed: 7, Slots: 3, Members: 1, ObserveInterval: 100 * time.Millisecond,
		Timings: fastBoot, Clock: clk, Fans: FansConfig{FansConfig: hardware.FansConfig{Interval: 50 * time.Millisecond}},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("closing the rack: %v", err)
		}
	})
	m := r.Members()[0]

	// An hour passes; then the clock stands still, so the model's figures
	// hold still while samples are taken and scraped. The RMC's watchdog
	// ran the fans at 100% for most of the hour (nobody set a duty in
	// simulated time); the first sample after it reads that draw, then
	// sets the policy's duty: compare from the second one on.
	clk.Advance(time.Hour)
	after := func(at time.Time) time.Time {
		t.Helper()
		var s telemetry.Sample
		testutil.WaitFor(t, 20*time.Second, func() error {
			var ok bool
			s, _, ok = m.Telemetry().Get()
			if !ok || !s.Time.After(at) {
				return fmt.Errorf("no sample after %v yet", at)
			}
			return nil
		})
		return s.Time
	}
	after(after(time.Now()))

	om := scrapeMetrics(t, m.APIURL(), "application/openmetrics-text; version=1.0.0")
	if err := testutil.CheckOpenMetrics(om); err != nil {
		t.Fatalf("/metrics is not valid OpenMetrics: %v", err)
	}
	for _, want := range []string{"# TYPE racklet_node_energy_joules counter", "# TYPE racklet_rack_energy_joules counter"} {
		if !strings.Contains(om, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(scrapeMetrics(t, m.APIURL(), "text/plain; version=0.0.4")))
	if err != nil {
		t.Fatal(err)
	}
	get := func(family string, labels map[string]string) float64 {
		t.Helper()
		v, ok := telemetry.Value(mfs, family, labels)
		if !ok {
			t.Fatalf("/metrics has no %s%v", family, labels)
		}
		return v
	}
	relClose := func(got, want, rel float64) bool { return math.Abs(got-want) <= rel*want+0.5 }

	for slot := 1; slot <= r.Slots(); slot++ {
		node := NodeName(slot)
		u, err := r.Sim.Unit(slot)
		if err != nil {
			t.Fatal(err)
		}
		lbl := map[string]string{"node": node}
		t.Logf("%s: %.1f J scraped, %.1f J modelled (%+.3f%%); %.3f W scraped, %.3f W modelled", node,
			get("racklet_node_energy_joules_total", lbl), u.Joules, 100*(get("racklet_node_energy_joules_total", lbl)/u.Joules-1),
			get("racklet_node_power_watts", lbl), u.Watts)
		if got := get("racklet_node_energy_joules_total", lbl); !relClose(got, u.Joules, energyTolerance) {
			t.Errorf("%s: %v J scraped, the model says %v J", node, got, u.Joules)
		}
		if got := get("racklet_node_power_watts", lbl); math.Abs(got-u.Watts) > nodeWattsTolerance {
			t.Errorf("%s: %v W scraped, the model says %v W", node, got, u.Watts)
		}
		if got := get("racklet_node_temperature_celsius", lbl); math.Abs(got-u.Celsius) > temperatureTolerace {
			t.Errorf("%s: %v °C scraped, the model says %v °C", node, got, u.Celsius)
		}
		if u.Joules < 3000 {
			t.Errorf("%s: the model says only %v J after an hour on", node, u.Joules)
		}
	}
	t.Logf("rack: %.1f J scraped, %.1f J modelled (%+.3f%%); %.3f W scraped, %.3f W modelled",
		get("racklet_rack_energy_joules_total", nil), r.Sim.RackJoules(), 100*(get("racklet_rack_energy_joules_total", nil)/r.Sim.RackJoules()-1),
		get("racklet_rack_power_watts", nil), r.Sim.RackWatts())
	if got, want := get("racklet_rack_energy_joules_total", nil), r.Sim.RackJoules(); !relClose(got, want, energyTolerance) {
		t.Errorf("rack: %v J scraped, the model says %v J", got, want)
	}
	if got, want := get("racklet_rack_power_watts", nil), r.Sim.RackWatts(); math.Abs(got-want) > rackWattsTolerance {
		t.Errorf("rack: %v W scraped, the model says %v W", got, want)
	}
	for i, f := range r.Sim.Fans() {
		lbl := map[string]string{"fan": fmt.Sprint(i + 1)}
		// Samples keep coming (every 50 ms), each with a duty that moves
		// with the temperature readings' noise.
		if got := get("racklet_fan_duty_percent", lbl); math.Abs(got-f.Duty) > 5 || got >= 100 {
			t.Errorf("fan %d: duty %v%% scraped, the simulator drives %v%%", i+1, got, f.Duty)
		}
		if f.Stuck {
			t.Errorf("fan %d stuck", i+1)
		}
	}

	// Every member can answer: the API serves the same sample.
	c, err := client.New(m.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.Telemetry(ctx)
	if err != nil || !tr.Fresh || len(tr.Nodes) != r.Slots() || len(tr.Fans) != 4 {
		t.Fatalf("GET /v1/telemetry: %+v, %v", tr, err)
	}
	if tr.FailSafe {
		t.Errorf("fail-safe on a healthy rack: %s", tr.FailSafeReason)
	}
	fp, err := c.FanPolicy(ctx)
	if err != nil || fp.Policy.CriticalCelsius == 0 {
		t.Errorf("the seeded fan policy: %+v, %v", fp, err)
	}
}
