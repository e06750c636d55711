package firmware

import (
	"bytes"
	"errors"
	"testing"
)

var sentinels = []error{ErrPEC, ErrLength, ErrUnknownRegister, ErrAccess, ErrValue, ErrAddress}

// wantTyped fails unless err is a *FrameError wrapping one of the sentinels.
func wantTyped(t *testing.T, err error) {
	t.Helper()
	var fe *FrameError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FrameError", err, err)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %v wraps no sentinel", err)
}

// decodePayload decodes and re-encodes a payload: what the frame decoders
// accept must decode to a value that encodes back to the same bytes, or be
// rejected with a typed error.
func decodePayload(t *testing.T, reg Register, p []byte) {
	t.Helper()
	c, ok := codecs[reg]
	if !ok {
		t.Fatalf("no codec for %v", reg)
	}
	v, err := c.decode(p)
	if err != nil {
		wantTyped(t, err)
		if !errors.Is(err, ErrValue) {
			t.Fatalf("payload of the right length rejected with %v", err)
		}
		return
	}
	if back := c.encode(v); !bytes.Equal(back, p) {
		t.Fatalf("payload % x decodes to %+v which encodes to % x", p, v, back)
	}
}

func FuzzDecodeWrite(f *testing.F) {
	for _, info := range Registers() {
		if info.Access&Write == 0 {
			continue
		}
		w, err := EncodeWrite(0x40, info.Reg, make([]byte, info.Len))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(0x40), w)
		f.Add(uint16(0x41), w)
	}
	f.Add(uint16(0x10), []byte{})
	f.Add(uint16(0x10), []byte{0x03, 0x01, 0x02, 0x00})
	f.Add(uint16(0x100), []byte{0x03, 0x01, 0x01, 0x9e})
	f.Fuzz(func(t *testing.T, addr uint16, w []byte) {
		reg, p, err := DecodeWrite(addr, w)
		if err != nil {
			wantTyped(t, err)
			return
		}
		again, err := EncodeWrite(addr, reg, p)
		if err != nil {
			t.Fatalf("accepted frame does not re-encode: %v", err)
		}
		if !bytes.Equal(again, w) {
			t.Fatalf("frame % x re-encodes to % x", w, again)
		}
		decodePayload(t, reg, p)
	})
}

func FuzzDecodeReadResponse(f *testing.F) {
	for _, info := range Registers() {
		if info.Access&Read == 0 {
			continue
		}
		r, err := EncodeReadResponse(0x10, info.Reg, make([]byte, info.Len))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(0x10), uint8(info.Reg), r)
		f.Add(uint16(0x40), uint8(info.Reg), r)
	}
	f.Add(uint16(0x40), uint8(0x7f), []byte{0x01, 0x00, 0x00})
	f.Add(uint16(0x40), uint8(RegPowerState), []byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, addr uint16, reg uint8, r []byte) {
		p, err := DecodeReadResponse(addr, Register(reg), r)
		if err != nil {
			wantTyped(t, err)
			return
		}
		again, err := EncodeReadResponse(addr, Register(reg), p)
		if err != nil {
			t.Fatalf("accepted frame does not re-encode: %v", err)
		}
		if !bytes.Equal(again, r) {
			t.Fatalf("frame % x re-encodes to % x", r, again)
		}
		decodePayload(t, Register(reg), p)
	})
}
