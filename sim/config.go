package sim

import (
	"fmt"
	"log/slog"
	"time"
)

// Config describes a simulated rack. The zero value of every field but
// Slots has a useful default; a zero profile struct (Timings, Power,
// Thermal) means the fast defaults, a non-zero one is used as given.
type Config struct {
	// Slots is the number of slots (default 5, at most MaxSlots).
	Slots int
	// Empty lists the slots that start without a compute unit.
	Empty []int
	// Seed seeds every random choice (sensor noise). Same seed, same clock
	// readings, same calls in the same order: same results.
	Seed uint64
	// Clock is the simulation's time (default RealClock).
	Clock Clock
	// BusLatency is the duration of one SMBus transaction (a BMC or RMC
	// call). It always elapses on the wall clock, whatever Clock is.
	BusLatency time.Duration
	// Timings are the boot stage durations (default FastTimings).
	Timings Timings
	// Power is the draw per stage (default DefaultPower).
	Power PowerProfile
	// Thermal is the temperature model (default DefaultThermal).
	Thermal ThermalProfile
	// Fans are the RMC's fans (default none; see DefaultFans).
	Fans FanProfile
	// StartOn starts every present unit powered on and already ready.
	// OnPower is not called for this initial state.
	StartOn bool
	// RestorePrevious is the power restore policy: when slot or rack power
	// comes back, a unit that was on when it was lost powers on again. By
	// default (always off) it stays off until its BMC is told to power on.
	RestorePrevious bool
	// OnPower is called on every edge of a unit's main power, whatever its
	// cause (BMC command, power cycle, pulled slot or rack power, unit
	// removed): on=false when the unit dies, on=true when it powers on.
	// `rackd dev` kills and restarts the control-plane member hosted on the
	// slot from it. Calls come in the order of the edges, from the goroutine
	// of the call that caused them, never while the simulator holds a lock;
	// a hook may call back into the simulator.
	OnPower func(slot int, on bool)
	// Network is the control plane's network, for Partition and
	// HealNetwork; nil if there is none (they then fail with ErrNoNetwork).
	Network Network
	// Logger receives a structured record of every fault (default slog.Default()).
	Logger *slog.Logger
}

// MaxSlots bounds Config.Slots.
const MaxSlots = 1024

// Timings are how long each boot stage of a compute unit lasts after power on.
type Timings struct {
	Firmware  time.Duration
	Bootstrap time.Duration
	OS        time.Duration
}

// Total is the time from power on to ready.
func (t Timings) Total() time.Duration { return t.Firmware + t.Bootstrap + t.OS }

// FastTimings boot a unit in tens of milliseconds, for tests and `rackd dev`.
func FastTimings() Timings {
	return Timings{Firmware: 10 * time.Millisecond, Bootstrap: 20 * time.Millisecond, OS: 20 * time.Millisecond}
}

// RealisticTimings are those of a Raspberry Pi 4 booting over the network:
// a few seconds of firmware, a verified network boot, a systemd-free OS.
func RealisticTimings() Timings {
	return Timings{Firmware: 3 * time.Second, Bootstrap: 8 * time.Second, OS: 12 * time.Second}
}

// PowerProfile is a unit's power draw per state, in watts.
type PowerProfile struct {
	// Standby is the draw with main power off (BMC HAT and PSU standby).
	Standby float64
	// Firmware, Bootstrap, OS, Ready are the draw in each boot stage.
	Firmware  float64
	Bootstrap float64
	OS        float64
	Ready     float64
	// Inrush is the draw for InrushDuration after power on (capacitors
	// charging); it shows only in a reading taken in that window.
	Inrush         float64
	InrushDuration time.Duration
	// RackOverhead is the rack's own draw at its supply (RMC, PSU losses),
	// on top of the units.
	RackOverhead float64
	// NoiseWatts is the standard deviation of the Gaussian noise of a
	// power reading (PAC1921-class monitors are good to a few tens of mW).
	NoiseWatts float64
	// EnergyGainError is the standard deviation of each power monitor's
	// energy accumulator calibration (gain) error, as a fraction: every
	// BMC's and the RMC's count of joules is the true energy times 1+g,
	// g drawn once per monitor from the seed (see sim/energy.go).
	EnergyGainError float64
}

// DefaultPower is a Raspberry Pi 4 class unit.
func DefaultPower() PowerProfile {
	return PowerProfile{
		Standby:        0.3,
		Firmware:       2.5,
		Bootstrap:      4.0,
		OS:             4.2,
		Ready:          3.5,
		Inrush:         9.0,
		InrushDuration: 2 * time.Millisecond,
		RackOverhead:   1.5,
		NoiseWatts:     0.05,
		// PAC1921: ±1% full-scale power accuracy; a calibrated monitor
		// keeps its gain within a few tenths of a percent.
		EnergyGainError: 0.002,
	}
}

// ThermalProfile is the temperature model: each unit's temperature moves
// towards Inlet + RisePerWatt·watts with time constant Tau (first order).
type ThermalProfile struct {
	// Inlet is the rack's inlet air temperature at start, °C.
	Inlet float64
	// RisePerWatt is the steady-state rise above inlet per watt drawn.
	RisePerWatt float64
	// Tau is the thermal time constant; 0 means temperatures jump at once.
	Tau time.Duration
	// NoiseCelsius is the standard deviation of a temperature reading's noise.
	NoiseCelsius float64
}

// DefaultThermal settles fast (tests); RealisticThermal settles in a minute.
func DefaultThermal() ThermalProfile {
	return ThermalProfile{Inlet: 25, RisePerWatt: 6, Tau: 50 * time.Millisecond, NoiseCelsius: 0.1}
}

// RealisticThermal is a passively cooled Pi in moving air.
func RealisticThermal() ThermalProfile {
	return ThermalProfile{Inlet: 25, RisePerWatt: 6, Tau: 60 * time.Second, NoiseCelsius: 0.25}
}

// Realistic returns a config with realistic timings, thermal model and bus
// latency (100 kHz SMBus, a few bytes per transaction) for slots slots.
func Realistic(slots int, seed uint64) Config {
	return Config{
		Slots:      slots,
		Seed:       seed,
		BusLatency: 2 * time.Millisecond,
		Timings:    RealisticTimings(),
		Power:      DefaultPower(),
		Thermal:    RealisticThermal(),
	}
}

func (c Config) withDefaults() (Config, error) {
	if c.Slots == 0 {
		c.Slots = 5
	}
	if c.Slots < 0 || c.Slots > MaxSlots {
		return c, fmt.Errorf("sim: config: slots %d is not in 1..%d", c.Slots, MaxSlots)
	}
	for _, s := range c.Empty {
		if s < 1 || s > c.Slots {
			return c, fmt.Errorf("sim: config: empty slot %d is not in 1..%d", s, c.Slots)
		}
	}
	if c.BusLatency < 0 {
		return c, fmt.Errorf("sim: config: negative bus latency %v", c.BusLatency)
	}
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if c.Timings == (Timings{}) {
		c.Timings = FastTimings()
	}
	if c.Timings.Firmware < 0 || c.Timings.Bootstrap < 0 || c.Timings.OS < 0 {
		return c, fmt.Errorf("sim: config: negative boot timing %+v", c.Timings)
	}
	if c.Power == (PowerProfile{}) {
		c.Power = DefaultPower()
	}
	if c.Thermal == (ThermalProfile{}) {
		c.Thermal = DefaultThermal()
	}
	if c.Power.NoiseWatts < 0 || c.Thermal.NoiseCelsius < 0 || c.Thermal.Tau < 0 || c.Power.InrushDuration < 0 || c.Power.EnergyGainError < 0 {
		return c, fmt.Errorf("sim: config: negative noise, gain error, inrush duration or time constant")
	}
	if err := c.Fans.validate(); err != nil {
		return c, err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
