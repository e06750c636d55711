package events

import (
	"fmt"
	"math"
	"time"
)

// Fans, temperatures and alarms (the RMC). The fan policy is desired
// state: it enters the log when an operator sets it. Alarms are threshold
// crossings: raised once when a condition starts, cleared once when it
// ends, never one event per sample.
const (
	// FanPolicySet: the rack's fan policy; subject: the rack.
	FanPolicySet Type = "io.racklet.rack.fanpolicy.set"
	// AlarmRaised: a condition that needs attention started; subject: the
	// object it is about (a node, a fan "fan<N>", or the rack).
	AlarmRaised Type = "io.racklet.rack.alarm.raised"
	// AlarmCleared: the condition of a raised alarm (same kind and subject)
	// ended.
	AlarmCleared Type = "io.racklet.rack.alarm.cleared"
)

// AlarmKind is what an alarm is about.
type AlarmKind string

const (
	// AlarmFanFailed: a fan stands still while driven (subject fan<N>),
	// or the fans cannot be read (subject the rack).
	AlarmFanFailed AlarmKind = "fan-failed"
	// AlarmSensorStale: a node's (or the rack inlet's) readings stopped
	// changing: the sensor reports an old value.
	AlarmSensorStale AlarmKind = "sensor-stale"
	// AlarmSensorMissing: a node's (or the rack inlet's) sensors could not
	// be read for a while.
	AlarmSensorMissing AlarmKind = "sensor-missing"
	// AlarmCriticalTemperature: a node went over the critical temperature
	// and is being shut down.
	AlarmCriticalTemperature AlarmKind = "critical-temperature"
)

// Valid reports whether k is a known alarm kind.
func (k AlarmKind) Valid() bool {
	switch k {
	case AlarmFanFailed, AlarmSensorStale, AlarmSensorMissing, AlarmCriticalTemperature:
		return true
	}
	return false
}

// FanMode is how a fan policy computes the duty.
type FanMode string

const (
	// FanCurve: duty interpolated linearly between curve points
	// (temperature → duty), flat beyond the ends.
	FanCurve FanMode = "curve"
	// FanPID: a PID controller holding the temperature at a setpoint.
	FanPID FanMode = "pid"
)

// FanSource is the temperature a fan policy follows.
type FanSource string

const (
	// SourceMaxNode: the hottest node's temperature (the default).
	SourceMaxNode FanSource = "max-node"
	// SourceInlet: the rack's inlet air temperature.
	SourceInlet FanSource = "inlet"
)

// Bounds of a fan policy.
const (
	MaxCurvePoints     = 16
	MinPolicyCelsius   = -40.0
	MaxPolicyCelsius   = 150.0
	MinCriticalCelsius = 40.0
	MaxPIDGain         = 1000.0
	MinStaleAfter      = 100 * time.Millisecond
	MaxStaleAfter      = time.Hour
	DefaultStaleAfter  = 10 * time.Second
)

// CurvePoint is one point of a fan curve: at Celsius, Duty percent.
type CurvePoint struct {
	Celsius float64 `json:"celsius"`
	Duty    float64 `json:"duty"`
}

// PIDSettings tune a PID fan controller. The error is temperature minus
// Setpoint (positive when too hot); the duty is Kp·e + Ki·∫e dt + Kd·de/dt
// (seconds), clamped to [MinDuty, MaxDuty].
type PIDSettings struct {
	Setpoint float64 `json:"setpoint"`
	Kp       float64 `json:"kp"`
	Ki       float64 `json:"ki"`
	Kd       float64 `json:"kd"`
	MinDuty  float64 `json:"minDuty"`
	MaxDuty  float64 `json:"maxDuty"`
}

// FanPolicy is how the rack drives its fans and protects its nodes.
type FanPolicy struct {
	Mode FanMode `json:"mode"`
	// Source is the temperature followed (default max-node).
	Source FanSource `json:"source,omitempty"`
	// Curve: mode curve only; 2 to MaxCurvePoints points, temperatures
	// strictly increasing, duties not decreasing, 0 to 100.
	Curve []CurvePoint `json:"curve,omitempty"`
	// PID: mode pid only.
	PID *PIDSettings `json:"pid,omitempty"`
	// CriticalCelsius: a node over it is shut down (required).
	CriticalCelsius float64 `json:"criticalCelsius"`
	// StaleAfter: a sensor whose readings have not changed, or could not
	// be read, for this long is stale or missing (a Go duration, default
	// 10s).
	StaleAfter string `json:"staleAfter,omitempty"`
}

// WithDefaults returns p with the optional fields filled in (source,
// stale-after) and stale-after in its canonical form.
func (p FanPolicy) WithDefaults() FanPolicy {
	if p.Source == "" {
		p.Source = SourceMaxNode
	}
	if p.StaleAfter == "" {
		p.StaleAfter = DefaultStaleAfter.String()
	} else if d, err := time.ParseDuration(p.StaleAfter); err == nil {
		p.StaleAfter = d.String()
	}
	return p
}

// StaleAfterDuration is StaleAfter parsed (DefaultStaleAfter if empty or
// invalid; Validate rejects invalid ones).
func (p FanPolicy) StaleAfterDuration() time.Duration {
	d, err := time.ParseDuration(p.StaleAfter)
	if err != nil || d <= 0 {
		return DefaultStaleAfter
	}
	return d
}

// Validate reports the first invalid field of the policy as a *FieldError
// naming it relative to the policy (e.g. "curve[1].duty").
func (p FanPolicy) Validate() error {
	switch p.Source {
	case "", SourceMaxNode, SourceInlet:
	default:
		return &FieldError{Field: "source", Reason: fmt.Sprintf("must be max-node or inlet, not %q", clip(string(p.Source)))}
	}
	if err := checkRange("criticalCelsius", p.CriticalCelsius, MinCriticalCelsius, MaxPolicyCelsius, true); err != nil {
		return err
	}
	if p.StaleAfter != "" {
		d, err := time.ParseDuration(p.StaleAfter)
		if err != nil {
			return &FieldError{Field: "staleAfter", Reason: fmt.Sprintf("%q is not a duration like 10s or 1m30s", clip(p.StaleAfter))}
		}
		if d < MinStaleAfter || d > MaxStaleAfter {
			return &FieldError{Field: "staleAfter", Reason: fmt.Sprintf("must be between %v and %v, not %v", MinStaleAfter, MaxStaleAfter, d)}
		}
	}
	switch p.Mode {
	case FanCurve:
		if p.PID != nil {
			return &FieldError{Field: "pid", Reason: "is for mode pid; mode curve takes curve only"}
		}
		return p.validateCurve()
	case FanPID:
		if len(p.Curve) > 0 {
			return &FieldError{Field: "curve", Reason: "is for mode curve; mode pid takes pid only"}
		}
		return p.validatePID()
	case "":
		return &FieldError{Field: "mode", Reason: "is required (curve or pid)"}
	}
	return &FieldError{Field: "mode", Reason: fmt.Sprintf("must be curve or pid, not %q", clip(string(p.Mode)))}
}

func (p FanPolicy) validateCurve() error {
	if len(p.Curve) < 2 || len(p.Curve) > MaxCurvePoints {
		return &FieldError{Field: "curve", Reason: fmt.Sprintf("must have 2 to %d points, not %d", MaxCurvePoints, len(p.Curve))}
	}
	for i, pt := range p.Curve {
		f := fmt.Sprintf("curve[%d]", i)
		if err := checkRange(f+".celsius", pt.Celsius, MinPolicyCelsius, MaxPolicyCelsius, false); err != nil {
			return err
		}
		if err := checkRange(f+".duty", pt.Duty, 0, 100, false); err != nil {
			return err
		}
		if i == 0 {
			continue
		}
		prev := p.Curve[i-1]
		if pt.Celsius <= prev.Celsius {
			return &FieldError{Field: f + ".celsius", Reason: fmt.Sprintf("must be above the previous point's %v °C (temperatures strictly increase)", prev.Celsius)}
		}
		if pt.Duty < prev.Duty {
			return &FieldError{Field: f + ".duty", Reason: fmt.Sprintf("must not be below the previous point's %v%% (a hotter rack never gets less air)", prev.Duty)}
		}
	}
	if p.CriticalCelsius <= p.Curve[0].Celsius {
		return &FieldError{Field: "criticalCelsius", Reason: fmt.Sprintf("must be above the curve's first point (%v °C)", p.Curve[0].Celsius)}
	}
	return nil
}

func (p FanPolicy) validatePID() error {
	c := p.PID
	if c == nil {
		return &FieldError{Field: "pid", Reason: "is required for mode pid (setpoint, kp, ki, kd, minDuty, maxDuty)"}
	}
	if err := checkRange("pid.setpoint", c.Setpoint, MinPolicyCelsius, MaxPolicyCelsius, false); err != nil {
		return err
	}
	for _, g := range []struct {
		name string
		v    float64
	}{{"pid.kp", c.Kp}, {"pid.ki", c.Ki}, {"pid.kd", c.Kd}} {
		if err := checkRange(g.name, g.v, 0, MaxPIDGain, false); err != nil {
			return err
		}
	}
	if c.Kp == 0 && c.Ki == 0 && c.Kd == 0 {
		return &FieldError{Field: "pid.kp", Reason: "kp, ki and kd are all 0: the controller would never move"}
	}
	if err := checkRange("pid.minDuty", c.MinDuty, 0, 100, false); err != nil {
		return err
	}
	if err := checkRange("pid.maxDuty", c.MaxDuty, 0, 100, false); err != nil {
		return err
	}
	if c.MaxDuty <= c.MinDuty {
		return &FieldError{Field: "pid.maxDuty", Reason: fmt.Sprintf("must be above minDuty (%v%%)", c.MinDuty)}
	}
	if p.CriticalCelsius <= c.Setpoint {
		return &FieldError{Field: "criticalCelsius", Reason: fmt.Sprintf("must be above the setpoint (%v °C)", c.Setpoint)}
	}
	return nil
}

// checkRange checks that v is a finite number in [lo, hi]; required
// rejects 0 as "is required".
func checkRange(field string, v, lo, hi float64, required bool) error {
	if required && v == 0 {
		return &FieldError{Field: field, Reason: "is required"}
	}
	if math.IsNaN(v) || v < lo || v > hi {
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be between %v and %v, not %v", lo, hi, v)}
	}
	return nil
}

// prefixed renames a *FieldError's field with a prefix.
func prefixed(prefix string, err error) error {
	if fe, ok := err.(*FieldError); ok {
		return &FieldError{Field: prefix + fe.Field, Reason: fe.Reason}
	}
	return err
}

// FanPolicySetData: the rack's fan policy was set.
type FanPolicySetData struct {
	Policy FanPolicy `json:"policy"`
}

func (d *FanPolicySetData) Validate() error {
	return prefixed("data.policy.", d.Policy.Validate())
}

// AlarmRaisedData: an alarm of this kind about the event's subject started.
type AlarmRaisedData struct {
	Kind   AlarmKind `json:"kind"`
	Reason string    `json:"reason"`
	// Value is the reading that crossed the threshold (°C, RPM), if any,
	// and Limit the threshold.
	Value float64 `json:"value,omitempty"`
	Limit float64 `json:"limit,omitempty"`
}

func (d *AlarmRaisedData) Validate() error {
	if err := validateAlarmKind(d.Kind); err != nil {
		return err
	}
	if math.IsNaN(d.Value) || math.IsInf(d.Value, 0) || math.IsNaN(d.Limit) || math.IsInf(d.Limit, 0) {
		return &FieldError{Field: "data.value", Reason: "must be a finite number"}
	}
	return validateText("data.reason", d.Reason, true)
}

// AlarmClearedData: the alarm of this kind about the event's subject ended.
type AlarmClearedData struct {
	Kind   AlarmKind `json:"kind"`
	Reason string    `json:"reason,omitempty"`
}

func (d *AlarmClearedData) Validate() error {
	if err := validateAlarmKind(d.Kind); err != nil {
		return err
	}
	return validateText("data.reason", d.Reason, false)
}

func validateAlarmKind(k AlarmKind) error {
	if k == "" {
		return &FieldError{Field: "data.kind", Reason: "is required"}
	}
	if !k.Valid() {
		return &FieldError{Field: "data.kind", Reason: fmt.Sprintf("must be fan-failed, sensor-stale, sensor-missing or critical-temperature, not %q", clip(string(k)))}
	}
	return nil
}
