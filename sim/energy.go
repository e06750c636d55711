package sim

import (
	"time"
)

// Energy: every BMC has a PAC1921-class power monitor on its slot's supply
// and the RMC one on the rack's supply. Each reports the instantaneous
// draw (true watts plus Gaussian noise, PowerProfile.NoiseWatts) and an
// accumulator of joules: the exact integral of the true draw over the
// simulation's clock, times 1+g, where g is the monitor's calibration
// (gain) error, drawn once per monitor from the seed with standard
// deviation PowerProfile.EnergyGainError. The integral is exact, not
// sampled: the draw is piecewise constant (boot stages, inrush, fan duty,
// the RMC watchdog) and the simulator integrates it segment by segment
// whenever anything that changes it happens, and on every read. So with a
// ManualClock the counts are deterministic, whatever the sampling.
//
// The accumulators count from the rack's creation and never go back: a
// monitor sits on the slot's supply, so its count belongs to the slot and
// survives pulled power and unit swaps (it simply stops growing while the
// slot has no power). Real monitors may reset; Prometheus counters
// tolerate that.
//
// The truth without gain error is UnitStatus.Joules and RackJoules.

// energyStream is the PCG stream of the monitors' gain errors, apart from
// the slots' (1..MaxSlots) and the RMC's (0) noise streams.
const energyStream = 0xe4e7

// fanStream is the PCG stream of the fans' tachometer noise.
const fanStream = 0xfa45

// integrateLocked brings the unit's energy count up to now, segment by
// segment of constant draw (inrush, boot stages).
func (r *Rack) integrateLocked(u *unit, now time.Time) {
	t := u.energyAt
	for t.Before(now) {
		end := now
		if u.present && u.slotOn && r.rackOn && u.on {
			if ie := u.onAt.Add(r.cfg.Power.InrushDuration); t.Before(ie) && ie.Before(end) {
				end = ie
			}
			if _, next := r.stageAt(u, t); !next.IsZero() && next.Before(end) {
				end = next
			}
		}
		u.joules += r.wattsLocked(u, t) * end.Sub(t).Seconds()
		t = end
	}
	if now.After(u.energyAt) {
		u.energyAt = now
	}
}

// integrateExtraLocked brings the count of the rack's own draw (overhead
// and fans) up to now.
func (r *Rack) integrateExtraLocked(now time.Time) {
	t := r.extraAt
	for t.Before(now) {
		end := r.segmentEnd(t, now)
		r.extraJoules += r.extraWattsAt(t) * end.Sub(t).Seconds()
		t = end
	}
	if now.After(r.extraAt) {
		r.extraAt = now
	}
}

// extraWattsAt is the rack's own draw at t: overhead and fans.
func (r *Rack) extraWattsAt(t time.Time) float64 {
	if !r.rackOn {
		return 0
	}
	return r.cfg.Power.RackOverhead + r.fanWattsAt(t)
}

// rackJoulesLocked is the rack's true energy count at now.
func (r *Rack) rackJoulesLocked(now time.Time) float64 {
	r.integrateExtraLocked(now)
	sum := r.extraJoules
	for _, u := range r.units {
		r.integrateLocked(u, now)
		sum += u.joules
	}
	return sum
}

// RackJoules is the rack's true energy since the simulation started, at
// its supply (units, overhead and fans), without the RMC monitor's gain
// error. It consumes no randomness.
func (r *Rack) RackJoules() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rackJoulesLocked(r.clock.Now())
}

// Gains returns the calibration gains (1+g) of the monitors: one per slot,
// then the RMC's. The counts the drivers report are the true counts times
// these.
func (r *Rack) Gains() (slots []float64, rmc float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	slots = make([]float64, len(r.units))
	for i, u := range r.units {
		slots[i] = u.gain
	}
	return slots, r.rmcGain
}
