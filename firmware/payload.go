package firmware

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/racklet/rack/drivers"
)

// Payload encodings, one pair of Encode method and Decode function per
// register. Encode gives exactly Info.Len bytes; Decode checks the length
// (ErrLength) and every enumerated field (ErrValue).

var le = binary.LittleEndian

func need(reg Register, p []byte) error {
	info, ok := Lookup(reg)
	if !ok {
		return frameErr(reg, ErrUnknownRegister, "protocol v%d has no such register", ProtocolVersion)
	}
	return checkLen(info, len(p))
}

// EncodeProtocolVersion encodes RegProtocolVersion: uint16.
func EncodeProtocolVersion(v uint16) []byte { return le.AppendUint16(nil, v) }

// DecodeProtocolVersion decodes RegProtocolVersion.
func DecodeProtocolVersion(p []byte) (uint16, error) {
	if err := need(RegProtocolVersion, p); err != nil {
		return 0, err
	}
	return le.Uint16(p), nil
}

// FirmwareVersion is RegFirmwareVersion: major, minor, patch, each uint16.
type FirmwareVersion struct {
	Major, Minor, Patch uint16
}

func (v FirmwareVersion) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Encode gives the 6-byte payload.
func (v FirmwareVersion) Encode() []byte {
	p := le.AppendUint16(nil, v.Major)
	p = le.AppendUint16(p, v.Minor)
	return le.AppendUint16(p, v.Patch)
}

// DecodeFirmwareVersion decodes RegFirmwareVersion.
func DecodeFirmwareVersion(p []byte) (FirmwareVersion, error) {
	if err := need(RegFirmwareVersion, p); err != nil {
		return FirmwareVersion{}, err
	}
	return FirmwareVersion{le.Uint16(p), le.Uint16(p[2:]), le.Uint16(p[4:])}, nil
}

// enum decodes a one-byte enumeration with values 0..n-1.
func enum(reg Register, p []byte, n int, what string) (uint8, error) {
	if err := need(reg, p); err != nil {
		return 0, err
	}
	if int(p[0]) >= n {
		return 0, frameErr(reg, ErrValue, "%s %d is not defined", what, p[0])
	}
	return p[0], nil
}

// PowerState is RegPowerState: one byte.
type PowerState uint8

const (
	PowerOff PowerState = 0
	PowerOn  PowerState = 1
)

// Encode gives the 1-byte payload.
func (s PowerState) Encode() []byte { return []byte{byte(s)} }

// Driver is the state as the drivers package names it.
func (s PowerState) Driver() drivers.PowerState {
	if s == PowerOn {
		return drivers.PowerOn
	}
	return drivers.PowerOff
}

// PowerStateOf is a drivers power state's encoding.
func PowerStateOf(s drivers.PowerState) (PowerState, error) {
	switch s {
	case drivers.PowerOn:
		return PowerOn, nil
	case drivers.PowerOff:
		return PowerOff, nil
	}
	return 0, frameErr(RegPowerState, ErrValue, "power state %q is not on or off", string(s))
}

// DecodePowerState decodes RegPowerState.
func DecodePowerState(p []byte) (PowerState, error) {
	v, err := enum(RegPowerState, p, 2, "power state")
	return PowerState(v), err
}

// PowerCommand is RegPowerControl: one byte.
type PowerCommand uint8

const (
	// PowerCmdOff switches main power off (hard, immediate).
	PowerCmdOff PowerCommand = 0
	// PowerCmdOn switches main power on; a unit that is on stays on.
	PowerCmdOn PowerCommand = 1
	// PowerCmdCycle switches a unit that is on off and on again, and a
	// unit that is off on.
	PowerCmdCycle PowerCommand = 2
)

// Encode gives the 1-byte payload.
func (c PowerCommand) Encode() []byte { return []byte{byte(c)} }

// DecodePowerCommand decodes RegPowerControl.
func DecodePowerCommand(p []byte) (PowerCommand, error) {
	v, err := enum(RegPowerControl, p, 3, "power command")
	return PowerCommand(v), err
}

// BootStage is RegBootStage: one byte, in boot order.
type BootStage uint8

const (
	StageOff       BootStage = 0
	StageFirmware  BootStage = 1
	StageBootstrap BootStage = 2
	StageOS        BootStage = 3
	StageReady     BootStage = 4
)

var stageNames = [...]drivers.BootStage{drivers.StageOff, drivers.StageFirmware, drivers.StageBootstrap, drivers.StageOS, drivers.StageReady}

// Encode gives the 1-byte payload.
func (s BootStage) Encode() []byte { return []byte{byte(s)} }

// Driver is the stage as the drivers package names it.
func (s BootStage) Driver() drivers.BootStage {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return drivers.BootStage(fmt.Sprintf("unknown(%d)", uint8(s)))
}

// BootStageOf is a drivers boot stage's encoding.
func BootStageOf(s drivers.BootStage) (BootStage, error) {
	for i, n := range stageNames {
		if n == s {
			return BootStage(i), nil
		}
	}
	return 0, frameErr(RegBootStage, ErrValue, "boot stage %q is not defined", string(s))
}

// DecodeBootStage decodes RegBootStage.
func DecodeBootStage(p []byte) (BootStage, error) {
	v, err := enum(RegBootStage, p, len(stageNames), "boot stage")
	return BootStage(v), err
}

// BootSource is RegNextBoot: one byte.
type BootSource uint8

const (
	// BootLocal boots the active A/B image from local storage.
	BootLocal BootSource = 0
	// BootNetwork boots the verified network boot environment.
	BootNetwork BootSource = 1
	// BootUSB boots from USB mass storage (recovery).
	BootUSB BootSource = 2
)

var sourceNames = [...]string{"local", "network", "usb"}

func (s BootSource) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return fmt.Sprintf("unknown(%d)", uint8(s))
}

// Encode gives the 1-byte payload.
func (s BootSource) Encode() []byte { return []byte{byte(s)} }

// DecodeBootSource decodes RegNextBoot.
func DecodeBootSource(p []byte) (BootSource, error) {
	v, err := enum(RegNextBoot, p, len(sourceNames), "boot source")
	return BootSource(v), err
}

// Sensors is RegSensors: power draw in milliwatts (uint32), then SoC
// temperature in millidegrees Celsius (int32).
type Sensors struct {
	Milliwatts   uint32
	Millicelsius int32
}

// Encode gives the 8-byte payload.
func (s Sensors) Encode() []byte {
	p := le.AppendUint32(nil, s.Milliwatts)
	return le.AppendUint32(p, uint32(s.Millicelsius))
}

// DecodeSensors decodes RegSensors.
func DecodeSensors(p []byte) (Sensors, error) {
	if err := need(RegSensors, p); err != nil {
		return Sensors{}, err
	}
	return Sensors{le.Uint32(p), int32(le.Uint32(p[4:]))}, nil
}

// SensorsOf encodes readings, rounding to the unit and clamping to range.
func SensorsOf(rd drivers.Readings) Sensors {
	return Sensors{Milliwatts: Milliwatts(rd.Watts), Millicelsius: Millicelsius(rd.Celsius)}
}

// Readings are the sensors in the drivers package's units.
func (s Sensors) Readings() drivers.Readings {
	return drivers.Readings{Watts: float64(s.Milliwatts) / 1000, Celsius: float64(s.Millicelsius) / 1000}
}

// Milliwatts converts watts, rounded and clamped to 0..MaxUint32.
func Milliwatts(w float64) uint32 {
	mw := math.Round(w * 1000)
	switch {
	case !(mw > 0): // negative or NaN
		return 0
	case mw >= math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(mw)
}

// Millicelsius converts degrees Celsius, rounded and clamped to int32.
func Millicelsius(c float64) int32 {
	mc := math.Round(c * 1000)
	switch {
	case math.IsNaN(mc):
		return 0
	case mc <= math.MinInt32:
		return math.MinInt32
	case mc >= math.MaxInt32:
		return math.MaxInt32
	}
	return int32(mc)
}

// ImageSlot names one of the two firmware image slots.
type ImageSlot uint8

const (
	SlotA ImageSlot = 0
	SlotB ImageSlot = 1
)

func (s ImageSlot) String() string {
	switch s {
	case SlotA:
		return "A"
	case SlotB:
		return "B"
	}
	return fmt.Sprintf("unknown(%d)", uint8(s))
}

// ImageState is the state of the image in one slot.
type ImageState uint8

const (
	// ImageEmpty: the slot holds no image.
	ImageEmpty ImageState = 0
	// ImageGood: the image booted and was confirmed.
	ImageGood ImageState = 1
	// ImageTrial: the image is new and boots on trial; a boot that is not
	// confirmed falls back to the other slot.
	ImageTrial ImageState = 2
	// ImageBad: the image failed verification or its trial.
	ImageBad ImageState = 3
	// ImageLoading: the image is being written (RegImageBegin, RegImageData).
	ImageLoading ImageState = 4
	// ImageStaged: the image was written and its digest verified
	// (RegImageVerify); it boots once switched to.
	ImageStaged ImageState = 5
)

var imageStateNames = [...]string{"empty", "good", "trial", "bad", "loading", "staged"}

func (s ImageState) String() string {
	if int(s) < len(imageStateNames) {
		return imageStateNames[s]
	}
	return fmt.Sprintf("unknown(%d)", uint8(s))
}

// Image is one slot's image: its state and its security version (what the
// anti-rollback counter is compared with).
type Image struct {
	State           ImageState
	SecurityVersion uint32
}

// ImageSlots is RegImageSlots, 12 bytes: active slot (1), slot to boot next
// (1), A's state (1), B's state (1), A's security version (uint32), B's
// security version (uint32).
type ImageSlots struct {
	Active ImageSlot
	Next   ImageSlot
	A, B   Image
}

// Encode gives the 12-byte payload.
func (s ImageSlots) Encode() []byte {
	p := []byte{byte(s.Active), byte(s.Next), byte(s.A.State), byte(s.B.State)}
	p = le.AppendUint32(p, s.A.SecurityVersion)
	return le.AppendUint32(p, s.B.SecurityVersion)
}

// DecodeImageSlots decodes RegImageSlots.
func DecodeImageSlots(p []byte) (ImageSlots, error) {
	if err := need(RegImageSlots, p); err != nil {
		return ImageSlots{}, err
	}
	for i, what := range []string{"active slot", "next slot"} {
		if p[i] > byte(SlotB) {
			return ImageSlots{}, frameErr(RegImageSlots, ErrValue, "%s %d is not A or B", what, p[i])
		}
	}
	for i, what := range []string{"image A state", "image B state"} {
		if int(p[2+i]) >= len(imageStateNames) {
			return ImageSlots{}, frameErr(RegImageSlots, ErrValue, "%s %d is not defined", what, p[2+i])
		}
	}
	return ImageSlots{
		Active: ImageSlot(p[0]),
		Next:   ImageSlot(p[1]),
		A:      Image{ImageState(p[2]), le.Uint32(p[4:])},
		B:      Image{ImageState(p[3]), le.Uint32(p[8:])},
	}, nil
}

// AntiRollback is RegAntiRollback: uint32, the lowest security version
// the device accepts. It only ever grows.
type AntiRollback uint32

// Encode gives the 4-byte payload.
func (a AntiRollback) Encode() []byte { return le.AppendUint32(nil, uint32(a)) }

// DecodeAntiRollback decodes RegAntiRollback.
func DecodeAntiRollback(p []byte) (AntiRollback, error) {
	if err := need(RegAntiRollback, p); err != nil {
		return 0, err
	}
	return AntiRollback(le.Uint32(p)), nil
}

// RackSensors is RegRackSensors (RMC): rack power at the supply in
// milliwatts (uint32), then inlet temperature in millidegrees Celsius
// (int32).
type RackSensors struct {
	Milliwatts        uint32
	InletMillicelsius int32
}

// Encode gives the 8-byte payload.
func (s RackSensors) Encode() []byte {
	p := le.AppendUint32(nil, s.Milliwatts)
	return le.AppendUint32(p, uint32(s.InletMillicelsius))
}

// DecodeRackSensors decodes RegRackSensors.
func DecodeRackSensors(p []byte) (RackSensors, error) {
	if err := need(RegRackSensors, p); err != nil {
		return RackSensors{}, err
	}
	return RackSensors{le.Uint32(p), int32(le.Uint32(p[4:]))}, nil
}

// RackSensorsOf encodes rack readings.
func RackSensorsOf(rd drivers.RackReadings) RackSensors {
	return RackSensors{Milliwatts: Milliwatts(rd.Watts), InletMillicelsius: Millicelsius(rd.InletCelsius)}
}

// Readings are the rack sensors in the drivers package's units.
func (s RackSensors) Readings() drivers.RackReadings {
	return drivers.RackReadings{Watts: float64(s.Milliwatts) / 1000, InletCelsius: float64(s.InletMillicelsius) / 1000}
}

// Presence is RegPresence (RMC): uint32, bit slot-1 set when a unit is
// seated in the slot.
type Presence uint32

// Has reports whether the slot (1..MaxSlots) holds a unit.
func (p Presence) Has(slot int) bool {
	return slot >= 1 && slot <= MaxSlots && p&(1<<(slot-1)) != 0
}

// With marks the slot (1..MaxSlots) present.
func (p Presence) With(slot int) Presence {
	if slot < 1 || slot > MaxSlots {
		return p
	}
	return p | 1<<(slot-1)
}

// Encode gives the 4-byte payload.
func (p Presence) Encode() []byte { return le.AppendUint32(nil, uint32(p)) }

// DecodePresence decodes RegPresence.
func DecodePresence(p []byte) (Presence, error) {
	if err := need(RegPresence, p); err != nil {
		return 0, err
	}
	return Presence(le.Uint32(p)), nil
}
