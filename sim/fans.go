package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/racklet/rack/drivers"
)

// ErrNoFan: the fan number is not one of the RMC's fans.
var ErrNoFan = errors.New("sim: no such fan")

// MaxFans bounds FanProfile.Count.
const MaxFans = 16

// FanProfile describes the RMC's fans. The zero value means a rack without
// fans: no airflow term in the thermal model, no fan power, and an RMC
// that does not offer drivers.FanController's calls (they are refused).
//
// The model: all fans share one duty (percent), set through the RMC. Each
// fan's speed moves towards MaxRPM·duty/100 with time constant Tau; a
// stuck fan (StickFan) stands at 0 RPM at once, whatever its duty. Airflow
// is the mean of duty/100 over the fans that turn (it follows the duty at
// once; only the tachometer readings lag), and it removes the fraction
// Cooling·airflow of every unit's temperature rise above the inlet. Each
// fan that turns draws Watts·(duty/100)³ (the fan law) from the rack's
// supply, on top of Power.RackOverhead.
//
// The RMC starts its fans at 100% when it powers up (at New, and when rack
// power comes back), and goes back to 100% by itself when nobody has set
// the duty for Watchdog: a control plane that stops driving the fans (no
// leader, a crashed reconciler) leaves the rack cooled, not cooking.
type FanProfile struct {
	// Count is the number of fans, 0 to MaxFans.
	Count int
	// MaxRPM is a fan's speed at 100% duty.
	MaxRPM float64
	// Tau is the time constant of a fan's speed; 0 means speeds jump.
	Tau time.Duration
	// Watts is one fan's draw at 100% duty.
	Watts float64
	// Cooling is the fraction of a unit's rise above the inlet that full
	// airflow removes, in [0, 1).
	Cooling float64
	// Watchdog: with no duty set for this long, the RMC runs the fans at
	// 100% until the duty is set again; 0 disables it.
	Watchdog time.Duration
	// NoiseRPM is the standard deviation of a tachometer reading's noise.
	NoiseRPM float64
}

// DefaultFans are four small fans that settle fast (tests, `rackd dev`).
func DefaultFans() FanProfile {
	return FanProfile{Count: 4, MaxRPM: 6000, Tau: 100 * time.Millisecond, Watts: 1.2, Cooling: 0.5, Watchdog: 5 * time.Second, NoiseRPM: 15}
}

// RealisticFans are four 40 mm fans that take a couple of seconds to spin up.
func RealisticFans() FanProfile {
	return FanProfile{Count: 4, MaxRPM: 6000, Tau: 2 * time.Second, Watts: 1.2, Cooling: 0.5, Watchdog: 10 * time.Second, NoiseRPM: 30}
}

func (f FanProfile) validate() error {
	switch {
	case f.Count < 0 || f.Count > MaxFans:
		return fmt.Errorf("sim: config: %d fans is not in 0..%d", f.Count, MaxFans)
	case f.Count == 0:
		return nil
	case !(f.MaxRPM > 0) || math.IsInf(f.MaxRPM, 0):
		return fmt.Errorf("sim: config: fan max rpm %v must be positive", f.MaxRPM)
	case f.Tau < 0 || f.Watchdog < 0 || f.Watts < 0 || f.NoiseRPM < 0:
		return fmt.Errorf("sim: config: negative fan time constant, watchdog, watts or noise")
	case !(f.Cooling >= 0 && f.Cooling < 1):
		return fmt.Errorf("sim: config: fan cooling %v is not in [0, 1)", f.Cooling)
	}
	return nil
}

// fan is one of the RMC's fans: its speed at rpmAt, settled piecewise.
type fan struct {
	rpm   float64
	rpmAt time.Time
	stuck bool
}

// newFans sets the fans up at power-up: 100% duty, full speed.
func (r *Rack) newFansLocked(now time.Time) {
	p := r.cfg.Fans
	r.fans = make([]*fan, p.Count)
	for i := range r.fans {
		r.fans[i] = &fan{rpm: p.MaxRPM, rpmAt: now}
	}
	r.fanDuty, r.fanDutyAt = 100, now
}

// watchdogAt is when the RMC's watchdog takes the fans to 100% unless the
// duty is set before, or the zero time if it cannot fire.
func (r *Rack) watchdogAt() time.Time {
	if len(r.fans) == 0 || r.cfg.Fans.Watchdog <= 0 || !r.rackOn || r.fanDuty >= 100 {
		return time.Time{}
	}
	return r.fanDutyAt.Add(r.cfg.Fans.Watchdog)
}

// dutyAt is the duty the RMC drives at t (t not before the last change):
// 0 without rack power, 100 once the watchdog fired.
func (r *Rack) dutyAt(t time.Time) float64 {
	if !r.rackOn {
		return 0
	}
	if w := r.watchdogAt(); !w.IsZero() && !t.Before(w) {
		return 100
	}
	return r.fanDuty
}

// segmentEnd cuts a piecewise-constant segment [t, end) of the fans'
// model at the watchdog's firing.
func (r *Rack) segmentEnd(t, end time.Time) time.Time {
	if w := r.watchdogAt(); w.After(t) && w.Before(end) {
		return w
	}
	return end
}

// coolingAt is the factor airflow leaves of a unit's rise at t: 1 without
// fans, 1 − Cooling·airflow with them.
func (r *Rack) coolingAt(t time.Time) float64 {
	if len(r.fans) == 0 {
		return 1
	}
	turning := 0
	for _, f := range r.fans {
		if !f.stuck {
			turning++
		}
	}
	airflow := float64(turning) / float64(len(r.fans)) * r.dutyAt(t) / 100
	return 1 - r.cfg.Fans.Cooling*airflow
}

// fanWattsAt is the fans' draw at t.
func (r *Rack) fanWattsAt(t time.Time) float64 {
	if len(r.fans) == 0 {
		return 0
	}
	d := r.dutyAt(t) / 100
	w := 0.0
	for _, f := range r.fans {
		if !f.stuck {
			w += r.cfg.Fans.Watts * d * d * d
		}
	}
	return w
}

// settleFansLocked brings every fan's speed up to now.
func (r *Rack) settleFansLocked(now time.Time) {
	p := r.cfg.Fans
	for _, f := range r.fans {
		if f.stuck {
			f.rpm = 0
		}
		t := f.rpmAt
		for t.Before(now) && !f.stuck {
			end := r.segmentEnd(t, now)
			target := p.MaxRPM * r.dutyAt(t) / 100
			if p.Tau <= 0 {
				f.rpm = target
			} else {
				f.rpm = target + (f.rpm-target)*math.Exp(-float64(end.Sub(t))/float64(p.Tau))
			}
			t = end
		}
		if now.After(f.rpmAt) {
			f.rpmAt = now
		}
	}
}

// rmcRebootLocked is the RMC powering up again with the rack: fans to 100%.
func (r *Rack) rmcRebootLocked(now time.Time) {
	if len(r.fans) > 0 {
		r.fanDuty, r.fanDutyAt = 100, now
	}
}

// ---- the driver: the RMC as a drivers.FanController ----

var _ drivers.FanController = rmc{}

// Fans reads every fan's tachometer and the duty the RMC drives.
func (m rmc) Fans(ctx context.Context) ([]drivers.FanReading, error) {
	if len(m.r.fans) == 0 {
		return nil, &drivers.Error{Op: drivers.OpFansRead, Err: drivers.ErrRefused, Cause: errors.New("the rack has no fans")}
	}
	var out []drivers.FanReading
	err := m.r.transact(ctx, drivers.OpFansRead, 0, 0, func(now time.Time) error {
		r := m.r
		r.settleFansLocked(now)
		duty := r.dutyAt(now)
		out = make([]drivers.FanReading, len(r.fans))
		for i, f := range r.fans {
			rpm := 0.0
			if f.rpm >= 1 {
				rpm = max(0, f.rpm+r.fanRng.NormFloat64()*r.cfg.Fans.NoiseRPM)
			}
			out[i] = drivers.FanReading{Fan: i + 1, RPM: rpm, DutyPercent: duty}
		}
		return nil
	})
	return out, err
}

// SetFanDuty sets every fan's duty, in percent (0 to 100).
func (m rmc) SetFanDuty(ctx context.Context, percent float64) error {
	if len(m.r.fans) == 0 {
		return &drivers.Error{Op: drivers.OpFanDutySet, Err: drivers.ErrRefused, Cause: errors.New("the rack has no fans")}
	}
	if !(percent >= 0 && percent <= 100) {
		return &drivers.Error{Op: drivers.OpFanDutySet, Err: drivers.ErrRefused, Cause: fmt.Errorf("duty %v%% is not in 0..100", percent)}
	}
	return m.r.transact(ctx, drivers.OpFanDutySet, 0, 0, func(now time.Time) error {
		r := m.r
		r.settleAllLocked(now)
		r.fanDuty, r.fanDutyAt = percent, now
		return nil
	})
}

// ---- the simulator's own API: truth and faults ----

// FanStatus is the truth about a fan, as the simulator knows it.
type FanStatus struct {
	Fan int `json:"fan"`
	// Duty is the duty the RMC drives (100 after its watchdog fired, 0
	// without rack power).
	Duty float64 `json:"duty"`
	// RPM is the true speed, without tachometer noise.
	RPM   float64 `json:"rpm"`
	Stuck bool    `json:"stuck,omitempty"`
}

// Fans reports the truth about every fan (none if the rack has no fans).
// It consumes no randomness.
func (r *Rack) Fans() []FanStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	r.settleFansLocked(now)
	out := make([]FanStatus, len(r.fans))
	for i, f := range r.fans {
		out[i] = FanStatus{Fan: i + 1, Duty: r.dutyAt(now), RPM: f.rpm, Stuck: f.stuck}
	}
	return out
}

func (r *Rack) fanLocked(what string, n int) (*fan, error) {
	if n < 1 || n > len(r.fans) {
		return nil, fmt.Errorf("sim: %s: fan %d is not in 1..%d: %w", what, n, len(r.fans), ErrNoFan)
	}
	return r.fans[n-1], nil
}

// StickFan jams a fan: it stands at 0 RPM, whatever its duty, and draws
// nothing, until HealFan.
func (r *Rack) StickFan(n int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := r.fanLocked("stick fan", n)
	if err != nil {
		return err
	}
	r.settleAllLocked(r.clock.Now())
	f.stuck, f.rpm = true, 0
	r.injectedLocked(FaultFanStuck, "fan", n)
	return nil
}

// HealFan frees a stuck fan; it spins up towards the duty's speed.
func (r *Rack) HealFan(n int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := r.fanLocked("heal fan", n)
	if err != nil {
		return err
	}
	if f.stuck {
		r.settleAllLocked(r.clock.Now())
		f.stuck = false
		r.clearedLocked(FaultFanStuck, "fan", n)
	}
	return nil
}

// HeatUnit makes a unit run hotter: its rise above the inlet is multiplied
// by factor (a blocked heatsink, a dried thermal pad). Factor 1 clears it;
// it must be in [1, 100]. The unit's temperature follows with the thermal
// model; the fault stays with the slot until cleared.
func (r *Rack) HeatUnit(slot int, factor float64) error {
	if !(factor >= 1 && factor <= 100) {
		return fmt.Errorf("sim: heat unit: factor %v is not in [1, 100]", factor)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	u, err := r.unitLocked(slot)
	if err != nil {
		return fmt.Errorf("sim: heat unit: %w", err)
	}
	r.settleLocked(u, r.clock.Now())
	was := u.heat
	u.heat = factor
	switch {
	case factor != 1:
		r.injectedLocked(FaultUnitHeat, "slot", slot, "factor", factor)
	case was != 1:
		r.clearedLocked(FaultUnitHeat, "slot", slot)
	}
	return nil
}
