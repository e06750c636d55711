package benchmarks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The baselines say what this machine gives: the figures of the append
// benchmarks read as multiples of them (an append costs at least one HTTP
// round trip and an fsync on a majority of members).

// BenchmarkBaselineFsync: write 4 KiB at the start of a file, then fsync
// it, on the file system that holds the members' data dirs (the system's
// temporary directory).
func BenchmarkBaselineFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	lat := make(latencies, 0, b.N)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := writeSync(f, buf, i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
	record(b, b.Name(), lat)
}

func writeSync(f *os.File, buf []byte, i int) error {
	buf[0] = byte(i)
	if _, err := f.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

// BenchmarkBaselineHTTPRoundTrip: one GET on a kept-alive loopback
// connection to an httptest server that answers 204.
func BenchmarkBaselineHTTPRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	hc := &http.Client{Transport: transport}
	lat := make(latencies, 0, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := roundTrip(ctx, hc, srv.URL); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
	record(b, b.Name(), lat)
}

func roundTrip(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("got %s", resp.Status)
	}
	return nil
}

// baselines are the p50s the append benchmarks divide by.
type baselines struct{ fsync, rtt time.Duration }

var (
	baselineOnce sync.Once
	baseline     baselines
)

// baselineSamples is how many fsyncs and round trips measureBaselines
// takes; enough for a stable median.
const baselineSamples = 300

// measureBaselines samples the baselines once per run, so that every
// append benchmark can report ratios even when it runs alone (-bench).
func measureBaselines(b *testing.B) baselines {
	b.Helper()
	baselineOnce.Do(func() {
		dir, err := os.MkdirTemp("", "racklet-bench-baseline-")
		if err != nil {
			b.Logf("baseline: %v", err)
			return
		}
		defer os.RemoveAll(dir)
		f, err := os.Create(filepath.Join(dir, "fsync"))
		if err != nil {
			b.Logf("baseline: %v", err)
			return
		}
		defer f.Close()
		buf := make([]byte, 4096)
		var fs, rt latencies
		for i := 0; i < baselineSamples; i++ {
			start := time.Now()
			if err := writeSync(f, buf, i); err != nil {
				b.Logf("baseline: %v", err)
				return
			}
			fs = append(fs, time.Since(start))
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}))
		defer srv.Close()
		hc := &http.Client{Transport: transport}
		for i := 0; i < baselineSamples; i++ {
			start := time.Now()
			if err := roundTrip(context.Background(), hc, srv.URL); err != nil {
				b.Logf("baseline: %v", err)
				return
			}
			rt = append(rt, time.Since(start))
		}
		baseline = baselines{fsync: fs.percentile(50), rtt: rt.percentile(50)}
	})
	return baseline
}
