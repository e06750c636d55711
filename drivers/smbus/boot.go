package smbus

import (
	"context"
	"fmt"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
)

var _ drivers.BootSourceSetter = (*BMC)(nil)

// SetBootSource writes the next-boot register (firmware.RegNextBoot):
// network or local; anything else is refused before anything is sent.
func (b *BMC) SetBootSource(ctx context.Context, s drivers.BootSource) error {
	var src firmware.BootSource
	switch s {
	case drivers.BootNetwork:
		src = firmware.BootNetwork
	case drivers.BootLocal:
		src = firmware.BootLocal
	default:
		return &drivers.Error{Op: drivers.OpBootSourceSet, Slot: b.slot, Err: drivers.ErrRefused,
			Cause: fmt.Errorf("boot source %q is not network or local", string(s))}
	}
	return b.dev.write(ctx, drivers.OpBootSourceSet, b.slot, firmware.RegNextBoot, src.Encode())
}

// BootSource reads the next-boot register. A source the drivers do not
// name (usb, a recovery boot set by hand) is reported as ErrRefused with
// the register's value in the cause.
func (b *BMC) BootSource(ctx context.Context) (drivers.BootSource, error) {
	var src firmware.BootSource
	err := b.dev.read(ctx, drivers.OpBootSourceRead, b.slot, firmware.RegNextBoot, func(p []byte) (err error) {
		src, err = firmware.DecodeBootSource(p)
		return err
	})
	if err != nil {
		return "", err
	}
	switch src {
	case firmware.BootNetwork:
		return drivers.BootNetwork, nil
	case firmware.BootLocal:
		return drivers.BootLocal, nil
	}
	return "", &drivers.Error{Op: drivers.OpBootSourceRead, Slot: b.slot, Err: drivers.ErrRefused,
		Cause: fmt.Errorf("the next boot source is %s, which the control plane does not drive", src)}
}
