package smbus

import (
	"context"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
)

// BMC is the BMC of one slot, at firmware.BMCAddr(slot).
type BMC struct {
	dev  *device
	slot int
}

var (
	_ drivers.BMC        = (*BMC)(nil)
	_ drivers.BootStager = (*BMC)(nil)
)

// Slot is the BMC's slot, 1-based.
func (b *BMC) Slot() int { return b.slot }

// Addr is the BMC's 7-bit bus address.
func (b *BMC) Addr() uint16 { return b.dev.addr }

func (b *BMC) PowerState(ctx context.Context) (drivers.PowerState, error) {
	var s firmware.PowerState
	err := b.dev.read(ctx, drivers.OpPowerRead, b.slot, firmware.RegPowerState, func(p []byte) (err error) {
		s, err = firmware.DecodePowerState(p)
		return err
	})
	if err != nil {
		return "", err
	}
	return s.Driver(), nil
}

// SetPower switches the unit on or off; any other state is refused before
// anything is sent.
func (b *BMC) SetPower(ctx context.Context, s drivers.PowerState) error {
	cmd := firmware.PowerCmdOff
	switch s {
	case drivers.PowerOn:
		cmd = firmware.PowerCmdOn
	case drivers.PowerOff:
	default:
		_, err := firmware.PowerStateOf(s)
		return &drivers.Error{Op: drivers.OpPowerSet, Slot: b.slot, Err: drivers.ErrRefused, Cause: err}
	}
	return b.dev.write(ctx, drivers.OpPowerSet, b.slot, firmware.RegPowerControl, cmd.Encode())
}

// PowerCycle sends the cycle command. A retried write is safe: a device
// that NAKs a frame discards it.
func (b *BMC) PowerCycle(ctx context.Context) error {
	return b.dev.write(ctx, drivers.OpPowerCycle, b.slot, firmware.RegPowerControl, firmware.PowerCmdCycle.Encode())
}

func (b *BMC) ReadSensors(ctx context.Context) (drivers.Readings, error) {
	var s firmware.Sensors
	err := b.dev.read(ctx, drivers.OpSensorsRead, b.slot, firmware.RegSensors, func(p []byte) (err error) {
		s, err = firmware.DecodeSensors(p)
		return err
	})
	if err != nil {
		return drivers.Readings{}, err
	}
	return s.Readings(), nil
}

func (b *BMC) BootStage(ctx context.Context) (drivers.BootStage, error) {
	var s firmware.BootStage
	err := b.dev.read(ctx, drivers.OpStageRead, b.slot, firmware.RegBootStage, func(p []byte) (err error) {
		s, err = firmware.DecodeBootStage(p)
		return err
	})
	if err != nil {
		return "", err
	}
	return s.Driver(), nil
}

// FirmwareVersion reads the BMC's firmware version.
func (b *BMC) FirmwareVersion(ctx context.Context) (firmware.FirmwareVersion, error) {
	return firmwareVersion(ctx, b.dev, b.slot)
}

// NextBoot reads where the unit boots from next.
func (b *BMC) NextBoot(ctx context.Context) (firmware.BootSource, error) {
	var s firmware.BootSource
	err := b.dev.read(ctx, OpBootRead, b.slot, firmware.RegNextBoot, func(p []byte) (err error) {
		s, err = firmware.DecodeBootSource(p)
		return err
	})
	return s, err
}

// SetNextBoot sets where the unit boots from next; a source the protocol
// does not define is refused before anything is sent.
func (b *BMC) SetNextBoot(ctx context.Context, s firmware.BootSource) error {
	if _, err := firmware.DecodeBootSource(s.Encode()); err != nil {
		return &drivers.Error{Op: OpBootSet, Slot: b.slot, Err: drivers.ErrRefused, Cause: err}
	}
	return b.dev.write(ctx, OpBootSet, b.slot, firmware.RegNextBoot, s.Encode())
}

// ImageSlots reads the state of the A/B firmware image slots.
func (b *BMC) ImageSlots(ctx context.Context) (firmware.ImageSlots, error) {
	var s firmware.ImageSlots
	err := b.dev.read(ctx, OpFirmwareRead, b.slot, firmware.RegImageSlots, func(p []byte) (err error) {
		s, err = firmware.DecodeImageSlots(p)
		return err
	})
	return s, err
}

// AntiRollback reads the anti-rollback counter.
func (b *BMC) AntiRollback(ctx context.Context) (firmware.AntiRollback, error) {
	var a firmware.AntiRollback
	err := b.dev.read(ctx, OpFirmwareRead, b.slot, firmware.RegAntiRollback, func(p []byte) (err error) {
		a, err = firmware.DecodeAntiRollback(p)
		return err
	})
	return a, err
}

func firmwareVersion(ctx context.Context, d *device, slot int) (firmware.FirmwareVersion, error) {
	var v firmware.FirmwareVersion
	err := d.read(ctx, OpFirmwareRead, slot, firmware.RegFirmwareVersion, func(p []byte) (err error) {
		v, err = firmware.DecodeFirmwareVersion(p)
		return err
	})
	return v, err
}
