package results

import (
	"bytes"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLatency(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := Latency(ds)
	want := []Metric{{P50, 50, UnitMs}, {P90, 90, UnitMs}, {P99, 99, UnitMs}, {Max, 100, UnitMs}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("metric %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Latency sorted its argument in place")
	}
	if Latency(nil) != nil {
		t.Error("Latency of nothing is not nothing")
	}
}

func TestRecordValidate(t *testing.T) {
	ok := Record{Name: "BenchmarkX", Samples: 1, Metrics: []Metric{{P50, 1, UnitMs}}}
	for _, tc := range []struct {
		name   string
		change func(*Record)
		want   string // "" valid, else part of the error
	}{
		{"valid", func(*Record) {}, ""},
		{"no name", func(r *Record) { r.Name = "" }, "record name"},
		{"long name", func(r *Record) { r.Name = strings.Repeat("x", maxNameLen+1) }, "record name"},
		{"negative samples", func(r *Record) { r.Samples = -1 }, "negative samples"},
		{"metric without unit", func(r *Record) { r.Metrics = []Metric{{Name: P50, Value: 1}} }, "needs a name and a unit"},
		{"NaN", func(r *Record) { r.Metrics = []Metric{{P50, math.NaN(), UnitMs}} }, "is NaN"},
		{"twice", func(r *Record) { r.Metrics = append(r.Metrics, r.Metrics[0]) }, "twice"},
		{"empty label", func(r *Record) { r.Labels = map[string]string{"": "x"} }, "invalid label"},
		{"negative load", func(r *Record) { r.Load1 = -1 }, "load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			r.Metrics = append([]Metric(nil), ok.Metrics...)
			tc.change(&r)
			err := r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestWriterLoadMerge(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, r := range []Record{
		{Name: "BenchmarkA", Samples: 1, Metrics: []Metric{{P50, 9, UnitMs}}, Time: t0},
		{Name: "BenchmarkB", Samples: 5, Metrics: []Metric{{P50, 2, UnitMs}}, Time: t0},
		{Name: "BenchmarkA", Samples: 1000, Metrics: []Metric{{P50, 1, UnitMs}}, Time: t0.Add(time.Second)},
		{Name: "BenchmarkB", Samples: 5, Metrics: []Metric{{P50, 3, UnitMs}}, Time: t0.Add(time.Second)},
	} {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write(Record{Name: ""}); err == nil {
		t.Fatal("an invalid record was written")
	}
	recs, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("loaded %d records, want 4", len(recs))
	}
	m := Merge(recs)
	if len(m) != 2 || m[0].Name != "BenchmarkA" || m[1].Name != "BenchmarkB" {
		t.Fatalf("merged %+v", m)
	}
	if p, _ := m[0].Metric(P50); m[0].Samples != 1000 || p.Value != 1 {
		t.Errorf("A: kept %+v, want the record over 1000 samples", m[0])
	}
	if p, _ := m[1].Metric(P50); p.Value != 3 {
		t.Errorf("B: kept %+v, want the later of two equal records", m[1])
	}
	if m[0].Time.IsZero() {
		t.Error("records are not stamped")
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not json", "nope\n"},
		{"unknown field", `{"name":"B","samples":1,"metrics":[],"extra":1}`},
		{"two objects", `{"name":"B","samples":1,"metrics":[]} {"name":"C","samples":1,"metrics":[]}`},
		{"invalid", `{"name":"","samples":1,"metrics":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(strings.NewReader(tc.in)); !errors.Is(err, ErrBadRecord) {
				t.Fatalf("Parse(%q) = %v, want ErrBadRecord", tc.in, err)
			}
		})
	}
	recs, err := Parse(strings.NewReader("\n" + `{"name":"B","samples":1,"metrics":[]}` + "\n\n"))
	if err != nil || len(recs) != 1 {
		t.Fatalf("Parse with blank lines = %v, %v", recs, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"name":"BenchmarkA","samples":3,"metrics":[{"name":"p50","value":1.5,"unit":"ms"}],"labels":{"default":"true"},"notes":["x"],"time":"2026-01-01T00:00:00Z","load1":0.5}`))
	f.Add([]byte("\n\n{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, r := range recs {
			if verr := r.Validate(); verr != nil {
				t.Fatalf("Parse returned an invalid record: %v", verr)
			}
		}
	})
}

func rec(name string, samples int, labels map[string]string, ms ...Metric) Record {
	return Record{Name: name, Samples: samples, Metrics: ms, Labels: labels}
}

func TestBuildAndTargets(t *testing.T) {
	def := map[string]string{"default": "true"}
	recs := []Record{
		rec(FloorFsync, 2000, nil, Metric{P50, 0.1, UnitMs}),
		rec(FloorRTT, 2000, nil, Metric{P50, 0.025, UnitMs}),
		rec("BenchmarkReconcileLatency/nodes=50/bus=0s/changes=1", 1000, nil, Metric{P50, 2.5, UnitMs}, Metric{P99, 6, UnitMs}),
		rec("BenchmarkReconcileLatency/nodes=50/bus=0s/changes=10", 1000, nil, Metric{P50, 25, UnitMs}, Metric{P99, 60, UnitMs}),
		rec("BenchmarkReconcileLatency/nodes=500/bus=0s/changes=1", 1000, nil, Metric{P50, 25, UnitMs}, Metric{P99, 60, UnitMs}),
		rec("BenchmarkLogAppend/backend=raft-nats/clients=64", 2000, nil, Metric{Rate, 4000, "events/s"}),
		rec("BenchmarkLogAppend/backend=etcd/clients=64", 2000, nil, Metric{Rate, 1000, "events/s"}),
		rec("BenchmarkFailover/heartbeat=1s/commit", 20, nil, Metric{P99, 3000, UnitMs}),
		rec("BenchmarkFailover/heartbeat=250ms/commit", 20, def, Metric{P99, 1250, UnitMs}),
		rec("BenchmarkFailover/heartbeat=250ms/act", 20, def, Metric{P99, 5000, UnitMs}),
		rec("BenchmarkRackdResources/tls=off/idle/m1", 1, nil, Metric{"rss", 40, UnitMiB}, Metric{"hwm", 70, UnitMiB}),
		rec("BenchmarkRackdResources/tls=off/load/m2", 1, nil, Metric{"rss", 60, UnitMiB}, Metric{"hwm", 48, UnitMiB}, Metric{"cpu", 12, UnitPct}),
	}
	rep := Build(recs, Machine{CPU: "test", Cores: 2}, time.Unix(0, 0))
	if rep.Floor.FsyncP50Ms != 0.1 || rep.Floor.RTTP50Ms != 0.025 {
		t.Fatalf("floor %+v", rep.Floor)
	}
	for _, r := range rep.Results {
		if r.Name == "BenchmarkReconcileLatency/nodes=50/bus=0s/changes=1" && math.Abs(r.P50PerFsync-25) > 1e-9 {
			t.Errorf("p50/fsync = %v, want 25", r.P50PerFsync)
		}
	}
	want := map[string]struct {
		met    bool
		record string
		value  float64
	}{
		Targets[0].Name: {true, "BenchmarkReconcileLatency/nodes=50/bus=0s/changes=1", 6},
		Targets[1].Name: {true, "BenchmarkLogAppend/backend=raft-nats/clients=64", 4000},
		Targets[2].Name: {false, "BenchmarkFailover/heartbeat=250ms/commit", 1250},
		Targets[3].Name: {true, "BenchmarkRackdResources/tls=off/idle/m1", 40},
		Targets[4].Name: {true, "BenchmarkRackdResources/tls=off/load/m2", 48},
	}
	if len(rep.Targets) != len(want) || len(rep.Missing) != 0 {
		t.Fatalf("targets %+v, missing %v", rep.Targets, rep.Missing)
	}
	for _, v := range rep.Targets {
		w := want[v.Name]
		if v.Met != w.met || v.Record != w.record || v.Value != w.value {
			t.Errorf("%s: got met=%v %s %v, want met=%v %s %v", v.Name, v.Met, v.Record, v.Value, w.met, w.record, w.value)
		}
	}
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"ReconcileLatency/nodes=50/bus=0s/changes=1", "4000 events/s", "hwm 48.0 MiB",
		"missed by 250 ms (25.0 %) over the limit of 1000 ms", "4.00× LogAppend/backend=etcd/clients=64",
		"met, 4.00 ms (40.0 %) under the limit of 10.0 ms", "machine: test, 2 cores",
	} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("the table lacks %q:\n%s", s, buf.String())
		}
	}

	// Without the failover and etcd records, those targets are missing.
	rep = Build(recs[:6], Machine{}, time.Unix(0, 0))
	if len(rep.Targets) != 1 || len(rep.Missing) != 4 {
		t.Errorf("targets %+v, missing %v: want 1 judged and 4 missing", rep.Targets, rep.Missing)
	}
}

func TestMachineParsing(t *testing.T) {
	for _, tc := range []struct{ name, cpuinfo, want string }{
		{"x86", "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n", "AMD EPYC 7B13"},
		{"pi", "processor\t: 0\nBogoMIPS\t: 108.00\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n", "Raspberry Pi 4 Model B Rev 1.4"},
		{"none", "processor\t: 0\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cpuModel(tc.cpuinfo); got != tc.want {
				t.Errorf("cpuModel = %q, want %q", got, tc.want)
			}
		})
	}
	status := "Name:\trackd\nVmHWM:\t   49152 kB\nVmRSS:\t   40960 kB\n"
	if v, ok := ProcStatusMiB(status, "VmRSS"); !ok || v != 40 {
		t.Errorf("VmRSS = %v, %v; want 40 MiB", v, ok)
	}
	if _, ok := ProcStatusMiB(status, "VmSwap"); ok {
		t.Error("found a field that is not there")
	}
	m := ReadMachine()
	if m.Cores < 1 || m.Go == "" {
		t.Errorf("ReadMachine = %+v", m)
	}
	if _, err := os.Stat("/proc/cpuinfo"); err == nil && m.CPU == "" {
		t.Logf("no CPU model found in /proc/cpuinfo") // some virtual CPUs have none
	}
}
