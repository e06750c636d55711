package smbus

import (
	"context"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
)

// The BMC's side of the A/B image update (firmware/imageregs.go), for
// firmware.Update. A refusal by the device fails with drivers.ErrRefused
// wrapping a *firmware.StatusError, so errors.Is also matches
// firmware.ErrAntiRollback, firmware.ErrDigestMismatch, … .

var (
	_ firmware.ImageDevice = (*BMC)(nil)
	_ firmware.Unit        = (*BMC)(nil)
)

// BeginImage starts loading an image into the inactive slot.
func (b *BMC) BeginImage(ctx context.Context, ib firmware.ImageBegin) error {
	return b.dev.writeImage(ctx, OpImageWrite, b.slot, firmware.RegImageBegin, ib.Encode())
}

// WriteImage writes one chunk (1..firmware.ImageChunkLen bytes) of the
// image at offset; a longer or empty chunk is refused before anything is
// sent.
func (b *BMC) WriteImage(ctx context.Context, offset uint32, chunk []byte) error {
	p := firmware.ImageData{Offset: offset, Data: chunk}.Encode()
	if _, err := firmware.DecodeImageData(p); err != nil {
		return &drivers.Error{Op: OpImageWrite, Slot: b.slot, Err: drivers.ErrRefused, Cause: err}
	}
	return b.dev.writeImage(ctx, OpImageWrite, b.slot, firmware.RegImageData, p)
}

// VerifyImage has the device compare the SHA-256 of the image it received
// with digest.
func (b *BMC) VerifyImage(ctx context.Context, digest firmware.ImageDigest) error {
	return b.dev.writeImage(ctx, OpImageWrite, b.slot, firmware.RegImageVerify, digest.Encode())
}

// ImageCommand sends switch, confirm or rollback.
func (b *BMC) ImageCommand(ctx context.Context, c firmware.ImageCommand) error {
	if _, err := firmware.DecodeImageCommand(c.Encode()); err != nil {
		return &drivers.Error{Op: OpImageWrite, Slot: b.slot, Err: drivers.ErrRefused, Cause: err}
	}
	return b.dev.writeImage(ctx, OpImageWrite, b.slot, firmware.RegImageCommand, c.Encode())
}
