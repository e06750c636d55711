// Package smbus is the drivers.Backplane of a real rack: it speaks the
// protocol of package firmware to each slot's BMC and to the RMC over the
// backplane SMBus, through periph.io's i2c.Bus.
//
// This package depends only on periph.io/x/conn/v3 (the interfaces). On
// hardware, periph.io/x/host/v3 opens the bus, in the program's wiring:
//
//	if _, err := host.Init(); err != nil { ... }  // periph.io/x/host/v3
//	bus, err := i2creg.Open("")                  // periph.io/x/conn/v3/i2c/i2creg; "" is the first bus, or "/dev/i2c-1"
//	if err != nil { ... }
//	defer bus.Close()
//	bp, err := smbus.New(smbus.Config{Bus: bus, Slots: 6})
//
// In tests, sim.Rack.FirmwareBus is an emulated bus backed by the simulator.
//
// Every call first makes sure the device speaks firmware.ProtocolVersion
// (it reads register 0x00 once, and again after the device stopped
// answering); a device that speaks another version is refused with a
// *VersionError. A transaction whose frame comes back corrupt (bad PEC,
// wrong length, a value the protocol does not define) or that the bus
// reports failed (NAK) is tried again, up to Config.Attempts times, then
// the call fails with drivers.ErrUnreachable (drivers.ErrTimeout if the
// bus timed out) wrapping the last failure, so errors.Is also matches
// firmware.ErrPEC, firmware.ErrLength or the bus's error. Calls honour
// their context: if the bus has a TxContext method (see ContextBus) it is
// used, otherwise a transaction still running when the context is done is
// left to finish on its own (periph's Tx cannot be interrupted; Linux
// bounds it with the adapter's timeout) and the call returns at once.
package smbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
)

// Operation names of the calls beyond the drivers interfaces.
const (
	OpFirmwareRead = "firmware.read"
	OpBootRead     = "boot.read"
	OpBootSet      = "boot.set"
	// OpImageWrite is a write of the A/B image update (begin, data,
	// verify, switch, confirm, rollback).
	OpImageWrite = "firmware.image"
)

// ErrVersion: the device speaks another protocol version than the driver.
// A *VersionError matches it.
var ErrVersion = errors.New("smbus: protocol version mismatch")

// VersionError is a device that speaks a protocol version the driver does
// not. Calls to it fail with drivers.ErrRefused wrapping it.
type VersionError struct {
	Firmware, Driver uint16
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("smbus: firmware speaks protocol v%d, driver speaks v%d", e.Firmware, e.Driver)
}

func (e *VersionError) Is(target error) bool { return target == ErrVersion }

// ContextBus is an optional capability of an i2c.Bus: a transaction that
// stops when its context is done. The simulator's bus has it.
type ContextBus interface {
	TxContext(ctx context.Context, addr uint16, w, r []byte) error
}

// Config configures a Backplane.
type Config struct {
	// Bus is the backplane SMBus.
	Bus i2c.Bus
	// Slots is the number of slots, 1..firmware.MaxSlots.
	Slots int
	// Attempts bounds the tries of one transaction (default 3).
	Attempts int
	// Backoff is the pause after the first failed attempt, growing
	// linearly with each further one (default 1ms).
	Backoff time.Duration
	// Logger receives a debug record of every failed attempt (default
	// slog.Default()).
	Logger *slog.Logger
}

// Backplane is a rack reached over its backplane SMBus.
type Backplane struct {
	cfg  Config
	bmcs []*BMC
	rmc  *RMC
}

var _ drivers.Backplane = (*Backplane)(nil)

// New returns the backplane on cfg.Bus.
func New(cfg Config) (*Backplane, error) {
	if cfg.Bus == nil {
		return nil, errors.New("smbus: config: no bus")
	}
	if cfg.Slots < 1 || cfg.Slots > firmware.MaxSlots {
		return nil, fmt.Errorf("smbus: config: slots %d is not in 1..%d", cfg.Slots, firmware.MaxSlots)
	}
	if cfg.Attempts < 0 || cfg.Backoff < 0 {
		return nil, fmt.Errorf("smbus: config: negative attempts %d or backoff %v", cfg.Attempts, cfg.Backoff)
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 3
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("component", "smbus", "bus", cfg.Bus.String())
	b := &Backplane{cfg: cfg}
	for slot := 1; slot <= cfg.Slots; slot++ {
		addr, err := firmware.BMCAddr(slot)
		if err != nil {
			return nil, fmt.Errorf("smbus: config: %w", err)
		}
		b.bmcs = append(b.bmcs, &BMC{dev: b.device(addr), slot: slot})
	}
	b.rmc = &RMC{dev: b.device(firmware.RMCAddr)}
	return b, nil
}

func (b *Backplane) device(addr uint16) *device {
	return &device{
		bus:      b.cfg.Bus,
		addr:     addr,
		attempts: b.cfg.Attempts,
		backoff:  b.cfg.Backoff,
		log:      b.cfg.Logger.With("addr", fmt.Sprintf("0x%02x", addr)),
	}
}

// Slots is the number of slots.
func (b *Backplane) Slots() int { return len(b.bmcs) }

// BMC returns the BMC of a slot.
func (b *Backplane) BMC(slot int) (drivers.BMC, error) {
	m, err := b.SlotBMC(slot)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// SlotBMC is BMC with the concrete type, for the calls beyond drivers.BMC.
func (b *Backplane) SlotBMC(slot int) (*BMC, error) {
	if err := drivers.CheckSlot(drivers.OpBMC, slot, len(b.bmcs)); err != nil {
		return nil, err
	}
	return b.bmcs[slot-1], nil
}

// Present reads the slot's presence pin from the RMC.
func (b *Backplane) Present(ctx context.Context, slot int) (bool, error) {
	if err := drivers.CheckSlot(drivers.OpPresence, slot, len(b.bmcs)); err != nil {
		return false, err
	}
	p, err := b.rmc.presence(ctx, drivers.OpPresence, slot)
	return p.Has(slot), err
}

// RMC returns the rack management controller.
func (b *Backplane) RMC() drivers.RMC { return b.rmc }

// SlotRMC is RMC with the concrete type.
func (b *Backplane) SlotRMC() *RMC { return b.rmc }
