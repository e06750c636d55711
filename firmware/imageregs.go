package firmware

import (
	"errors"
	"fmt"
)

// # A/B image updates
//
// A BMC keeps two firmware image slots, A and B (RegImageSlots). It runs
// the active one; the other, inactive, slot takes an update:
//
//  1. RegImageBegin (size, security version, version): the device refuses a
//     security version below its anti-rollback counter (StatusAntiRollback),
//     a size of 0 or beyond its slot (StatusSize), and a begin while a
//     switched image waits for its trial or is on trial (StatusState).
//     Otherwise it erases the inactive slot, which becomes ImageLoading.
//  2. RegImageData, repeated: ImageChunkLen bytes at most at an offset.
//     Chunks may come in any order and again (a retried chunk is harmless);
//     one that ends beyond the size is refused (StatusSize).
//  3. RegImageVerify (SHA-256): the device hashes the size bytes it holds;
//     on a match the slot becomes ImageStaged, else ImageBad
//     (StatusDigest) and the update starts over at step 1.
//  4. RegImageCommand ImageSwitch: the staged slot becomes ImageTrial and
//     the slot to boot next (ImageSlots.Next).
//  5. The unit reboots (power cycle): the device boots the trial slot,
//     which becomes active, still ImageTrial.
//  6. RegImageCommand ImageConfirm (after a health check): the active
//     trial slot becomes ImageGood, and the anti-rollback counter rises to
//     its security version. ImageRollback instead marks the trial (or a
//     switch not yet booted) ImageBad and makes the other, confirmed, slot
//     active and next at once. A boot that ends before the confirm (power
//     off, power loss, another reboot) does the same at the next boot.
//
// Nothing happens to the active slot before step 5, so power lost during
// steps 1–4 leaves the device on its old image; the update starts over.
//
// A device that refuses an image write (one whose frame it received
// intact) NAKs it and records why in RegImageStatus: the register, a
// StatusCode and the PEC byte of the refused frame, so a master that got a
// NAK tells a refusal (retrying will not help) from a frame lost on the
// wire (the status does not name its frame). Reading RegImageStatus clears
// it; an accepted image write records StatusAccepted.

// ImageChunkLen is the most image bytes one RegImageData write carries:
// the block (MaxBlock) less the offset and the length byte.
const ImageChunkLen = MaxBlock - 5

// ImageBegin is RegImageBegin, 14 bytes: the image's size in bytes
// (uint32, not 0), its security version (uint32) and its version (major,
// minor, patch, uint16 each, as in RegFirmwareVersion). The device keeps
// the version with the slot and reports it in RegFirmwareVersion while
// the slot is active, as firmware that reads its own version from the
// image header would.
type ImageBegin struct {
	Size            uint32
	SecurityVersion uint32
	Version         FirmwareVersion
}

// Encode gives the 14-byte payload.
func (b ImageBegin) Encode() []byte {
	p := le.AppendUint32(nil, b.Size)
	p = le.AppendUint32(p, b.SecurityVersion)
	return append(p, b.Version.Encode()...)
}

// DecodeImageBegin decodes RegImageBegin.
func DecodeImageBegin(p []byte) (ImageBegin, error) {
	if err := need(RegImageBegin, p); err != nil {
		return ImageBegin{}, err
	}
	b := ImageBegin{Size: le.Uint32(p), SecurityVersion: le.Uint32(p[4:]),
		Version: FirmwareVersion{le.Uint16(p[8:]), le.Uint16(p[10:]), le.Uint16(p[12:])}}
	if b.Size == 0 {
		return ImageBegin{}, frameErr(RegImageBegin, ErrValue, "image size 0")
	}
	return b, nil
}

// ImageData is RegImageData, 32 bytes: the offset of the chunk in the
// image (uint32), its length (1 byte, 1..ImageChunkLen), then the chunk,
// padded with zeros to ImageChunkLen bytes.
type ImageData struct {
	Offset uint32
	Data   []byte
}

// Encode gives the 32-byte payload. A chunk longer than ImageChunkLen
// gives a payload whose length byte the device refuses.
func (d ImageData) Encode() []byte {
	p := le.AppendUint32(make([]byte, 0, 5+ImageChunkLen), d.Offset)
	p = append(p, byte(len(d.Data)))
	n := min(len(d.Data), ImageChunkLen)
	p = append(p, d.Data[:n]...)
	return append(p, make([]byte, ImageChunkLen-n)...)
}

// DecodeImageData decodes RegImageData; Data aliases p.
func DecodeImageData(p []byte) (ImageData, error) {
	if err := need(RegImageData, p); err != nil {
		return ImageData{}, err
	}
	n := int(p[4])
	if n < 1 || n > ImageChunkLen {
		return ImageData{}, frameErr(RegImageData, ErrValue, "chunk length %d is not in 1..%d", n, ImageChunkLen)
	}
	for _, b := range p[5+n:] {
		if b != 0 {
			return ImageData{}, frameErr(RegImageData, ErrValue, "padding after the chunk is not zero")
		}
	}
	return ImageData{Offset: le.Uint32(p), Data: p[5 : 5+n]}, nil
}

// ImageDigest is RegImageVerify: the SHA-256 of the image, 32 bytes.
type ImageDigest [32]byte

// Encode gives the 32-byte payload.
func (d ImageDigest) Encode() []byte { return d[:] }

// DecodeImageDigest decodes RegImageVerify.
func DecodeImageDigest(p []byte) (ImageDigest, error) {
	if err := need(RegImageVerify, p); err != nil {
		return ImageDigest{}, err
	}
	return ImageDigest(p), nil
}

// ImageCommand is RegImageCommand: one byte.
type ImageCommand uint8

const (
	// ImageSwitch boots the staged inactive slot next, on trial.
	ImageSwitch ImageCommand = 0
	// ImageConfirm confirms the active trial slot and raises the
	// anti-rollback counter to its security version.
	ImageConfirm ImageCommand = 1
	// ImageRollback rejects the trial (booted or not) and returns to the
	// confirmed slot.
	ImageRollback ImageCommand = 2
)

var imageCommandNames = [...]string{"switch", "confirm", "rollback"}

func (c ImageCommand) String() string {
	if int(c) < len(imageCommandNames) {
		return imageCommandNames[c]
	}
	return fmt.Sprintf("unknown(%d)", uint8(c))
}

// Encode gives the 1-byte payload.
func (c ImageCommand) Encode() []byte { return []byte{byte(c)} }

// DecodeImageCommand decodes RegImageCommand.
func DecodeImageCommand(p []byte) (ImageCommand, error) {
	v, err := enum(RegImageCommand, p, len(imageCommandNames), "image command")
	return ImageCommand(v), err
}

// StatusCode is the outcome of an image write, in RegImageStatus.
type StatusCode uint8

const (
	// StatusNone: nothing recorded since the status was last read.
	StatusNone StatusCode = 0
	// StatusAccepted: the write was accepted.
	StatusAccepted StatusCode = 1
	// StatusAntiRollback: the image's security version is below the
	// anti-rollback counter.
	StatusAntiRollback StatusCode = 2
	// StatusSize: the image does not fit the slot, or a chunk ends beyond
	// the image.
	StatusSize StatusCode = 3
	// StatusState: not possible in the slots' present state (no image
	// loading, nothing staged, no trial to confirm, a trial pending).
	StatusState StatusCode = 4
	// StatusDigest: the image received does not have the digest given.
	StatusDigest StatusCode = 5
	// StatusValue: a field of the write holds a value the device refuses.
	StatusValue StatusCode = 6
)

var statusNames = [...]string{"none", "accepted", "anti-rollback", "size", "state", "digest", "value"}

func (c StatusCode) String() string {
	if int(c) < len(statusNames) {
		return statusNames[c]
	}
	return fmt.Sprintf("unknown(%d)", uint8(c))
}

// Refused reports whether the code is a refusal.
func (c StatusCode) Refused() bool { return c > StatusAccepted }

// The refusals of image writes. A *StatusError wraps one of them (ErrValue
// for StatusValue).
var (
	ErrAntiRollback   = errors.New("firmware: security version below the anti-rollback counter")
	ErrImageSize      = errors.New("firmware: image does not fit")
	ErrImageState     = errors.New("firmware: not possible in the image slots' state")
	ErrDigestMismatch = errors.New("firmware: image digest mismatch")
)

// Err is the sentinel of a refusal, nil for StatusNone and StatusAccepted.
func (c StatusCode) Err() error {
	switch c {
	case StatusAntiRollback:
		return ErrAntiRollback
	case StatusSize:
		return ErrImageSize
	case StatusState:
		return ErrImageState
	case StatusDigest:
		return ErrDigestMismatch
	case StatusValue:
		return ErrValue
	}
	return nil
}

// ImageStatus is RegImageStatus, 3 bytes: the register of the last image
// write the device received intact, its outcome, and the PEC byte of its
// frame (which tells a master whose frame it was).
type ImageStatus struct {
	Reg  Register
	Code StatusCode
	PEC  byte
}

// Encode gives the 3-byte payload.
func (s ImageStatus) Encode() []byte { return []byte{byte(s.Reg), byte(s.Code), s.PEC} }

// DecodeImageStatus decodes RegImageStatus.
func DecodeImageStatus(p []byte) (ImageStatus, error) {
	if err := need(RegImageStatus, p); err != nil {
		return ImageStatus{}, err
	}
	if int(p[1]) >= len(statusNames) {
		return ImageStatus{}, frameErr(RegImageStatus, ErrValue, "status %d is not defined", p[1])
	}
	return ImageStatus{Reg: Register(p[0]), Code: StatusCode(p[1]), PEC: p[2]}, nil
}

// About reports whether the status is about the write frame w (as
// EncodeWrite made it).
func (s ImageStatus) About(w []byte) bool {
	return len(w) > 0 && s.Code != StatusNone && byte(s.Reg) == w[0] && s.PEC == w[len(w)-1]
}

// StatusError is an image write the device refused.
type StatusError struct {
	Reg  Register
	Code StatusCode
}

func (e *StatusError) Error() string {
	if err := e.Code.Err(); err != nil {
		return fmt.Sprintf("%v: device refused register %v (status %v)", err, e.Reg, e.Code)
	}
	return fmt.Sprintf("firmware: device refused register %v (status %v)", e.Reg, e.Code)
}

// Unwrap gives the refusal's sentinel.
func (e *StatusError) Unwrap() error { return e.Code.Err() }
