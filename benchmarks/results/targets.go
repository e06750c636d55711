package results

import (
	"fmt"
	"strings"
)

// Target is one of the goals: reported, never asserted in tests.
type Target struct {
	Name string
	// The records it reads: the one named Record, or else those whose
	// names have this prefix and suffix and contain Contains; and, if
	// Label is set, that label "true". Over several, the worst counts.
	Record, Prefix, Suffix, Contains, Label string
	Metric                                  string
	// AtMost: the metric must not exceed Limit (in Unit). Otherwise it
	// must be at least Limit, or, with Than set, at least Than's metric.
	AtMost bool
	Limit  float64
	Unit   string
	Than   string
}

// Verdict is a target judged.
type Verdict struct {
	Name     string  `json:"name"`
	Met      bool    `json:"met"`
	Record   string  `json:"record"`
	Value    float64 `json:"value"`
	Limit    float64 `json:"limit"`
	Unit     string  `json:"unit"`
	Measured string  `json:"measured"`
	// By says by how much it is met or missed.
	By string `json:"by"`
}

// Targets are the targets.
var Targets = []Target{
	{
		Name:   "reconcile p99 ≤ 10 ms at 50 nodes, BMC latency 0",
		Record: "BenchmarkReconcileLatency/nodes=50/bus=0s/changes=1", Metric: P99,
		AtMost: true, Limit: 10, Unit: UnitMs,
	},
	{
		Name:   "append throughput (raft-nats, 64 clients) ≥ the etcd backend's",
		Record: "BenchmarkLogAppend/backend=raft-nats/clients=64", Metric: Rate,
		Than: "BenchmarkLogAppend/backend=etcd/clients=64",
	},
	{
		Name:   "failover to the first commit p99 ≤ 1 s (default Raft timeouts)",
		Prefix: "BenchmarkFailover/", Suffix: "/commit", Label: "default", Metric: P99,
		AtMost: true, Limit: 1000, Unit: UnitMs,
	},
	{
		Name:   "rackd resident memory ≤ 64 MiB, 5-node rack, idle (VmRSS of any member)",
		Prefix: "BenchmarkRackdResources/", Contains: "/idle/", Metric: "rss",
		AtMost: true, Limit: 64, Unit: UnitMiB,
	},
	{
		Name:   "rackd resident memory ≤ 64 MiB, 5-node rack, at 1 000 events/s (peak VmHWM of any member)",
		Prefix: "BenchmarkRackdResources/", Contains: "/load/", Metric: "hwm",
		AtMost: true, Limit: 64, Unit: UnitMiB,
	},
}

func (t Target) matches(r *Record) bool {
	if t.Record != "" && r.Name != t.Record {
		return false
	}
	return strings.HasPrefix(r.Name, t.Prefix) && strings.HasSuffix(r.Name, t.Suffix) &&
		strings.Contains(r.Name, t.Contains) && (t.Label == "" || r.Labels[t.Label] == "true")
}

// Judge finds the target's records among recs and judges the worst of
// them; false if none (or Than's) is there.
func (t Target) Judge(recs []Record) (Verdict, bool) {
	v := Verdict{Name: t.Name, Limit: t.Limit, Unit: t.Unit}
	found := false
	for i := range recs {
		r := &recs[i]
		if !t.matches(r) {
			continue
		}
		m, ok := r.Metric(t.Metric)
		if !ok || (t.Unit != "" && m.Unit != t.Unit) {
			continue
		}
		worse := m.Value < v.Value
		if t.AtMost {
			worse = m.Value > v.Value
		}
		if !found || worse {
			v.Record, v.Value, v.Unit, found = r.Name, m.Value, m.Unit, true
		}
	}
	if !found {
		return Verdict{}, false
	}
	if t.Than != "" {
		var other *Record
		for i := range recs {
			if recs[i].Name == t.Than {
				other = &recs[i]
			}
		}
		if other == nil {
			return Verdict{}, false
		}
		m, ok := other.Metric(t.Metric)
		if !ok || m.Unit != v.Unit || m.Value <= 0 {
			return Verdict{}, false
		}
		v.Limit = m.Value
		v.Met = v.Value >= v.Limit
		v.Measured = fmt.Sprintf("%s %s against %s %s", formatValue(v.Value), v.Unit, formatValue(v.Limit), v.Unit)
		v.By = fmt.Sprintf("%s× %s", formatValue(v.Value/v.Limit), strings.TrimPrefix(t.Than, "Benchmark"))
		return v, true
	}
	v.Measured = fmt.Sprintf("%s %s %s", t.Metric, formatValue(v.Value), v.Unit)
	// margin > 0: how far inside the limit; < 0: how far outside.
	margin := v.Limit - v.Value
	if !t.AtMost {
		margin = -margin
	}
	v.Met = margin >= 0
	pct := ""
	if v.Limit != 0 {
		pct = fmt.Sprintf(" (%s %%)", formatValue(100*abs(margin)/v.Limit))
	}
	side := map[bool]string{true: "under", false: "over"}[t.AtMost == v.Met]
	word := "met,"
	if !v.Met {
		word = "missed by"
	}
	v.By = fmt.Sprintf("%s %s %s%s %s the limit of %s %s", word, formatValue(abs(margin)), v.Unit, pct, side, formatValue(v.Limit), v.Unit)
	return v, true
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
