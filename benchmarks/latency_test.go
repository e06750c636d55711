package benchmarks

import (
	"slices"
	"testing"
	"time"
)

// latencies records one duration per operation; safe for concurrent use
// when each goroutine writes only its own indexes.
type latencies []time.Duration

// percentile returns the p-th percentile (0 < p ≤ 100) by nearest rank.
func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// reportLatency reports the p50 and p99 of l in µs.
func reportLatency(b *testing.B, l latencies) {
	b.Helper()
	b.ReportMetric(micros(l.percentile(50)), "p50-µs")
	b.ReportMetric(micros(l.percentile(99)), "p99-µs")
	b.ReportMetric(micros(l.percentile(100)), "max-µs")
	if testing.Verbose() {
		s := slices.Clone(l)
		slices.Sort(s)
		b.Logf("slowest: %v", s[max(0, len(s)-25):])
	}
}

// reportRatios reports l's p50 as multiples of the run's baselines.
func reportRatios(b *testing.B, l latencies) {
	b.Helper()
	base := measureBaselines(b)
	p50 := l.percentile(50)
	if base.fsync > 0 {
		b.ReportMetric(float64(p50)/float64(base.fsync), "p50/fsync")
	}
	if base.rtt > 0 {
		b.ReportMetric(float64(p50)/float64(base.rtt), "p50/rtt")
	}
}

func TestPercentile(t *testing.T) {
	l := latencies{}
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {1, 1}} {
		if got := l.percentile(tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := (latencies{}).percentile(50); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
}
