// Package telemetry is the rack's live sensor data: the sample the
// leader's fan reconciler takes every interval (node power, energy and
// temperature, rack totals and inlet, fan speeds and duty), how it travels
// to every member (NATS subject racklet.<rack>.telemetry, not the log:
// samples are not state changes), the latest sample each member keeps for
// GET /v1/telemetry, and the Prometheus collector that exports it on
// /metrics.
package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/racklet/rack/events"
)

// Sample is one sampling of the rack's sensors.
type Sample struct {
	// Rack and Member: the rack, and the member that sampled (the leader).
	Rack   string    `json:"rack"`
	Member string    `json:"member"`
	Time   time.Time `json:"time"`
	// IntervalSeconds is the sampling period.
	IntervalSeconds float64 `json:"intervalSeconds"`

	Totals RackTotals   `json:"totals"`
	Nodes  []NodeSample `json:"nodes"`
	Fans   []FanSample  `json:"fans"`

	// Duty is the fan duty set after this sample, in percent.
	Duty float64 `json:"duty"`
	// SourceCelsius is the temperature the fan policy followed (0 in
	// fail-safe without one).
	SourceCelsius float64 `json:"sourceCelsius"`
	// FailSafe is set while the fans run at 100% because of an alarm;
	// FailSafeReason says which.
	FailSafe       bool   `json:"failSafe"`
	FailSafeReason string `json:"failSafeReason,omitempty"`
}

// RackTotals are the RMC's readings.
type RackTotals struct {
	OK           bool    `json:"ok"`
	Error        string  `json:"error,omitempty"`
	Watts        float64 `json:"watts"`
	Joules       float64 `json:"joules"`
	InletCelsius float64 `json:"inletCelsius"`
}

// NodeSample is one node's BMC readings.
type NodeSample struct {
	Name string `json:"name"`
	Slot int    `json:"slot"`
	// OK: the BMC answered this time; Error says why not. Stale: its
	// readings have not changed for the policy's stale-after.
	OK      bool    `json:"ok"`
	Error   string  `json:"error,omitempty"`
	Stale   bool    `json:"stale,omitempty"`
	Watts   float64 `json:"watts"`
	Joules  float64 `json:"joules"`
	Celsius float64 `json:"celsius"`
}

// FanSample is one fan's reading.
type FanSample struct {
	Fan    int     `json:"fan"`
	RPM    float64 `json:"rpm"`
	Duty   float64 `json:"duty"`
	Failed bool    `json:"failed,omitempty"`
}

// Limits of a decoded sample.
const (
	MaxSampleBytes = 1 << 20
	MaxNodes       = 1024
	MaxFans        = 64
	maxText        = 1024
)

// ErrInvalid is matched by every error of Decode.
var ErrInvalid = errors.New("telemetry: invalid sample")

// Encode encodes a sample as JSON.
func Encode(s Sample) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("telemetry: encoding a sample: %w", err)
	}
	return b, nil
}

// Decode decodes and validates a sample: one JSON object of at most
// MaxSampleBytes, no unknown fields, valid names, finite figures.
func Decode(b []byte) (Sample, error) {
	var s Sample
	if len(b) > MaxSampleBytes {
		return s, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(b), MaxSampleBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Sample{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Sample{}, fmt.Errorf("%w: data after the JSON object", ErrInvalid)
	}
	if err := s.Validate(); err != nil {
		return Sample{}, err
	}
	return s, nil
}

// Validate checks a sample.
func (s Sample) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if !events.ValidName(s.Rack) || !events.ValidName(s.Member) {
		return bad("rack %q or member %q is not a valid name", clip(s.Rack), clip(s.Member))
	}
	if s.Time.IsZero() {
		return bad("no time")
	}
	if len(s.Nodes) > MaxNodes || len(s.Fans) > MaxFans {
		return bad("%d nodes and %d fans: at most %d and %d", len(s.Nodes), len(s.Fans), MaxNodes, MaxFans)
	}
	if len(s.FailSafeReason) > maxText || len(s.Totals.Error) > maxText {
		return bad("text longer than %d bytes", maxText)
	}
	nums := []float64{s.IntervalSeconds, s.Duty, s.SourceCelsius, s.Totals.Watts, s.Totals.Joules, s.Totals.InletCelsius}
	seen := map[string]bool{}
	for _, n := range s.Nodes {
		if !events.ValidName(n.Name) || seen[n.Name] {
			return bad("node name %q is invalid or repeated", clip(n.Name))
		}
		seen[n.Name] = true
		if n.Slot < 0 || n.Slot > MaxNodes || len(n.Error) > maxText {
			return bad("node %s: slot %d or error text out of bounds", n.Name, n.Slot)
		}
		nums = append(nums, n.Watts, n.Joules, n.Celsius)
	}
	for i, f := range s.Fans {
		if f.Fan != i+1 {
			return bad("fan %d is numbered %d", i+1, f.Fan)
		}
		nums = append(nums, f.RPM, f.Duty)
	}
	for _, v := range nums {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return bad("a figure is not a finite number")
		}
	}
	if s.IntervalSeconds < 0 || s.Duty < 0 || s.Duty > 100 {
		return bad("interval %v s or duty %v%% out of range", s.IntervalSeconds, s.Duty)
	}
	return nil
}

// Interval is the sampling period.
func (s Sample) Interval() time.Duration {
	return time.Duration(s.IntervalSeconds * float64(time.Second))
}

// FanName is the name of fan n in alarms and metrics: fan1, fan2, …
func FanName(n int) string { return fmt.Sprintf("fan%d", n) }

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
