// Package drivers holds the small interfaces through which the control plane
// reaches rack hardware: a Backplane gives the BMC of each slot and reads
// slot presence, a BMC powers its compute unit and reads its sensors, and the
// RMC reads rack-wide figures. Implementations (the simulator in package sim;
// later SMBus, Redfish, GPIO) live in their own packages and all pass the
// conformance suite in drivers/driverstest.
//
// Every call takes a context and honours its deadline: a hung device makes
// the call fail with ErrTimeout when the context expires, never later.
// Failures are *Error values wrapping one of the sentinels below.
package drivers

import (
	"context"
	"fmt"
)

// PowerState is a compute unit's power as its BMC reports it. The values
// match events.PowerState, so a reconciler converts with a plain conversion.
type PowerState string

const (
	PowerOff PowerState = "off"
	PowerOn  PowerState = "on"
)

// Valid reports whether p is on or off.
func (p PowerState) Valid() bool { return p == PowerOn || p == PowerOff }

// BootStage is how far a powered compute unit has come on its way up.
// The order is StageOff, StageFirmware, StageBootstrap, StageOS, StageReady.
type BootStage string

const (
	// StageOff: the unit has no main power (its BMC may still run on standby).
	StageOff BootStage = "off"
	// StageFirmware: the SoC runs its boot ROM and firmware.
	StageFirmware BootStage = "firmware"
	// StageBootstrap: the boot environment fetches and verifies the OS.
	StageBootstrap BootStage = "bootstrap"
	// StageOS: the operating system is starting.
	StageOS BootStage = "os"
	// StageReady: the OS is up; a control-plane member on it can run.
	StageReady BootStage = "ready"
)

// Readings are one sample of a compute unit's sensors.
type Readings struct {
	// Watts is the unit's power draw, standby included.
	Watts float64 `json:"watts"`
	// Celsius is the unit's SoC temperature.
	Celsius float64 `json:"celsius"`
	// Joules is the power monitor's energy accumulator: the unit's energy
	// since the monitor started counting. It never decreases while the
	// monitor keeps counting (a reset shows as a drop). 0 if the monitor
	// has no accumulator.
	Joules float64 `json:"joules"`
}

// RackReadings are one sample of the RMC's rack-wide sensors.
type RackReadings struct {
	// InletCelsius is the air temperature at the rack's inlet.
	InletCelsius float64 `json:"inletCelsius"`
	// Watts is the rack's total power draw at its supply.
	Watts float64 `json:"watts"`
	// Joules is the energy accumulator of the rack supply's monitor, as
	// Readings.Joules; 0 if it has none.
	Joules float64 `json:"joules"`
}

// Backplane is a rack as its drivers see it: numbered slots, each with the
// BMC of the unit it holds, presence detection, and the RMC.
type Backplane interface {
	// Slots is the number of slots; slots are numbered 1 to Slots().
	Slots() int
	// BMC returns the BMC of a slot. It fails only with ErrNoSlot for a slot
	// out of range; an empty slot gives a BMC whose calls fail with
	// ErrUnreachable (nothing answers at its address).
	BMC(slot int) (BMC, error)
	// Present reports whether a compute unit is seated in the slot.
	Present(ctx context.Context, slot int) (bool, error)
	// RMC returns the rack management controller.
	RMC() RMC
}

// Power switches a compute unit's main power through its BMC.
type Power interface {
	// PowerState reads the unit's power.
	PowerState(ctx context.Context) (PowerState, error)
	// SetPower switches the unit on or off; it is idempotent. Any other
	// state is refused (ErrRefused). Power off is immediate and hard (no
	// shutdown of the OS).
	SetPower(ctx context.Context, s PowerState) error
	// PowerCycle switches a unit that is on off and on again (a hard reset:
	// it boots from the start), and a unit that is off on.
	PowerCycle(ctx context.Context) error
}

// Sensors reads a compute unit's sensors through its BMC.
type Sensors interface {
	ReadSensors(ctx context.Context) (Readings, error)
}

// BMC is the baseboard management controller of one slot's compute unit.
type BMC interface {
	// Slot is the BMC's slot, 1-based.
	Slot() int
	Power
	Sensors
}

// BootStager is an optional BMC capability: it reports the boot stage the
// unit has reached (from the stage reports of the boot environment).
type BootStager interface {
	BootStage(ctx context.Context) (BootStage, error)
}

// RMC is the rack management controller: rack inlet temperature and total
// rack power. Fans and the fan policy come as separate interfaces.
type RMC interface {
	ReadRack(ctx context.Context) (RackReadings, error)
}

// Operation names carried by *Error, so logs and metrics agree on them.
const (
	OpPowerRead   = "power.read"
	OpPowerSet    = "power.set"
	OpPowerCycle  = "power.cycle"
	OpSensorsRead = "sensors.read"
	OpStageRead   = "stage.read"
	OpPresence    = "presence.read"
	OpRackRead    = "rack.read"
	OpBMC         = "bmc"
)

// CheckSlot returns an *Error wrapping ErrNoSlot if slot is not in 1..slots.
func CheckSlot(op string, slot, slots int) error {
	if slot < 1 || slot > slots {
		return &Error{Op: op, Slot: slot, Err: ErrNoSlot, Cause: fmt.Errorf("slot %d is not in 1..%d", slot, slots)}
	}
	return nil
}
