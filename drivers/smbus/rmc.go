package smbus

import (
	"context"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
)

// RMC is the rack management controller, at firmware.RMCAddr.
type RMC struct {
	dev *device
}

var _ drivers.RMC = (*RMC)(nil)

func (m *RMC) ReadRack(ctx context.Context) (drivers.RackReadings, error) {
	var s firmware.RackSensors
	err := m.dev.read(ctx, drivers.OpRackRead, 0, firmware.RegRackSensors, func(p []byte) (err error) {
		s, err = firmware.DecodeRackSensors(p)
		return err
	})
	if err != nil {
		return drivers.RackReadings{}, err
	}
	return s.Readings(), nil
}

// Presence reads every slot's presence pin.
func (m *RMC) Presence(ctx context.Context) (firmware.Presence, error) {
	return m.presence(ctx, drivers.OpPresence, 0)
}

func (m *RMC) presence(ctx context.Context, op string, slot int) (firmware.Presence, error) {
	var pr firmware.Presence
	err := m.dev.read(ctx, op, slot, firmware.RegPresence, func(p []byte) (err error) {
		pr, err = firmware.DecodePresence(p)
		return err
	})
	return pr, err
}

// FirmwareVersion reads the RMC's firmware version.
func (m *RMC) FirmwareVersion(ctx context.Context) (firmware.FirmwareVersion, error) {
	return firmwareVersion(ctx, m.dev, 0)
}
