package firmware

import (
	"bytes"
	"errors"
	"testing"
)

func TestFrameVectors(t *testing.T) {
	w, err := EncodeWrite(0x40, RegPowerControl, PowerCmdOn.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x03, 0x01, 0x01, 0x9e}; !bytes.Equal(w, want) {
		t.Errorf("block write = % x, want % x", w, want)
	}
	r, err := EncodeReadResponse(0x40, RegProtocolVersion, EncodeProtocolVersion(1))
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x02, 0x01, 0x00, 0x08}; !bytes.Equal(r, want) {
		t.Errorf("block read response = % x, want % x", r, want)
	}
	if len(r) != ReadLen(RegProtocolVersion) {
		t.Errorf("ReadLen = %d, response is %d bytes", ReadLen(RegProtocolVersion), len(r))
	}
	if got := ReadRequest(RegSensors); !bytes.Equal(got, []byte{0x06}) {
		t.Errorf("ReadRequest = % x", got)
	}
}

func TestDecodeWriteErrors(t *testing.T) {
	good, err := EncodeWrite(0x40, RegNextBoot, BootNetwork.Encode())
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x01; return b }
	tests := []struct {
		name string
		addr uint16
		w    []byte
		want error
	}{
		{"good", 0x40, good, nil},
		{"other address", 0x41, good, ErrPEC},
		{"bad PEC", 0x40, flip(3), ErrPEC},
		{"flipped data", 0x40, flip(2), ErrPEC},
		{"empty", 0x40, nil, ErrLength},
		{"command only", 0x40, good[:1], ErrLength},
		{"truncated", 0x40, good[:3], ErrLength},
		{"trailing byte", 0x40, append(bytes.Clone(good), 0), ErrLength},
		{"wrong count", 0x40, []byte{byte(RegNextBoot), 2, 1, 0, WritePEC(0x40, RegNextBoot, []byte{1, 0})}, ErrLength},
		{"unknown register", 0x40, []byte{0x7f, 1, 0, 0}, ErrUnknownRegister},
		{"read-only register", 0x40, []byte{byte(RegPowerState), 1, 0, WritePEC(0x40, RegPowerState, []byte{0})}, ErrAccess},
		{"10-bit address", 0x240, good, ErrAddress},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg, p, err := DecodeWrite(tc.addr, tc.w)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil {
				if reg != RegNextBoot || !bytes.Equal(p, BootNetwork.Encode()) {
					t.Fatalf("decoded %v % x", reg, p)
				}
				return
			}
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("err %v is not a *FrameError", err)
			}
		})
	}
}

func TestDecodeReadResponseErrors(t *testing.T) {
	good, err := EncodeReadResponse(0x10, RegRackSensors, RackSensors{Milliwatts: 12000, InletMillicelsius: 25000}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x80; return b }
	short := bytes.Clone(good)
	short[0] = 7 // a device that sent one byte fewer
	tests := []struct {
		name string
		addr uint16
		reg  Register
		r    []byte
		want error
	}{
		{"good", 0x10, RegRackSensors, good, nil},
		{"other address", 0x11, RegRackSensors, good, ErrPEC},
		{"other register", 0x10, RegSensors, good, ErrPEC},
		{"bad PEC", 0x10, RegRackSensors, flip(len(good) - 1), ErrPEC},
		{"flipped data", 0x10, RegRackSensors, flip(4), ErrPEC},
		{"short count", 0x10, RegRackSensors, short, ErrLength},
		{"truncated", 0x10, RegRackSensors, good[:5], ErrLength},
		{"empty", 0x10, RegRackSensors, nil, ErrLength},
		{"all ones (nobody drove the bus)", 0x10, RegRackSensors, bytes.Repeat([]byte{0xff}, len(good)), ErrLength},
		{"unknown register", 0x10, 0x7e, good, ErrUnknownRegister},
		{"write-only register", 0x10, RegPowerControl, []byte{1, 1, 0}, ErrAccess},
		{"10-bit address", 0x3ff, RegRackSensors, good, ErrAddress},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodeReadResponse(tc.addr, tc.reg, tc.r)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil {
				if _, err := DecodeRackSensors(p); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	if _, err := EncodeWrite(0x40, RegSensors, make([]byte, 8)); !errors.Is(err, ErrAccess) {
		t.Errorf("write to read-only: %v", err)
	}
	if _, err := EncodeWrite(0x40, RegNextBoot, []byte{1, 2}); !errors.Is(err, ErrLength) {
		t.Errorf("write of wrong length: %v", err)
	}
	if _, err := EncodeReadResponse(0x40, RegPowerControl, []byte{1}); !errors.Is(err, ErrAccess) {
		t.Errorf("read response of write-only: %v", err)
	}
	if _, err := EncodeReadResponse(0x80, RegPowerState, []byte{1}); !errors.Is(err, ErrAddress) {
		t.Errorf("8-bit address: %v", err)
	}
}

func TestRegisterMap(t *testing.T) {
	seen := map[string]bool{}
	prev := -1
	for _, info := range Registers() {
		if int(info.Reg) <= prev {
			t.Errorf("register %v is out of order", info.Reg)
		}
		prev = int(info.Reg)
		if info.Len < 1 || info.Len > MaxBlock {
			t.Errorf("register %v: length %d is not in 1..%d", info.Reg, info.Len, MaxBlock)
		}
		if seen[info.Name] {
			t.Errorf("register name %q twice", info.Name)
		}
		seen[info.Name] = true
		if got, ok := Lookup(info.Reg); !ok || got != info {
			t.Errorf("Lookup(%v) = %+v, %v", info.Reg, got, ok)
		}
	}
	if info, _ := Lookup(RegProtocolVersion); info.Len != 2 || info.Device != Devices {
		t.Errorf("the version register must stay 2 bytes on every device: %+v", info)
	}
	for slot := 1; slot <= MaxSlots; slot++ {
		a, err := BMCAddr(slot)
		if err != nil || SlotOf(a) != slot || a == RMCAddr || a > 0x77 || a < 0x08 || a == 0x61 || a == 0x0c || a == 0x28 || a == 0x37 {
			t.Errorf("slot %d: address 0x%02x, %v", slot, a, err)
		}
	}
	for _, s := range []int{0, MaxSlots + 1} {
		if _, err := BMCAddr(s); err == nil {
			t.Errorf("BMCAddr(%d) did not fail", s)
		}
	}
	if SlotOf(RMCAddr) != 0 {
		t.Error("the RMC's address maps to a slot")
	}
}
