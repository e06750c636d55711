package fans

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/racklet/rack/events"
)

// MaxPolicyBytes bounds a policy document.
const MaxPolicyBytes = 64 << 10

// ErrPolicy is matched by every error of ParsePolicy.
var ErrPolicy = errors.New("fans: invalid fan policy")

// DefaultPolicy is the policy the reconciler runs while the log has none:
// a curve on the hottest node, 20% up to 35 °C rising to 100% at 70 °C,
// shut down at 85 °C, sensors stale after 10 s.
func DefaultPolicy() events.FanPolicy {
	return events.FanPolicy{
		Mode:   events.FanCurve,
		Source: events.SourceMaxNode,
		Curve: []events.CurvePoint{
			{Celsius: 35, Duty: 20}, {Celsius: 50, Duty: 40}, {Celsius: 60, Duty: 70}, {Celsius: 70, Duty: 100},
		},
		CriticalCelsius: 85,
		StaleAfter:      events.DefaultStaleAfter.String(),
	}
}

// ParsePolicy reads a fan policy document, YAML or JSON (JSON is YAML),
// with the field names of the JSON encoding: unknown fields, several
// documents and invalid values are errors naming the field. The result has
// its defaults filled in (events.FanPolicy.WithDefaults) and is valid.
//
//	mode: curve
//	source: max-node
//	curve:
//	  - {celsius: 35, duty: 20}
//	  - {celsius: 70, duty: 100}
//	criticalCelsius: 85
//	staleAfter: 10s
func ParsePolicy(b []byte) (events.FanPolicy, error) {
	var p events.FanPolicy
	if len(b) > MaxPolicyBytes {
		return p, fmt.Errorf("%w: %d bytes, more than %d", ErrPolicy, len(b), MaxPolicyBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return p, fmt.Errorf("%w: the document is empty", ErrPolicy)
	}
	// YAML to a generic value, then strict JSON: one set of field names
	// and one set of rules for both formats.
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return p, fmt.Errorf("%w: not YAML or JSON: %v", ErrPolicy, err)
	}
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return p, fmt.Errorf("%w: more than one document", ErrPolicy)
	}
	if _, ok := generic.(map[string]any); !ok {
		return p, fmt.Errorf("%w: the document must be a mapping of fields (mode, curve or pid, criticalCelsius, …)", ErrPolicy)
	}
	j, err := json.Marshal(generic)
	if err != nil {
		return p, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	jd := json.NewDecoder(bytes.NewReader(j))
	jd.DisallowUnknownFields()
	if err := jd.Decode(&p); err != nil {
		return events.FanPolicy{}, fmt.Errorf("%w: %s", ErrPolicy, jsonError(err))
	}
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return events.FanPolicy{}, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	return p, nil
}

// jsonError names the field of a decoding error.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%s must be a %s, not %s", te.Field, events.JSONKind(te.Type.Kind().String()), te.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Sprintf("%s is not a known field", strings.Trim(f, `"`))
	}
	return err.Error()
}

// controller computes the duty of a policy, sample by sample. It holds the
// PID's state; a new policy gets a new controller.
type controller struct {
	p        events.FanPolicy
	integral float64
	lastErr  float64
	lastAt   time.Time
	primed   bool
}

func newController(p events.FanPolicy) *controller { return &controller{p: p} }

// duty is the policy's duty for temperature c at time now.
func (c *controller) duty(celsius float64, now time.Time) float64 {
	if c.p.Mode == events.FanPID && c.p.PID != nil {
		return c.pid(celsius, now)
	}
	return curveDuty(c.p.Curve, celsius)
}

// curveDuty interpolates linearly between points, flat beyond the ends.
func curveDuty(pts []events.CurvePoint, celsius float64) float64 {
	if len(pts) == 0 {
		return 100
	}
	if celsius <= pts[0].Celsius {
		return pts[0].Duty
	}
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		if celsius <= b.Celsius {
			return a.Duty + (b.Duty-a.Duty)*(celsius-a.Celsius)/(b.Celsius-a.Celsius)
		}
	}
	return pts[len(pts)-1].Duty
}

// pid is a PID step with the integral clamped so that its share alone
// stays within the duty range (anti-windup).
func (c *controller) pid(celsius float64, now time.Time) float64 {
	k := c.p.PID
	e := celsius - k.Setpoint
	deriv := 0.0
	if c.primed {
		dt := now.Sub(c.lastAt).Seconds()
		if dt > 0 {
			c.integral += e * dt
			deriv = (e - c.lastErr) / dt
		}
	}
	if k.Ki > 0 {
		lim := k.MaxDuty / k.Ki
		c.integral = math.Max(-lim, math.Min(lim, c.integral))
	}
	c.lastErr, c.lastAt, c.primed = e, now, true
	out := k.Kp*e + k.Ki*c.integral + k.Kd*deriv
	return math.Max(k.MinDuty, math.Min(k.MaxDuty, out))
}
