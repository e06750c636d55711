// Package sim is the rack simulator: slots holding compute units that boot
// through firmware, bootstrap and OS stages and draw power as they go, a BMC
// per unit on a shared simulated SMBus, an RMC with rack inlet temperature
// and total power, and fault injection (pulled power, hung, slow, stale or
// unreachable BMCs, network partitions, hot swap). Backplane returns it as a
// drivers.Backplane, the same interfaces the hardware drivers implement.
//
// The simulator runs no goroutines. A unit's boot stage, inrush and
// temperature are computed from timestamps of the injectable Clock when they
// are read, and all noise comes from math/rand/v2 PCG sources seeded from
// Config.Seed (one stream per slot, one for the RMC, one for the fans'
// tachometers, one for the power monitors' gains). Fans (fans.go) and
// energy counts (energy.go) follow the same rules. With a ManualClock
// and calls made in the same order, two racks with the same seed give
// identical results.
//
// What remains timing dependent: with RealClock, which stage a read sees and
// the temperature it reports; SMBus latency (BusLatency, SlowBMC) always
// elapses on the wall clock, so whether a call beats its context's deadline
// depends on timing; concurrent calls on the same slot consume that slot's
// noise stream in the order they happen to take the lock.
package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/racklet/rack/drivers"
)

// Errors of the simulator's own API (the drivers it returns fail with
// *drivers.Error values instead).
var (
	ErrEmptySlot = errors.New("sim: slot is empty")
	ErrOccupied  = errors.New("sim: slot is occupied")
	ErrNoNetwork = errors.New("sim: no network")
	ErrClosed    = errors.New("sim: closed")
)

// unit is a slot and whatever is seated in it. Invariant: on implies
// rackOn, slotOn and present.
type unit struct {
	present bool
	slotOn  bool
	on      bool
	onAt    time.Time
	// resume: the unit was on when it lost power (restore policy).
	resume bool

	temp   float64
	tempAt time.Time
	rng    *rand.Rand
	// heat multiplies the unit's rise above the inlet (HeatUnit; 1 normally).
	heat float64

	// energy: the true count of joules up to energyAt, and the monitor's
	// gain (see energy.go)
	joules   float64
	energyAt time.Time
	gain     float64

	// boot is the boot model (boot.go).
	boot unitBoot

	// faults of the unit's BMC
	hung  bool
	slow  time.Duration
	nak   bool
	stale *staleView
}

// staleView is what a stale BMC keeps reporting.
type staleView struct {
	power    drivers.PowerState
	stage    drivers.BootStage
	readings drivers.Readings
}

func (u *unit) clearFaults() {
	u.hung, u.slow, u.nak, u.stale = false, 0, false, nil
}

type powerEdge struct {
	slot int
	on   bool
}

// Rack is a simulated rack. All its methods are safe for concurrent use.
type Rack struct {
	cfg    Config
	log    *slog.Logger
	clock  Clock
	bus    chan struct{} // the SMBus: one transaction at a time
	closed chan struct{}
	close  sync.Once

	mu         sync.Mutex
	rackOn     bool
	inlet      float64
	units      []*unit // slot s is units[s-1]
	rmcRng     *rand.Rand
	faults     map[FaultKind]int
	partition  [][]string
	pending    []powerEdge
	delivering bool

	// fans (fans.go) and the rack's own energy (energy.go)
	fans        []*fan
	fanDuty     float64
	fanDutyAt   time.Time
	fanRng      *rand.Rand
	extraJoules float64
	extraAt     time.Time
	rmcGain     float64
}

// New builds a rack from cfg.
func New(cfg Config) (*Rack, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Rack{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "sim"),
		clock:  cfg.Clock,
		bus:    make(chan struct{}, 1),
		closed: make(chan struct{}),
		rackOn: true,
		inlet:  cfg.Thermal.Inlet,
		rmcRng: rand.New(rand.NewPCG(cfg.Seed, 0)),
		faults: map[FaultKind]int{},
	}
	now := r.clock.Now()
	gains := rand.New(rand.NewPCG(cfg.Seed, energyStream))
	r.fanRng = rand.New(rand.NewPCG(cfg.Seed, fanStream))
	r.extraAt = now
	r.newFansLocked(now)
	for s := 1; s <= cfg.Slots; s++ {
		u := &unit{
			present:  !slices.Contains(cfg.Empty, s),
			slotOn:   true,
			temp:     r.inlet,
			tempAt:   now,
			rng:      rand.New(rand.NewPCG(cfg.Seed, uint64(s))),
			heat:     1,
			energyAt: now,
			gain:     1 + gains.NormFloat64()*cfg.Power.EnergyGainError,
		}
		if u.present {
			u.temp = r.inlet + cfg.Thermal.RisePerWatt*cfg.Power.Standby*r.coolingAt(now)
			if cfg.StartOn {
				u.on = true
				u.onAt = now.Add(-cfg.Timings.Total())
				u.temp = r.inlet + cfg.Thermal.RisePerWatt*cfg.Power.Ready*r.coolingAt(now)
			}
		}
		r.units = append(r.units, u)
	}
	r.rmcGain = 1 + gains.NormFloat64()*cfg.Power.EnergyGainError
	return r, nil
}

// Close stops the rack: calls in flight (waiting for the bus, or on a hung
// BMC) return at once and every later driver call fails with
// drivers.ErrUnreachable (cause ErrClosed). There are no goroutines to stop.
func (r *Rack) Close() error {
	r.close.Do(func() { close(r.closed) })
	return nil
}

// Slots is the number of slots.
func (r *Rack) Slots() int { return len(r.units) }

func (r *Rack) unitLocked(slot int) (*unit, error) {
	if slot < 1 || slot > len(r.units) {
		return nil, fmt.Errorf("sim: slot %d: %w", slot, drivers.ErrNoSlot)
	}
	return r.units[slot-1], nil
}

// stageAt is the unit's boot stage at t and when that stage ends (zero if
// it lasts until the power changes).
func (r *Rack) stageAt(u *unit, t time.Time) (drivers.BootStage, time.Time) {
	if !u.on {
		return drivers.StageOff, time.Time{}
	}
	end := u.onAt
	for _, st := range r.bootPath(u) {
		if st.d == stuck {
			return st.stage, time.Time{}
		}
		end = end.Add(st.d)
		if t.Before(end) {
			return st.stage, end
		}
	}
	return drivers.StageReady, time.Time{}
}

// stageWatts is the steady draw of a present, slot-powered unit in a stage.
func (r *Rack) stageWatts(s drivers.BootStage) float64 {
	p := r.cfg.Power
	switch s {
	case drivers.StageFirmware:
		return p.Firmware
	case drivers.StageBootstrap:
		return p.Bootstrap
	case drivers.StageOS:
		return p.OS
	case drivers.StageReady:
		return p.Ready
	}
	return p.Standby
}

// wattsLocked is the unit's true draw at t, without noise: nothing if the
// slot has no power or no unit, the stage's draw otherwise, and the inrush
// figure just after power on.
func (r *Rack) wattsLocked(u *unit, t time.Time) float64 {
	if !u.present || !u.slotOn || !r.rackOn {
		return 0
	}
	if u.on && t.Sub(u.onAt) < r.cfg.Power.InrushDuration {
		return r.cfg.Power.Inrush
	}
	st, _ := r.stageAt(u, t)
	return r.stageWatts(st)
}

// settleLocked brings the unit's temperature up to now: a first-order
// approach to inlet + rise·watts (times the unit's heat factor and what
// the fans' airflow leaves of it), piecewise over the boot stages passed
// and the RMC watchdog's firing. It brings the unit's energy count up to
// now as well.
func (r *Rack) settleLocked(u *unit, now time.Time) {
	r.integrateLocked(u, now)
	th := r.cfg.Thermal
	t := u.tempAt
	for t.Before(now) {
		watts := 0.0
		end := r.segmentEnd(t, now)
		if u.present && u.slotOn && r.rackOn {
			st, next := r.stageAt(u, t)
			watts = r.stageWatts(st)
			if !next.IsZero() && next.Before(end) {
				end = next
			}
		}
		target := r.inlet + th.RisePerWatt*watts*u.heat*r.coolingAt(t)
		if th.Tau <= 0 {
			u.temp = target
		} else {
			u.temp = target + (u.temp-target)*math.Exp(-float64(end.Sub(t))/float64(th.Tau))
		}
		t = end
	}
	if now.After(u.tempAt) {
		u.tempAt = now
	}
}

// settleAllLocked settles every unit, the fans and the rack's own energy
// count before a change that affects all.
func (r *Rack) settleAllLocked(now time.Time) {
	for _, u := range r.units {
		r.settleLocked(u, now)
	}
	r.settleFansLocked(now)
	r.integrateExtraLocked(now)
}

func (r *Rack) powerOnLocked(slot int, now time.Time) {
	u := r.units[slot-1]
	if u.on || !u.present || !u.slotOn || !r.rackOn {
		return
	}
	r.settleLocked(u, now)
	u.on, u.onAt, u.resume = true, now, false
	u.boot.powerOn()
	r.edgeLocked(slot, true)
}

// powerOffLocked cuts the unit's main power; lost says it lost its supply
// (rather than being switched off), for the restore policy.
func (r *Rack) powerOffLocked(slot int, now time.Time, lost bool) {
	u := r.units[slot-1]
	if !u.on {
		return
	}
	r.settleLocked(u, now)
	u.on, u.resume = false, lost
	r.edgeLocked(slot, false)
}

// restoreLocked applies the restore policy to a unit whose supply is back.
func (r *Rack) restoreLocked(slot int, now time.Time) {
	u := r.units[slot-1]
	if !u.present || !u.slotOn || !r.rackOn {
		return
	}
	if r.cfg.RestorePrevious && u.resume {
		r.powerOnLocked(slot, now)
	}
	u.resume = false
}

func (r *Rack) edgeLocked(slot int, on bool) {
	if r.cfg.OnPower != nil {
		r.pending = append(r.pending, powerEdge{slot, on})
	}
}

// deliver calls OnPower for the pending power edges, in order. Call it
// without holding r.mu. If another goroutine is delivering already, it
// delivers ours too; a hook that calls back into the rack only queues.
func (r *Rack) deliver() {
	r.mu.Lock()
	if r.delivering {
		r.mu.Unlock()
		return
	}
	r.delivering = true
	for len(r.pending) > 0 {
		edges := r.pending
		r.pending = nil
		r.mu.Unlock()
		for _, e := range edges {
			r.cfg.OnPower(e.slot, e.on)
		}
		r.mu.Lock()
	}
	r.delivering = false
	r.mu.Unlock()
}

// readingsLocked samples the unit's sensors (consuming its noise stream).
func (r *Rack) readingsLocked(u *unit, now time.Time) drivers.Readings {
	r.settleLocked(u, now)
	w := r.wattsLocked(u, now) + u.rng.NormFloat64()*r.cfg.Power.NoiseWatts
	return drivers.Readings{
		Watts:   max(w, 0),
		Celsius: u.temp + u.rng.NormFloat64()*r.cfg.Thermal.NoiseCelsius,
		Joules:  u.joules * u.gain,
	}
}

// rackWattsLocked is the rack's true draw: every unit plus the overhead
// and the fans.
func (r *Rack) rackWattsLocked(now time.Time) float64 {
	if !r.rackOn {
		return 0
	}
	sum := r.extraWattsAt(now)
	for _, u := range r.units {
		sum += r.wattsLocked(u, now)
	}
	return sum
}

// UnitStatus is the truth about a slot, as the simulator knows it (not as
// a BMC reports it): for tests, dashboards and `rackd dev`.
type UnitStatus struct {
	Slot      int                `json:"slot"`
	Present   bool               `json:"present"`
	SlotPower bool               `json:"slotPower"`
	RackPower bool               `json:"rackPower"`
	Power     drivers.PowerState `json:"power"`
	// Resume: the unit was on when its slot or the rack lost power, and
	// powers on again when the power returns (Config.RestorePrevious).
	Resume bool              `json:"resume,omitempty"`
	Stage  drivers.BootStage `json:"stage"`
	// Watts and Celsius are the true values, without sensor noise.
	Watts   float64 `json:"watts"`
	Celsius float64 `json:"celsius"`
	// Joules is the slot's true energy since the simulation started,
	// without the monitor's gain error (see energy.go).
	Joules float64 `json:"joules"`
	// Faults are the BMC faults in force.
	Faults []FaultKind `json:"faults,omitempty"`
}

// Unit reports the truth about a slot. It consumes no randomness.
func (r *Rack) Unit(slot int) (UnitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, err := r.unitLocked(slot)
	if err != nil {
		return UnitStatus{}, err
	}
	now := r.clock.Now()
	r.settleLocked(u, now)
	st, _ := r.stageAt(u, now)
	s := UnitStatus{
		Slot:      slot,
		Present:   u.present,
		SlotPower: u.slotOn,
		RackPower: r.rackOn,
		Power:     powerOf(u.on),
		Resume:    u.resume && r.cfg.RestorePrevious,
		Stage:     st,
		Watts:     r.wattsLocked(u, now),
		Celsius:   u.temp,
		Joules:    u.joules,
	}
	if u.hung {
		s.Faults = append(s.Faults, FaultBMCHang)
	}
	if u.slow > 0 {
		s.Faults = append(s.Faults, FaultBMCSlow)
	}
	if u.nak {
		s.Faults = append(s.Faults, FaultBMCUnreachable)
	}
	if u.stale != nil {
		s.Faults = append(s.Faults, FaultBMCStale)
	}
	return s, nil
}

// RackWatts is the rack's true draw, without noise.
func (r *Rack) RackWatts() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rackWattsLocked(r.clock.Now())
}

// Faults counts the faults injected so far, by kind.
func (r *Rack) Faults() map[FaultKind]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.faults)
}

func powerOf(on bool) drivers.PowerState {
	if on {
		return drivers.PowerOn
	}
	return drivers.PowerOff
}
