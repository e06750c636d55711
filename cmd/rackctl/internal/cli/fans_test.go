package cli

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/events"
)

// newThermalRack is an API with telemetry holding one sample: two nodes
// (n2 not answering), two fans (fan 2 failed), fail-safe.
func newThermalRack(t *testing.T) *rack {
	t.Helper()
	mem := eventlog.NewMem(0)
	t.Cleanup(func() { _ = mem.Close() })
	l := telemetry.NewLatest(nil)
	l.Put(telemetry.Sample{
		Rack: "rack1", Member: "m1", Time: time.Now().UTC(), IntervalSeconds: 1,
		Totals: telemetry.RackTotals{OK: true, Watts: 12.25, Joules: 7200, InletCelsius: 24.5},
		Nodes: []telemetry.NodeSample{
			{Name: "n2", Slot: 2, Error: "sensors.read slot 2: drivers: unreachable"},
			{Name: "n1", Slot: 1, OK: true, Watts: 3.5, Joules: 3600, Celsius: 41.25},
		},
		Fans: []telemetry.FanSample{{Fan: 1, RPM: 6012, Duty: 100}, {Fan: 2, Duty: 100, Failed: true}},
		Duty: 100, FailSafe: true, FailSafeReason: "fan-failed/fan2",
	})
	srv, err := api.New(api.Config{Rack: "rack1", Member: "m1", Log: mem, Cluster: fakeCluster{}, Telemetry: l})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	r := &rack{url: ts.URL, log: mem}
	r.append(t, events.AlarmRaised, "fan2", &events.AlarmRaisedData{Kind: events.AlarmFanFailed, Reason: "fan 2 turns at 0 RPM while driven at 100%"})
	return r
}

func TestTop(t *testing.T) {
	r := newThermalRack(t)
	out, errOut, code := r.run(t, "top")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Rack rack1, sampled by m1",
		"NODE   SLOT   POWER(W)   ENERGY(Wh)   TEMP(°C)   STATUS",
		"n1     1      3.50       1.000        41.2       ok",
		"n2     2      -          -            -          no answer: sensors.read slot 2",
		"RACK   -      12.25      2.000        24.5 (inlet)",
		"Fans at 100%: 1: 6012 rpm, 2: 0 rpm FAILED",
		"FAIL-SAFE: fans at 100% (fan-failed/fan2)",
	} {
		if !strings.Contains(squash(out), squash(want)) {
			t.Errorf("top lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "n1 ") > strings.Index(out, "n2 ") {
		t.Errorf("nodes not in slot order:\n%s", out)
	}
	if out, _, code := r.run(t, "top", "-o", "json"); code != 0 || !strings.Contains(out, `"joules": 3600`) {
		t.Errorf("top -o json: exit %d\n%s", code, out)
	}
	if _, errOut, code := r.run(t, "top", "--watch", "--interval", "0s"); code != 2 || !strings.Contains(errOut, "--interval") {
		t.Errorf("--watch --interval 0s: exit %d, %s", code, errOut)
	}
}

func TestGetFans(t *testing.T) {
	r := newThermalRack(t)
	out, errOut, code := r.run(t, "get", "fans")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"FAN   RPM    DUTY   STATUS", "1     6012   100%   ok", "2     0      100%   FAILED",
		"Fail-safe: fans at 100% (fan-failed/fan2)", "Policy: none set",
		"fan-failed   fan2", "fan 2 turns at 0 RPM",
	} {
		if !strings.Contains(squash(out), squash(want)) {
			t.Errorf("get fans lacks %q:\n%s", want, out)
		}
	}
}

func TestFanPolicyCommands(t *testing.T) {
	r := newThermalRack(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, errOut, code := r.run(t, "fan-policy", "get"); code != 1 || !strings.Contains(errOut, "no fan policy has been set") {
		t.Fatalf("get before set: exit %d, %s", code, errOut)
	}
	if _, errOut, code := r.run(t, "fan-policy", "set"); code != 2 || !strings.Contains(errOut, "-f FILE") {
		t.Errorf("set without -f: exit %d, %s", code, errOut)
	}
	before := len(r.events(t))
	bad := write("bad.yaml", "mode: curve\ncurve: [{celsius: 30, duty: 50}, {celsius: 60, duty: 20}]\ncriticalCelsius: 85\n")
	if _, errOut, code := r.run(t, "fan-policy", "set", "-f", bad); code != 1 || !strings.Contains(errOut, "curve[1].duty") {
		t.Errorf("set a decreasing curve: exit %d, %s", code, errOut)
	}
	if got := len(r.events(t)); got != before {
		t.Errorf("a refused policy reached the log (%d events, was %d)", got, before)
	}

	good := write("good.yaml", "mode: curve\ncurve:\n  - {celsius: 30, duty: 20}\n  - {celsius: 60, duty: 100}\ncriticalCelsius: 82\nstaleAfter: 5s\n")
	out, errOut, code := r.run(t, "fan-policy", "set", "-f", good)
	if code != 0 || !strings.Contains(out, "fan policy set: curve on max-node, critical 82 °C (sequence") {
		t.Fatalf("set: exit %d, %q, %s", code, out, errOut)
	}
	out, _, code = r.run(t, "fan-policy", "get", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "criticalCelsius: 82") || !strings.Contains(out, "staleAfter: 5s") {
		t.Fatalf("get -o yaml: exit %d\n%s", code, out)
	}
	// What get prints, set takes back.
	again := write("again.yaml", out)
	if _, errOut, code := r.run(t, "fan-policy", "set", "-f", again); code != 0 {
		t.Errorf("set what get printed: exit %d, %s", code, errOut)
	}
	if out, _, _ := r.run(t, "get", "fans"); !strings.Contains(out, "Policy: curve on max-node, critical 82 °C, stale after 5s") {
		t.Errorf("get fans after set:\n%s", out)
	}
}

// squash collapses runs of blanks in every line, so table checks do not
// depend on column widths.
func squash(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

func (r *rack) events(t *testing.T) []events.Event {
	t.Helper()
	evs, err := r.log.Read(t.Context(), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
