package firmware

// PEC computes the SMBus Packet Error Code of msg: CRC-8 with polynomial
// x⁸+x²+x+1 (0x07), initial value 0, no reflection and no final XOR (the
// CRC-8-ATM HEC algorithm, "CRC-8/SMBUS"). On the wire it covers the whole
// transaction, address bytes with their R/W bit included; see WritePEC and
// ReadPEC for the exact bytes of the transactions this protocol uses.
func PEC(msg []byte) byte { return pecUpdate(0, msg) }

// pecUpdate continues a PEC over more bytes.
func pecUpdate(crc byte, msg []byte) byte {
	for _, b := range msg {
		crc = pecTable[crc^b]
	}
	return crc
}

// pecTable[i] is the CRC of the single byte i, for the byte-wise algorithm.
var pecTable = func() (t [256]byte) {
	for i := range t {
		c := byte(i)
		for range 8 {
			if c&0x80 != 0 {
				c = c<<1 ^ 0x07
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// WritePEC is the PEC of an SMBus Block Write to the 7-bit address addr:
// over the address byte with W (addr<<1|0), the command code, the byte
// count and the data.
func WritePEC(addr uint16, reg Register, payload []byte) byte {
	crc := pecUpdate(0, []byte{byte(addr << 1), byte(reg), byte(len(payload))})
	return pecUpdate(crc, payload)
}

// ReadPEC is the PEC of an SMBus Block Read from the 7-bit address addr:
// over the address byte with W (addr<<1|0), the command code, the address
// byte with R (addr<<1|1) sent after the repeated start, the byte count and
// the data.
func ReadPEC(addr uint16, reg Register, payload []byte) byte {
	crc := pecUpdate(0, []byte{byte(addr << 1), byte(reg), byte(addr<<1 | 1), byte(len(payload))})
	return pecUpdate(crc, payload)
}
