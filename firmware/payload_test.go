package firmware

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/racklet/rack/drivers"
)

// codec is one register's payload codec, for table-driven tests.
type codec struct {
	encode func(v any) []byte
	decode func(p []byte) (any, error)
}

func mk[T any](enc func(T) []byte, dec func([]byte) (T, error)) codec {
	return codec{
		encode: func(v any) []byte { return enc(v.(T)) },
		decode: func(p []byte) (any, error) { return dec(p) },
	}
}

var codecs = map[Register]codec{
	RegProtocolVersion: mk(EncodeProtocolVersion, DecodeProtocolVersion),
	RegFirmwareVersion: mk(FirmwareVersion.Encode, DecodeFirmwareVersion),
	RegPowerState:      mk(PowerState.Encode, DecodePowerState),
	RegPowerControl:    mk(PowerCommand.Encode, DecodePowerCommand),
	RegBootStage:       mk(BootStage.Encode, DecodeBootStage),
	RegNextBoot:        mk(BootSource.Encode, DecodeBootSource),
	RegSensors:         mk(Sensors.Encode, DecodeSensors),
	RegImageSlots:      mk(ImageSlots.Encode, DecodeImageSlots),
	RegAntiRollback:    mk(AntiRollback.Encode, DecodeAntiRollback),
	RegRackSensors:     mk(RackSensors.Encode, DecodeRackSensors),
	RegPresence:        mk(Presence.Encode, DecodePresence),
	RegImageBegin:      mk(ImageBegin.Encode, DecodeImageBegin),
	RegImageData:       mk(ImageData.Encode, DecodeImageData),
	RegImageVerify:     mk(ImageDigest.Encode, DecodeImageDigest),
	RegImageCommand:    mk(ImageCommand.Encode, DecodeImageCommand),
	RegImageStatus:     mk(ImageStatus.Encode, DecodeImageStatus),
}

func TestEveryRegisterHasACodec(t *testing.T) {
	for _, info := range Registers() {
		if _, ok := codecs[info.Reg]; !ok {
			t.Errorf("register %v has no codec in the tests", info.Reg)
		}
	}
	if len(codecs) != len(Registers()) {
		t.Errorf("%d codecs for %d registers", len(codecs), len(Registers()))
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	tests := []struct {
		reg  Register
		v    any
		wire []byte // the exact encoding, little-endian
	}{
		{RegProtocolVersion, uint16(1), []byte{1, 0}},
		{RegProtocolVersion, uint16(0x1234), []byte{0x34, 0x12}},
		{RegFirmwareVersion, FirmwareVersion{1, 2, 0x0304}, []byte{1, 0, 2, 0, 4, 3}},
		{RegPowerState, PowerOff, []byte{0}},
		{RegPowerState, PowerOn, []byte{1}},
		{RegPowerControl, PowerCmdOff, []byte{0}},
		{RegPowerControl, PowerCmdOn, []byte{1}},
		{RegPowerControl, PowerCmdCycle, []byte{2}},
		{RegBootStage, StageOff, []byte{0}},
		{RegBootStage, StageFirmware, []byte{1}},
		{RegBootStage, StageBootstrap, []byte{2}},
		{RegBootStage, StageOS, []byte{3}},
		{RegBootStage, StageReady, []byte{4}},
		{RegNextBoot, BootLocal, []byte{0}},
		{RegNextBoot, BootNetwork, []byte{1}},
		{RegNextBoot, BootUSB, []byte{2}},
		{RegSensors, Sensors{Milliwatts: 3500, Millicelsius: 46250}, []byte{0xac, 0x0d, 0, 0, 0xaa, 0xb4, 0, 0}},
		{RegSensors, Sensors{Milliwatts: math.MaxUint32, Millicelsius: -1}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{RegImageSlots, ImageSlots{Active: SlotB, Next: SlotA, A: Image{ImageGood, 7}, B: Image{ImageTrial, 0x01020304}},
			[]byte{1, 0, 1, 2, 7, 0, 0, 0, 4, 3, 2, 1}},
		{RegImageSlots, ImageSlots{A: Image{State: ImageBad}, B: Image{State: ImageEmpty}}, []byte{0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{RegAntiRollback, AntiRollback(0xdeadbeef), []byte{0xef, 0xbe, 0xad, 0xde}},
		{RegRackSensors, RackSensors{Milliwatts: 25000, InletMillicelsius: -5000}, []byte{0xa8, 0x61, 0, 0, 0x78, 0xec, 0xff, 0xff}},
		{RegPresence, Presence(0).With(1).With(2).With(4).With(32), []byte{0x0b, 0, 0, 0x80}},
		{RegImageSlots, ImageSlots{Active: SlotA, Next: SlotB, A: Image{ImageLoading, 1}, B: Image{ImageStaged, 2}},
			[]byte{0, 1, 4, 5, 1, 0, 0, 0, 2, 0, 0, 0}},
		{RegImageBegin, ImageBegin{Size: 0x010203, SecurityVersion: 9, Version: FirmwareVersion{1, 2, 0x0304}}, []byte{3, 2, 1, 0, 9, 0, 0, 0, 1, 0, 2, 0, 4, 3}},
		{RegImageData, ImageData{Offset: 0x1c, Data: []byte{0xaa, 0xbb}}, append([]byte{0x1c, 0, 0, 0, 2, 0xaa, 0xbb}, make([]byte, 25)...)},
		{RegImageData, ImageData{Offset: 1, Data: bytes.Repeat([]byte{7}, ImageChunkLen)}, append([]byte{1, 0, 0, 0, 27}, bytes.Repeat([]byte{7}, 27)...)},
		{RegImageVerify, ImageDigest{0: 1, 31: 0xff}, append(append([]byte{1}, make([]byte, 30)...), 0xff)},
		{RegImageCommand, ImageSwitch, []byte{0}},
		{RegImageCommand, ImageConfirm, []byte{1}},
		{RegImageCommand, ImageRollback, []byte{2}},
		{RegImageStatus, ImageStatus{Reg: RegImageBegin, Code: StatusAntiRollback, PEC: 0x5a}, []byte{9, 2, 0x5a}},
	}
	for _, tc := range tests {
		t.Run(tc.reg.String(), func(t *testing.T) {
			c := codecs[tc.reg]
			p := c.encode(tc.v)
			if !bytes.Equal(p, tc.wire) {
				t.Fatalf("encode %+v = % x, want % x", tc.v, p, tc.wire)
			}
			info, _ := Lookup(tc.reg)
			if len(p) != info.Len {
				t.Fatalf("encoding is %d bytes, register is %d", len(p), info.Len)
			}
			got, err := c.decode(p)
			if err != nil {
				t.Fatalf("decode % x: %v", p, err)
			}
			if !reflect.DeepEqual(got, tc.v) {
				t.Fatalf("decode % x = %+v, want %+v", p, got, tc.v)
			}
			// Every payload also survives both frame encodings.
			if info.Access&Read != 0 {
				r, err := EncodeReadResponse(0x41, tc.reg, p)
				if err != nil {
					t.Fatal(err)
				}
				back, err := DecodeReadResponse(0x41, tc.reg, r)
				if err != nil || !bytes.Equal(back, p) {
					t.Fatalf("read frame round trip: % x, %v", back, err)
				}
			}
			if info.Access&Write != 0 {
				w, err := EncodeWrite(0x41, tc.reg, p)
				if err != nil {
					t.Fatal(err)
				}
				reg, back, err := DecodeWrite(0x41, w)
				if err != nil || reg != tc.reg || !bytes.Equal(back, p) {
					t.Fatalf("write frame round trip: %v % x, %v", reg, back, err)
				}
			}
		})
	}
}

func TestPayloadDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		reg  Register
		p    []byte
		want error
	}{
		{"version short", RegProtocolVersion, []byte{1}, ErrLength},
		{"firmware version long", RegFirmwareVersion, make([]byte, 7), ErrLength},
		{"power state empty", RegPowerState, nil, ErrLength},
		{"power state 2", RegPowerState, []byte{2}, ErrValue},
		{"power command 3", RegPowerControl, []byte{3}, ErrValue},
		{"boot stage 5", RegBootStage, []byte{5}, ErrValue},
		{"boot source 3", RegNextBoot, []byte{3}, ErrValue},
		{"sensors short", RegSensors, make([]byte, 7), ErrLength},
		{"image slots active 2", RegImageSlots, []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrValue},
		{"image slots next 9", RegImageSlots, []byte{0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrValue},
		{"image slots B state 6", RegImageSlots, []byte{0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0}, ErrValue},
		{"image begin of size 0", RegImageBegin, make([]byte, 14), ErrValue},
		{"image data of 0 bytes", RegImageData, make([]byte, 32), ErrValue},
		{"image data of 28 bytes", RegImageData, append([]byte{0, 0, 0, 0, 28}, make([]byte, 27)...), ErrValue},
		{"image data with padding", RegImageData, append([]byte{0, 0, 0, 0, 1, 7, 0, 1}, make([]byte, 24)...), ErrValue},
		{"image command 3", RegImageCommand, []byte{3}, ErrValue},
		{"image status 7", RegImageStatus, []byte{0x09, 7, 0}, ErrValue},
		{"image slots short", RegImageSlots, make([]byte, 8), ErrLength},
		{"anti-rollback short", RegAntiRollback, make([]byte, 3), ErrLength},
		{"rack sensors long", RegRackSensors, make([]byte, 9), ErrLength},
		{"presence short", RegPresence, make([]byte, 2), ErrLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := codecs[tc.reg].decode(tc.p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("decode % x: err = %v, want %v", tc.p, err, tc.want)
			}
			var fe *FrameError
			if !errors.As(err, &fe) || fe.Reg != tc.reg {
				t.Fatalf("err %v is not a *FrameError for %v", err, tc.reg)
			}
		})
	}
}

func TestDriverConversions(t *testing.T) {
	for _, s := range []drivers.BootStage{drivers.StageOff, drivers.StageFirmware, drivers.StageBootstrap, drivers.StageOS, drivers.StageReady} {
		b, err := BootStageOf(s)
		if err != nil || b.Driver() != s {
			t.Errorf("BootStageOf(%q) = %d, %v; back %q", s, b, err, b.Driver())
		}
	}
	if _, err := BootStageOf("sleeping"); !errors.Is(err, ErrValue) {
		t.Errorf("BootStageOf(sleeping): %v", err)
	}
	for _, s := range []drivers.PowerState{drivers.PowerOn, drivers.PowerOff} {
		p, err := PowerStateOf(s)
		if err != nil || p.Driver() != s {
			t.Errorf("PowerStateOf(%q) = %d, %v", s, p, err)
		}
	}
	if _, err := PowerStateOf("cycle"); !errors.Is(err, ErrValue) {
		t.Errorf("PowerStateOf(cycle): %v", err)
	}
	conv := []struct {
		in   float64
		mw   uint32
		mc   int32
		name string
	}{
		{0, 0, 0, "zero"},
		{3.5004, 3500, 3500, "rounds down"},
		{3.5005, 3501, 3501, "rounds up"},
		{-2, 0, -2000, "negative"},
		{math.NaN(), 0, 0, "NaN"},
		{1e12, math.MaxUint32, math.MaxInt32, "huge"},
		{-1e12, 0, math.MinInt32, "huge negative"},
	}
	for _, c := range conv {
		if got := Milliwatts(c.in); got != c.mw {
			t.Errorf("%s: Milliwatts(%v) = %d, want %d", c.name, c.in, got, c.mw)
		}
		if got := Millicelsius(c.in); got != c.mc {
			t.Errorf("%s: Millicelsius(%v) = %d, want %d", c.name, c.in, got, c.mc)
		}
	}
	rd := drivers.Readings{Watts: 4.2, Celsius: 51.125}
	if got := SensorsOf(rd).Readings(); got != rd {
		t.Errorf("readings round trip: %+v, want %+v", got, rd)
	}
	rr := drivers.RackReadings{Watts: 21.5, InletCelsius: 24.75}
	if got := RackSensorsOf(rr).Readings(); got != rr {
		t.Errorf("rack readings round trip: %+v, want %+v", got, rr)
	}
}
