package firmware

import "testing"

// bitwisePEC is the CRC-8 done the long way, bit by bit, as the SMBus spec
// describes it: an independent check of the table-driven PEC.
func bitwisePEC(msg []byte) byte {
	var c byte
	for _, b := range msg {
		c ^= b
		for range 8 {
			if c&0x80 != 0 {
				c = c<<1 ^ 0x07
			} else {
				c <<= 1
			}
		}
	}
	return c
}

func TestPECVectors(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want byte
	}{
		{"empty", nil, 0x00},
		{"one byte 0x01", []byte{0x01}, 0x07},
		{"one byte 0xff", []byte{0xff}, 0xf3},
		// The CRC catalogue's check value for CRC-8/SMBUS.
		{"check 123456789", []byte("123456789"), 0xf4},
		// Test vector checked against smbus.org's CRC-8 calculator.
		{"abc", []byte("abc"), 0x5f},
		// Write Word to 0x5a, command 0x06, data 0xab 0xcd.
		{"write word", []byte{0x5a << 1, 0x06, 0xab, 0xcd}, 95},
		// Read Word from 0x5a, command 0x06, data 38 58.
		{"read word", []byte{0x5a << 1, 0x06, 0x5a<<1 | 1, 38, 58}, 102},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PEC(tc.msg); got != tc.want {
				t.Errorf("PEC(% x) = 0x%02x, want 0x%02x", tc.msg, got, tc.want)
			}
			if got := bitwisePEC(tc.msg); got != tc.want {
				t.Errorf("bitwisePEC(% x) = 0x%02x, want 0x%02x", tc.msg, got, tc.want)
			}
		})
	}
}

func TestPECTable(t *testing.T) {
	for i := range 256 {
		if got, want := PEC([]byte{byte(i)}), bitwisePEC([]byte{byte(i)}); got != want {
			t.Fatalf("PEC(0x%02x) = 0x%02x, want 0x%02x", i, got, want)
		}
	}
}

// TestTransactionPEC pins which bytes the PEC of each transaction covers.
func TestTransactionPEC(t *testing.T) {
	tests := []struct {
		name string
		got  byte
		over []byte
		want byte
	}{
		{"block write 0x40 power-control on", WritePEC(0x40, RegPowerControl, []byte{0x01}),
			[]byte{0x80, 0x03, 0x01, 0x01}, 0x9e},
		{"block read 0x40 protocol-version 1", ReadPEC(0x40, RegProtocolVersion, []byte{0x01, 0x00}),
			[]byte{0x80, 0x00, 0x81, 0x02, 0x01, 0x00}, 0x08},
		{"block read 0x10 presence 1,2,4", ReadPEC(0x10, RegPresence, []byte{0x0b, 0, 0, 0}),
			[]byte{0x20, 0x21, 0x21, 0x04, 0x0b, 0, 0, 0}, 0x07},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got 0x%02x, want 0x%02x", tc.got, tc.want)
			}
			if b := bitwisePEC(tc.over); b != tc.want {
				t.Errorf("bitwise PEC over % x = 0x%02x, want 0x%02x", tc.over, b, tc.want)
			}
		})
	}
}
