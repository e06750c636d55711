package benchmarks

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/benchmarks/results"
)

// The benchmarks write their figures for `make bench`'s table through
// record, to the directory in RACKLET_BENCH_OUT; without it, nowhere.

var (
	recorderOnce sync.Once
	recorder     *results.Writer
)

// record writes one record of the figures: the latency distribution of
// lat (p50/p90/p99/max in ms, if any) and the extra metrics.
func record(b *testing.B, name string, lat latencies, extra ...results.Metric) {
	b.Helper()
	writeRecord(b, results.Record{Name: name, Samples: len(lat), Metrics: append(results.Latency(lat), extra...)})
}

// writeRecord writes rec, if the run records.
func writeRecord(b *testing.B, rec results.Record) {
	b.Helper()
	recorderOnce.Do(func() {
		if dir := os.Getenv(results.EnvDir); dir != "" {
			recorder = results.NewWriter(dir)
		}
	})
	if recorder == nil {
		return
	}
	if err := recorder.Write(rec); err != nil {
		b.Errorf("recording %s: %v", rec.Name, err)
	}
}

// rate is a results metric of n operations over d, in unit (e.g. events/s).
func rate(n int, d time.Duration, unit string) results.Metric {
	return results.Metric{Name: results.Rate, Value: float64(n) / d.Seconds(), Unit: unit}
}
