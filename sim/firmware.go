package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
)

// FirmwareConfig configures the emulated firmware of a FirmwareBus.
type FirmwareConfig struct {
	// Protocol is the protocol version every device reports (default
	// firmware.ProtocolVersion); another value emulates firmware that a
	// driver does not speak. The devices still answer the registers of
	// firmware.ProtocolVersion.
	Protocol uint16
	// Version is the firmware version every device reports (default
	// 1.0.0), until a BMC runs an image loaded through the image registers:
	// it then reports that image's version (RegImageBegin).
	Version firmware.FirmwareVersion
	// Timeout bounds one transaction, as a Linux I2C adapter's timeout does
	// (default 1s): a hung BMC makes Tx fail with firmware.ErrBusTimeout
	// after it. TxContext also stops when its context is done.
	Timeout time.Duration
	// SlotCapacity is the size of each A/B image slot in bytes (default
	// 1 MiB, at most firmware.MaxImageSize); a larger image is refused.
	SlotCapacity uint32
}

// WireFault is a fault on the wire between the bus master and one address.
type WireFault string

const (
	// WireCorruptPEC flips the PEC byte: of the device's answer to a read,
	// or of a write on its way to the device (which then NAKs it and
	// discards it).
	WireCorruptPEC WireFault = "corrupt-pec"
	// WireShortRead makes the device answer a read with one data byte
	// fewer than the register holds (its count says so, its PEC covers
	// what it sent); the master reads 0xff for the rest. Writes pass.
	WireShortRead WireFault = "short-read"
	// WireNAK makes the device not acknowledge: Tx fails with
	// firmware.ErrNAK and a write has no effect.
	WireNAK WireFault = "nak"
)

// FaultWire counts the wire faults injected with FirmwareBus.InjectWire.
const FaultWire FaultKind = "smbus-wire"

// Always, as a count of InjectWire, keeps a fault until ClearWire.
const Always = -1

// FirmwareBus is the rack's backplane SMBus as a bus master sees it: a
// periph.io i2c.Bus on which the BMC of slot s answers at
// firmware.BMCAddr(s) and the RMC at firmware.RMCAddr, all speaking the
// protocol of package firmware. The devices are backed by the rack's model
// (power, boot stages, sensors, presence), so a rack can be driven through
// this bus and through Backplane at the same time. Transactions share the
// simulated bus with Backplane's calls: the same latency, one at a time,
// and the same BMC faults (hung, slow, unreachable, stale BMCs, pulled
// power). On top of those, InjectWire corrupts frames per address.
//
// Each device also keeps firmware state the rack's model does not have:
// the next boot source (writable), the A/B image slots with their images
// and the anti-rollback counter, updated through the image registers
// (firmware/imageregs.go). It belongs to the bus, not to the unit: a unit
// swapped in a slot keeps its predecessor's.
//
// A boot, for the A/B slots, is the unit's main power coming on, whatever
// turned it on; the device notices it at its next transaction (a power
// command on this bus at once). At a boot, a slot switched to on trial
// becomes active. When a boot on trial ends unconfirmed (the unit is off
// or has booted again, because of a power command, a power cycle or pulled
// slot power) the device returns to the confirmed slot and marks the trial
// bad. Everything before the switch touches only the inactive slot, so
// power lost while an image is written leaves the device on its old one.
// BreakTrial makes a trial image fail its health check.
//
// TxContext is Tx that also gives up when its context is done; a driver
// that finds it on its bus uses it instead of abandoning a Tx in flight.
type FirmwareBus struct {
	r   *Rack
	cfg FirmwareConfig

	mu     sync.Mutex
	faults map[uint16]map[WireFault]int
	txs    map[uint16]int
	bmcs   []*bmcFirmware // slot s is bmcs[s-1]
}

var _ i2c.Bus = (*FirmwareBus)(nil)

// bmcFirmware is the state a BMC's firmware keeps itself.
type bmcFirmware struct {
	next     firmware.BootSource
	images   firmware.ImageSlots
	rollback firmware.AntiRollback
	data     [2][]byte // the images' bytes, by firmware.ImageSlot
	// versions are the images' versions, by firmware.ImageSlot (from
	// RegImageBegin; slot A starts with FirmwareConfig.Version).
	versions [2]firmware.FirmwareVersion
	status   firmware.ImageStatus
	// booted: the unit is on and the device saw that boot, at bootAt
	// (the unit's onAt then).
	booted bool
	bootAt time.Time
	// broken: the next trial image does not come up (BreakTrial).
	broken bool
}

// slot is one slot's image state.
func (fw *bmcFirmware) slot(s firmware.ImageSlot) *firmware.Image {
	if s == firmware.SlotB {
		return &fw.images.B
	}
	return &fw.images.A
}

func other(s firmware.ImageSlot) firmware.ImageSlot { return 1 - s }

// FirmwareBus returns the rack's SMBus with emulated firmware. The rack
// must have at most firmware.MaxSlots slots. Each call gives a bus with
// its own firmware state and wire faults; call it once per rack.
func (r *Rack) FirmwareBus(cfg FirmwareConfig) (*FirmwareBus, error) {
	if len(r.units) > firmware.MaxSlots {
		return nil, fmt.Errorf("sim: firmware bus: %d slots, the protocol addresses at most %d", len(r.units), firmware.MaxSlots)
	}
	if cfg.Protocol == 0 {
		cfg.Protocol = firmware.ProtocolVersion
	}
	if cfg.Version == (firmware.FirmwareVersion{}) {
		cfg.Version = firmware.FirmwareVersion{Major: 1}
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("sim: firmware bus: negative timeout %v", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.SlotCapacity == 0 {
		cfg.SlotCapacity = 1 << 20
	}
	if cfg.SlotCapacity > firmware.MaxImageSize {
		return nil, fmt.Errorf("sim: firmware bus: slot capacity %d is beyond %d", cfg.SlotCapacity, firmware.MaxImageSize)
	}
	b := &FirmwareBus{r: r, cfg: cfg, faults: map[uint16]map[WireFault]int{}, txs: map[uint16]int{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range r.units {
		b.bmcs = append(b.bmcs, &bmcFirmware{
			next: firmware.BootNetwork,
			images: firmware.ImageSlots{
				Active: firmware.SlotA, Next: firmware.SlotA,
				A: firmware.Image{State: firmware.ImageGood, SecurityVersion: 1},
			},
			rollback: 1,
			versions: [2]firmware.FirmwareVersion{cfg.Version},
			booted:   u.on,
			bootAt:   u.onAt,
		})
	}
	return b, nil
}

func (b *FirmwareBus) String() string { return "sim-smbus" }

// SetSpeed accepts any speed; the simulated bus's timing is BusLatency.
func (b *FirmwareBus) SetSpeed(physic.Frequency) error { return nil }

// Tx runs one transaction: a Block Write (r empty) or a Block Read (w is
// the command code) at addr, bounded by FirmwareConfig.Timeout.
func (b *FirmwareBus) Tx(addr uint16, w, r []byte) error {
	return b.TxContext(context.Background(), addr, w, r)
}

// TxContext is Tx that also stops when ctx is done (returning an error
// that wraps ctx.Err()).
func (b *FirmwareBus) TxContext(ctx context.Context, addr uint16, w, r []byte) error {
	tctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	slot := firmware.SlotOf(addr)
	if (slot == 0 && addr != firmware.RMCAddr) || slot > len(b.r.units) {
		return fmt.Errorf("sim: smbus 0x%02x: %w", addr, firmware.ErrNAK)
	}
	b.mu.Lock()
	b.txs[addr]++
	b.mu.Unlock()
	err := b.r.transact(tctx, "smbus", slot, slot, func(now time.Time) error {
		return b.handleLocked(now, addr, slot, w, r)
	})
	var de *drivers.Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &de):
		return err // the device's own answer (a NAK)
	case errors.Is(err, drivers.ErrUnreachable):
		return fmt.Errorf("sim: smbus 0x%02x: %w (%v)", addr, firmware.ErrNAK, de.Cause)
	case ctx.Err() != nil:
		return fmt.Errorf("sim: smbus 0x%02x: %w", addr, ctx.Err())
	default:
		return fmt.Errorf("sim: smbus 0x%02x: %w after %v", addr, firmware.ErrBusTimeout, b.cfg.Timeout)
	}
}

// Transactions counts the transactions addressed to addr so far.
func (b *FirmwareBus) Transactions(addr uint16) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.txs[addr]
}

// InjectWire makes the next count transactions with addr suffer fault f
// (count Always: until ClearWire). A NAK takes precedence over the other
// faults; a short read consumes its count on reads only.
func (b *FirmwareBus) InjectWire(addr uint16, f WireFault, count int) error {
	switch f {
	case WireCorruptPEC, WireShortRead, WireNAK:
	default:
		return fmt.Errorf("sim: inject wire fault: unknown fault %q", f)
	}
	if count == 0 || count < Always {
		return fmt.Errorf("sim: inject wire fault: count %d is not positive or Always", count)
	}
	b.mu.Lock()
	if b.faults[addr] == nil {
		b.faults[addr] = map[WireFault]int{}
	}
	b.faults[addr][f] = count
	b.mu.Unlock()
	b.r.mu.Lock()
	b.r.injectedLocked(FaultWire, "addr", fmt.Sprintf("0x%02x", addr), "fault", string(f), "count", count)
	b.r.mu.Unlock()
	return nil
}

// ClearWire clears the wire faults of addr.
func (b *FirmwareBus) ClearWire(addr uint16) {
	b.mu.Lock()
	delete(b.faults, addr)
	b.mu.Unlock()
	b.r.mu.Lock()
	b.r.clearedLocked(FaultWire, "addr", fmt.Sprintf("0x%02x", addr))
	b.r.mu.Unlock()
}

// take consumes one use of the fault, if it is in force.
func (b *FirmwareBus) take(addr uint16, f WireFault) bool {
	n := b.faults[addr][f]
	switch {
	case n == 0:
		return false
	case n > 0:
		b.faults[addr][f] = n - 1
	}
	return true
}

// nak is the device's refusal of a frame.
func nak(addr uint16, why error) error {
	return fmt.Errorf("sim: smbus 0x%02x: %w: %w", addr, firmware.ErrNAK, why)
}

// handleLocked is the device at addr (slot 0: the RMC) handling one
// transaction; r.mu is held.
func (b *FirmwareBus) handleLocked(now time.Time, addr uint16, slot int, w, r []byte) error {
	read := len(r) > 0
	b.mu.Lock()
	nakNow := b.take(addr, WireNAK)
	corrupt := !nakNow && b.take(addr, WireCorruptPEC)
	short := !nakNow && read && b.take(addr, WireShortRead)
	b.mu.Unlock()
	if nakNow {
		return nak(addr, errors.New("injected"))
	}
	dev := firmware.BMC
	if slot == 0 {
		dev = firmware.RMC
	} else {
		b.observeLocked(slot)
	}
	if !read {
		if corrupt && len(w) > 0 {
			w = append([]byte(nil), w...)
			w[len(w)-1] ^= 0xff
		}
		reg, p, err := firmware.DecodeWrite(addr, w)
		if err != nil {
			return nak(addr, err)
		}
		if info, _ := firmware.Lookup(reg); info.Device&dev == 0 {
			return nak(addr, &firmware.FrameError{Reg: reg, Err: firmware.ErrUnknownRegister, Detail: "not on this device"})
		}
		return b.writeLocked(now, addr, slot, reg, p)
	}
	if len(w) != 1 {
		return nak(addr, fmt.Errorf("unsupported transaction: write %d bytes, read %d", len(w), len(r)))
	}
	reg := firmware.Register(w[0])
	info, ok := firmware.Lookup(reg)
	if !ok || info.Device&dev == 0 || info.Access&firmware.Read == 0 {
		return nak(addr, &firmware.FrameError{Reg: reg, Err: firmware.ErrUnknownRegister, Detail: "no such readable register on this device"})
	}
	p := b.readLocked(now, slot, reg)
	var resp []byte
	if short {
		p = p[:len(p)-1]
		resp = append([]byte{byte(len(p))}, p...)
		resp = append(resp, firmware.ReadPEC(addr, reg, p))
	} else {
		var err error
		if resp, err = firmware.EncodeReadResponse(addr, reg, p); err != nil {
			return nak(addr, err)
		}
	}
	if corrupt {
		resp[len(resp)-1] ^= 0xff
	}
	n := copy(r, resp)
	for i := n; i < len(r); i++ {
		r[i] = 0xff // nobody drives the bus: the pull-ups read as ones
	}
	return nil
}

// readLocked is the payload of a readable register of the device.
func (b *FirmwareBus) readLocked(now time.Time, slot int, reg firmware.Register) []byte {
	switch reg {
	case firmware.RegProtocolVersion:
		return firmware.EncodeProtocolVersion(b.cfg.Protocol)
	case firmware.RegFirmwareVersion:
		if slot == 0 {
			return b.cfg.Version.Encode()
		}
		b.mu.Lock()
		fw := b.bmcs[slot-1]
		v := fw.versions[fw.images.Active]
		b.mu.Unlock()
		return v.Encode() // the version of the image it runs
	case firmware.RegRackSensors:
		w := b.r.rackWattsLocked(now) + b.r.rmcRng.NormFloat64()*b.r.cfg.Power.NoiseWatts
		return firmware.RackSensorsOf(drivers.RackReadings{
			InletCelsius: b.r.inlet + b.r.rmcRng.NormFloat64()*b.r.cfg.Thermal.NoiseCelsius,
			Watts:        max(w, 0),
		}).Encode()
	case firmware.RegPresence:
		var p firmware.Presence
		for i, u := range b.r.units {
			if u.present {
				p = p.With(i + 1)
			}
		}
		return p.Encode()
	}
	u := b.r.units[slot-1]
	b.mu.Lock()
	fw := *b.bmcs[slot-1]
	b.mu.Unlock()
	switch reg {
	case firmware.RegPowerState:
		p := powerOf(u.on)
		if u.stale != nil {
			p = u.stale.power
		}
		s, _ := firmware.PowerStateOf(p)
		return s.Encode()
	case firmware.RegBootStage:
		var st drivers.BootStage
		if u.stale != nil {
			st = u.stale.stage
		} else {
			st, _ = b.r.stageAt(u, now)
		}
		if fw.broken && fw.booted && fw.slot(fw.images.Active).State == firmware.ImageTrial && st != drivers.StageOff {
			st = drivers.StageFirmware // the trial image does not come up
		}
		s, _ := firmware.BootStageOf(st)
		return s.Encode()
	case firmware.RegSensors:
		var rd drivers.Readings
		if u.stale != nil {
			rd = u.stale.readings
		} else {
			rd = b.r.readingsLocked(u, now)
		}
		return firmware.SensorsOf(rd).Encode()
	case firmware.RegNextBoot:
		return fw.next.Encode()
	case firmware.RegImageSlots:
		return fw.images.Encode()
	case firmware.RegAntiRollback:
		return fw.rollback.Encode()
	case firmware.RegImageStatus:
		b.mu.Lock()
		b.bmcs[slot-1].status = firmware.ImageStatus{}
		b.mu.Unlock()
		return fw.status.Encode()
	}
	panic(fmt.Sprintf("sim: firmware: readable register %v has no handler", reg))
}

// writeLocked applies a write to a writable register of the BMC of slot;
// a value the register does not accept is NAKed.
func (b *FirmwareBus) writeLocked(now time.Time, addr uint16, slot int, reg firmware.Register, p []byte) error {
	switch reg {
	case firmware.RegPowerControl:
		cmd, err := firmware.DecodePowerCommand(p)
		if err != nil {
			return nak(addr, err)
		}
		switch cmd {
		case firmware.PowerCmdOn:
			b.r.powerOnLocked(slot, now)
			b.r.units[slot-1].resume = false
		case firmware.PowerCmdOff:
			b.r.powerOffLocked(slot, now, false)
			b.r.units[slot-1].resume = false
		case firmware.PowerCmdCycle:
			b.r.powerOffLocked(slot, now, false)
			b.observeLocked(slot)
			b.r.powerOnLocked(slot, now)
		}
		b.observeLocked(slot)
		return nil
	case firmware.RegNextBoot:
		src, err := firmware.DecodeBootSource(p)
		if err != nil {
			return nak(addr, err)
		}
		b.mu.Lock()
		b.bmcs[slot-1].next = src
		b.mu.Unlock()
		return nil
	case firmware.RegImageBegin, firmware.RegImageData, firmware.RegImageVerify, firmware.RegImageCommand:
		b.mu.Lock()
		defer b.mu.Unlock()
		fw := b.bmcs[slot-1]
		code := b.imageWriteLocked(fw, reg, p)
		fw.status = firmware.ImageStatus{Reg: reg, Code: code, PEC: firmware.WritePEC(addr, reg, p)}
		if code.Refused() {
			return nak(addr, &firmware.StatusError{Reg: reg, Code: code})
		}
		return nil
	}
	return nak(addr, &firmware.FrameError{Reg: reg, Err: firmware.ErrAccess, Detail: "not writable on this device"})
}
