// Package firmware defines the wire protocol between the control plane and
// the rack's microcontrollers — the BMC on each compute unit's HAT and the
// Rack Management Controller — and its register map. The SMBus driver
// (drivers/smbus) and the emulated firmware (sim) both use this one
// definition.
//
// # Transactions
//
// Every register is read with an SMBus Block Read and written with an SMBus
// Block Write, both with PEC, as the SMBus specification (2.0 and later)
// frames them:
//
//	Block Write: S addr+W | cmd | count | data[0..count) | PEC | P
//	Block Read:  S addr+W | cmd | Sr addr+R | count | data[0..count) | PEC | P
//
// The PEC is CRC-8 (polynomial 0x07, initial value 0) over every byte of the
// transaction, the address bytes with their R/W bit included (WritePEC,
// ReadPEC). A device that receives a write with a bad PEC, an unknown
// register, a wrong length or a value it does not accept NAKs it and
// discards it, so the write has no effect.
//
// Every register has a fixed payload length (Info.Len), so a master that
// cannot read a variable-length block (periph's i2c.Bus.Tx, Linux i2c-dev
// without I2C_M_RECV_LEN) reads exactly ReadLen(reg) bytes; the count byte
// is still checked against the register's length.
//
// # Encoding
//
// Multi-byte fields are little-endian (low byte first, as SMBus words are).
// Power is in milliwatts (uint32), temperatures in millidegrees Celsius
// (int32). Enumerations are one byte; an unknown value is an error.
//
// # Versions
//
// The register map is versioned by ProtocolVersion. Register 0x00
// (RegProtocolVersion, a uint16) is the same in every version, so a master
// reads it first and refuses a device whose version it does not speak.
// A later version may add registers; changing a register's number, length
// or encoding takes a new version.
package firmware

import (
	"fmt"
	"slices"
)

// ProtocolVersion is the version of the register map defined here.
const ProtocolVersion uint16 = 1

// MaxBlock is the largest SMBus 2.0 block (the count byte's limit).
const MaxBlock = 32

// Addresses on the backplane SMBus (7-bit). The RMC has a fixed address;
// the BMC of slot s answers at BMCBaseAddr+s-1. Both stay clear of the
// addresses SMBus reserves (0x00–0x07, 0x08 host, 0x0C alert response,
// 0x28/0x37 ACCESS.bus, 0x61 default device address, 0x78–0x7F).
const (
	RMCAddr     uint16 = 0x10
	BMCBaseAddr uint16 = 0x40
	// MaxSlots is the number of BMC addresses (0x40–0x5F), and the width
	// of the RMC's presence bitmap.
	MaxSlots = 32
)

// BMCAddr is the 7-bit address of the BMC of slot (1-based).
func BMCAddr(slot int) (uint16, error) {
	if slot < 1 || slot > MaxSlots {
		return 0, fmt.Errorf("firmware: slot %d is not in 1..%d", slot, MaxSlots)
	}
	return BMCBaseAddr + uint16(slot-1), nil
}

// SlotOf is the slot whose BMC answers at addr, or 0 if none does.
func SlotOf(addr uint16) int {
	if addr < BMCBaseAddr || addr >= BMCBaseAddr+MaxSlots {
		return 0
	}
	return int(addr-BMCBaseAddr) + 1
}

// Register is an SMBus command code: the number of a register.
type Register uint8

// The registers of protocol version 1.
const (
	// RegProtocolVersion (R, 2 bytes): the protocol version, uint16. Same
	// number and encoding in every version.
	RegProtocolVersion Register = 0x00
	// RegFirmwareVersion (R, 6 bytes): the running firmware's version,
	// major, minor, patch, each uint16 (FirmwareVersion).
	RegFirmwareVersion Register = 0x01
	// RegPowerState (R, 1 byte): the unit's main power (PowerState).
	RegPowerState Register = 0x02
	// RegPowerControl (W, 1 byte): switch main power (PowerCommand).
	RegPowerControl Register = 0x03
	// RegBootStage (R, 1 byte): the unit's boot stage (BootStage).
	RegBootStage Register = 0x04
	// RegNextBoot (R/W, 1 byte): where the unit boots from next
	// (BootSource).
	RegNextBoot Register = 0x05
	// RegSensors (R, 8 bytes): power draw and SoC temperature (Sensors).
	RegSensors Register = 0x06
	// RegImageSlots (R, 12 bytes): the A/B firmware image slots (ImageSlots).
	RegImageSlots Register = 0x07
	// RegAntiRollback (R, 4 bytes): the anti-rollback counter, the lowest
	// image security version the device boots, uint32 (AntiRollback).
	RegAntiRollback Register = 0x08
	// RegImageBegin (W, 14 bytes): start loading an image into the
	// inactive slot: its size, security version and version (ImageBegin).
	// See imageregs.go for the update sequence.
	RegImageBegin Register = 0x09
	// RegImageData (W, 32 bytes): one chunk of the image at an offset
	// (ImageData).
	RegImageData Register = 0x0a
	// RegImageVerify (W, 32 bytes): the image's SHA-256; the device hashes
	// what it received and compares (ImageDigest).
	RegImageVerify Register = 0x0b
	// RegImageCommand (W, 1 byte): switch, confirm or roll back
	// (ImageCommand).
	RegImageCommand Register = 0x0c
	// RegImageStatus (R, 3 bytes): why the device refused the last image
	// write; cleared by reading (ImageStatus).
	RegImageStatus Register = 0x0d

	// RegRackSensors (R, 8 bytes, RMC): inlet temperature and rack power
	// (RackSensors).
	RegRackSensors Register = 0x20
	// RegPresence (R, 4 bytes, RMC): the slots' presence pins (Presence).
	RegPresence Register = 0x21
)

// Access says whether a register is read, written or both.
type Access uint8

const (
	Read      Access = 1
	Write     Access = 2
	ReadWrite        = Read | Write
)

// Device says which controllers implement a register.
type Device uint8

const (
	BMC     Device = 1
	RMC     Device = 2
	Devices        = BMC | RMC
)

// Info describes one register.
type Info struct {
	Reg    Register
	Name   string
	Len    int // payload length in bytes, fixed
	Access Access
	Device Device
}

// registers is the register map of ProtocolVersion, by number.
var registers = []Info{
	{RegProtocolVersion, "protocol-version", 2, Read, Devices},
	{RegFirmwareVersion, "firmware-version", 6, Read, Devices},
	{RegPowerState, "power-state", 1, Read, BMC},
	{RegPowerControl, "power-control", 1, Write, BMC},
	{RegBootStage, "boot-stage", 1, Read, BMC},
	{RegNextBoot, "next-boot", 1, ReadWrite, BMC},
	{RegSensors, "sensors", 8, Read, BMC},
	{RegImageSlots, "image-slots", 12, Read, BMC},
	{RegAntiRollback, "anti-rollback", 4, Read, BMC},
	{RegImageBegin, "image-begin", 14, Write, BMC},
	{RegImageData, "image-data", 32, Write, BMC},
	{RegImageVerify, "image-verify", 32, Write, BMC},
	{RegImageCommand, "image-command", 1, Write, BMC},
	{RegImageStatus, "image-status", 3, Read, BMC},
	{RegRackSensors, "rack-sensors", 8, Read, RMC},
	{RegPresence, "presence", 4, Read, RMC},
}

// Lookup returns the register's description; ok is false for a number the
// protocol does not define.
func Lookup(reg Register) (info Info, ok bool) {
	i, found := slices.BinarySearchFunc(registers, reg, func(in Info, r Register) int { return int(in.Reg) - int(r) })
	if !found {
		return Info{}, false
	}
	return registers[i], true
}

// Registers lists the register map in register order.
func Registers() []Info { return slices.Clone(registers) }

// ReadLen is the number of bytes a master reads for a Block Read of reg:
// count, payload, PEC. It is 0 for an unknown register.
func ReadLen(reg Register) int {
	info, ok := Lookup(reg)
	if !ok {
		return 0
	}
	return info.Len + 2
}

func (r Register) String() string {
	if info, ok := Lookup(r); ok {
		return fmt.Sprintf("0x%02x %s", uint8(r), info.Name)
	}
	return fmt.Sprintf("0x%02x", uint8(r))
}
