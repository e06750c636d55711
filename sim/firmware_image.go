package sim

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/racklet/rack/firmware"
)

// FaultBadImage counts the trial images made to fail with BreakTrial.
const FaultBadImage FaultKind = "bad-image"

// BreakTrial makes the next image the BMC of slot boots on trial fail to
// come up: while it runs, the BMC reports boot stage firmware, so a
// health check waiting for ready fails. The fault ends with that trial.
func (b *FirmwareBus) BreakTrial(slot int) error {
	if slot < 1 || slot > len(b.bmcs) {
		return fmt.Errorf("sim: break trial: slot %d is not in 1..%d", slot, len(b.bmcs))
	}
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	b.mu.Lock()
	b.bmcs[slot-1].broken = true
	b.mu.Unlock()
	b.r.injectedLocked(FaultBadImage, "slot", slot)
	return nil
}

// Image is a copy of the image the BMC of slot holds in image slot s, as
// far as it was written (nil for the image it started with).
func (b *FirmwareBus) Image(slot int, s firmware.ImageSlot) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if slot < 1 || slot > len(b.bmcs) || s > firmware.SlotB {
		return nil
	}
	return bytes.Clone(b.bmcs[slot-1].data[s])
}

// observeLocked brings the A/B state of the BMC of slot up to the unit's
// power: a boot the device saw that has ended (the unit off, or on since
// another time) ends its trial; a new boot starts one. r.mu is held.
func (b *FirmwareBus) observeLocked(slot int) {
	u := b.r.units[slot-1]
	b.mu.Lock()
	defer b.mu.Unlock()
	fw := b.bmcs[slot-1]
	if fw.booted && (!u.on || !u.onAt.Equal(fw.bootAt)) {
		fw.booted = false
		if act := fw.slot(fw.images.Active); act.State == firmware.ImageTrial {
			// The trial boot ended unconfirmed: back to the confirmed slot.
			act.State = firmware.ImageBad
			fw.images.Active = other(fw.images.Active)
			fw.images.Next = fw.images.Active
			fw.broken = false
		}
	}
	if u.on && !fw.booted {
		fw.booted, fw.bootAt = true, u.onAt
		next := fw.slot(fw.images.Next)
		if fw.images.Next != fw.images.Active && next.State == firmware.ImageTrial {
			if next.SecurityVersion < uint32(fw.rollback) {
				next.State = firmware.ImageBad
				fw.images.Next = fw.images.Active
			} else {
				fw.images.Active = fw.images.Next
			}
		}
	}
}

// imageWriteLocked applies an image write (its frame intact) to fw and
// says how it went; b.mu is held.
func (b *FirmwareBus) imageWriteLocked(fw *bmcFirmware, reg firmware.Register, p []byte) firmware.StatusCode {
	act := fw.images.Active
	inact := other(act)
	in := fw.slot(inact)
	// A switched image waiting for its boot, or on trial.
	pending := fw.images.Next != act || fw.slot(act).State == firmware.ImageTrial
	switch reg {
	case firmware.RegImageBegin:
		ib, err := firmware.DecodeImageBegin(p)
		switch {
		case err != nil:
			return firmware.StatusValue
		case pending:
			return firmware.StatusState
		case ib.SecurityVersion < uint32(fw.rollback):
			return firmware.StatusAntiRollback
		case ib.Size > b.cfg.SlotCapacity:
			return firmware.StatusSize
		}
		*in = firmware.Image{State: firmware.ImageLoading, SecurityVersion: ib.SecurityVersion}
		fw.data[inact] = make([]byte, ib.Size)
		fw.versions[inact] = ib.Version
		return firmware.StatusAccepted
	case firmware.RegImageData:
		d, err := firmware.DecodeImageData(p)
		switch {
		case err != nil:
			return firmware.StatusValue
		case in.State != firmware.ImageLoading:
			return firmware.StatusState
		case uint64(d.Offset)+uint64(len(d.Data)) > uint64(len(fw.data[inact])):
			return firmware.StatusSize
		}
		copy(fw.data[inact][d.Offset:], d.Data)
		return firmware.StatusAccepted
	case firmware.RegImageVerify:
		want, err := firmware.DecodeImageDigest(p)
		switch {
		case err != nil:
			return firmware.StatusValue
		case in.State != firmware.ImageLoading && in.State != firmware.ImageStaged:
			return firmware.StatusState
		case sha256.Sum256(fw.data[inact]) != want:
			in.State = firmware.ImageBad
			return firmware.StatusDigest
		}
		in.State = firmware.ImageStaged
		return firmware.StatusAccepted
	case firmware.RegImageCommand:
		cmd, err := firmware.DecodeImageCommand(p)
		if err != nil {
			return firmware.StatusValue
		}
		return fw.commandLocked(cmd)
	}
	return firmware.StatusValue
}

// commandLocked runs an image command.
func (fw *bmcFirmware) commandLocked(cmd firmware.ImageCommand) firmware.StatusCode {
	act := fw.images.Active
	inact := other(act)
	switch cmd {
	case firmware.ImageSwitch:
		in := fw.slot(inact)
		switch {
		case fw.images.Next == inact && in.State == firmware.ImageTrial:
			return firmware.StatusAccepted // switched already
		case in.State != firmware.ImageStaged || fw.slot(act).State == firmware.ImageTrial:
			return firmware.StatusState
		case in.SecurityVersion < uint32(fw.rollback):
			return firmware.StatusAntiRollback
		}
		in.State = firmware.ImageTrial
		fw.images.Next = inact
		return firmware.StatusAccepted
	case firmware.ImageConfirm:
		a := fw.slot(act)
		if a.State != firmware.ImageTrial || !fw.booted {
			return firmware.StatusState
		}
		a.State = firmware.ImageGood
		fw.rollback = max(fw.rollback, firmware.AntiRollback(a.SecurityVersion))
		fw.broken = false
		return firmware.StatusAccepted
	case firmware.ImageRollback:
		switch {
		case fw.slot(act).State == firmware.ImageTrial:
			fw.slot(act).State = firmware.ImageBad
			fw.images.Active = inact
			fw.images.Next = inact
		case fw.images.Next != act:
			fw.slot(fw.images.Next).State = firmware.ImageBad
			fw.images.Next = act
		default:
			return firmware.StatusState
		}
		fw.broken = false
		return firmware.StatusAccepted
	}
	return firmware.StatusValue
}
