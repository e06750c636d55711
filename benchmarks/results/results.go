// Package results collects the figures of a `make bench` run. Each
// benchmark appends its figures as records (JSON lines) to a file in the
// directory named by RACKLET_BENCH_OUT; benchtable (benchmarks/cmd/benchtable)
// merges them with the machine's description into one report, written as
// benchmarks/results/latest.json, and prints it as one table.
package results

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// EnvDir names the environment variable that holds the directory the
// benchmarks write their records to. Unset, they write none.
const EnvDir = "RACKLET_BENCH_OUT"

// Units of the standard metrics.
const (
	UnitMs  = "ms"
	UnitMiB = "MiB"
	UnitPct = "%"
)

// Standard metric names: a latency distribution in ms and a rate. A
// record may carry any other metric; the table shows those as "other".
const (
	P50  = "p50"
	P90  = "p90"
	P99  = "p99"
	Max  = "max"
	Rate = "rate"
)

// Metric is one figure with its unit.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Record is what one benchmark (or one part of one) measured.
type Record struct {
	// Name is the benchmark's name (b.Name()), maybe with a suffix for one
	// of several distributions it measures.
	Name string `json:"name"`
	// Samples is how many operations the figures are over.
	Samples int      `json:"samples"`
	Metrics []Metric `json:"metrics"`
	// Labels mark records for the targets (e.g. default=true).
	Labels map[string]string `json:"labels,omitempty"`
	Notes  []string          `json:"notes,omitempty"`
	// Time is when the record was written; Load1 the machine's 1-minute
	// load average then (the machine is often shared).
	Time  time.Time `json:"time"`
	Load1 float64   `json:"load1,omitempty"`
}

// Limits on what a record may hold.
const (
	maxNameLen    = 256
	maxMetrics    = 64
	maxNotes      = 32
	maxTextLen    = 1024
	maxLabels     = 16
	maxLineLength = 1 << 20
)

// Validate reports the first invalid field.
func (r *Record) Validate() error {
	if r.Name == "" || len(r.Name) > maxNameLen || !utf8.ValidString(r.Name) {
		return fmt.Errorf("results: record name %q: want 1 to %d bytes of UTF-8", clip(r.Name), maxNameLen)
	}
	if r.Samples < 0 {
		return fmt.Errorf("results: record %s: negative samples %d", r.Name, r.Samples)
	}
	if len(r.Metrics) > maxMetrics || len(r.Notes) > maxNotes || len(r.Labels) > maxLabels {
		return fmt.Errorf("results: record %s: too many metrics, notes or labels", r.Name)
	}
	seen := map[string]bool{}
	for _, m := range r.Metrics {
		if m.Name == "" || len(m.Name) > maxTextLen || m.Unit == "" || len(m.Unit) > maxTextLen {
			return fmt.Errorf("results: record %s: metric %q needs a name and a unit", r.Name, clip(m.Name))
		}
		if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
			return fmt.Errorf("results: record %s: metric %s is %v", r.Name, m.Name, m.Value)
		}
		if seen[m.Name] {
			return fmt.Errorf("results: record %s: metric %s twice", r.Name, m.Name)
		}
		seen[m.Name] = true
	}
	for _, n := range r.Notes {
		if len(n) > maxTextLen {
			return fmt.Errorf("results: record %s: note longer than %d bytes", r.Name, maxTextLen)
		}
	}
	for k, v := range r.Labels {
		if k == "" || len(k) > maxTextLen || len(v) > maxTextLen {
			return fmt.Errorf("results: record %s: invalid label %q", r.Name, clip(k))
		}
	}
	if math.IsNaN(r.Load1) || math.IsInf(r.Load1, 0) || r.Load1 < 0 {
		return fmt.Errorf("results: record %s: load %v", r.Name, r.Load1)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Metric returns the named metric.
func (r *Record) Metric(name string) (Metric, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// Latency returns the standard latency metrics (p50, p90, p99, max in ms)
// of durations, nearest rank; nothing for no durations.
func Latency(ds []time.Duration) []Metric {
	if len(ds) == 0 {
		return nil
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(p float64) Metric {
		d := Percentile(s, p)
		return Metric{Value: float64(d) / float64(time.Millisecond), Unit: UnitMs}
	}
	out := []Metric{ms(50), ms(90), ms(99), ms(100)}
	for i, n := range []string{P50, P90, P99, Max} {
		out[i].Name = n
	}
	return out
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted, by
// nearest rank (rounded, as the benchmarks' own percentile); 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// Writer appends records to one file in a directory, one JSON object a
// line. It is safe for concurrent use within a process.
type Writer struct {
	mu   sync.Mutex
	path string
}

// NewWriter returns a Writer on a file in dir named for this process.
func NewWriter(dir string) *Writer {
	return &Writer{path: filepath.Join(dir, fmt.Sprintf("bench-%d.jsonl", os.Getpid()))}
}

// Write validates rec and appends it, stamped with the time and load.
func (w *Writer) Write(rec Record) error {
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	if rec.Load1 == 0 {
		rec.Load1 = Load1()
	}
	if err := rec.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("results: encoding record %s: %w", rec.Name, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("results: opening %s: %w", w.path, err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("results: writing %s: %w", w.path, err)
	}
	return nil
}

// ErrBadRecord is returned for a line that is not a valid record.
var ErrBadRecord = errors.New("results: bad record")

// Parse reads records, one JSON object a line; blank lines are skipped.
func Parse(r io.Reader) ([]Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineLength)
	var out []Record
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var rec Record
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadRecord, line, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: line %d: more than one object", ErrBadRecord, line)
		}
		if err := rec.Validate(); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadRecord, line, err)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return out, nil
}

// Load reads the records of every *.jsonl file in dir.
func Load(dir string) ([]Record, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("results: listing %s: %w", dir, err)
	}
	slices.Sort(paths)
	var out []Record
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("results: %w", err)
		}
		recs, err := Parse(f)
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		out = append(out, recs...)
	}
	return out, nil
}

// Merge keeps one record per name: the one over the most samples, the
// latest of equals (go test runs each benchmark once with b.N = 1 before
// the real run). The result keeps the order in which names first appear.
func Merge(recs []Record) []Record {
	idx := map[string]int{}
	var out []Record
	for _, r := range recs {
		i, ok := idx[r.Name]
		switch {
		case !ok:
			idx[r.Name] = len(out)
			out = append(out, r)
		case r.Samples > out[i].Samples || (r.Samples == out[i].Samples && !r.Time.Before(out[i].Time)):
			out[i] = r
		}
	}
	return out
}

// Load1 is the machine's 1-minute load average, 0 if unknown.
func Load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 || math.IsInf(v, 0) {
		return 0
	}
	return v
}
