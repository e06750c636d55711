package firmware

// Frames as they cross periph's i2c.Bus.Tx(addr, w, r): a Block Write is
// Tx(addr, EncodeWrite(...), nil); a Block Read is
// Tx(addr, ReadRequest(reg), r) with len(r) == ReadLen(reg), and r holds
// what EncodeReadResponse produced. The address bytes are not in the
// buffers (the bus sends them) but are in the PEC, so every function takes
// the 7-bit address.

func checkAddr(reg Register, addr uint16) error {
	if addr > 0x7f {
		return frameErr(reg, ErrAddress, "0x%x is not a 7-bit address", addr)
	}
	return nil
}

// lookupFor finds reg and checks it allows access a.
func lookupFor(reg Register, a Access) (Info, error) {
	info, ok := Lookup(reg)
	if !ok {
		return Info{}, frameErr(reg, ErrUnknownRegister, "protocol v%d has no such register", ProtocolVersion)
	}
	if info.Access&a == 0 {
		what := "written"
		if a == Read {
			what = "read"
		}
		return Info{}, frameErr(reg, ErrAccess, "cannot be %s", what)
	}
	return info, nil
}

func checkLen(info Info, n int) error {
	if n != info.Len {
		return frameErr(info.Reg, ErrLength, "payload is %d bytes, want %d", n, info.Len)
	}
	return nil
}

// EncodeWrite is what a master writes for a Block Write of payload to reg
// at addr: command, count, payload, PEC.
func EncodeWrite(addr uint16, reg Register, payload []byte) ([]byte, error) {
	if err := checkAddr(reg, addr); err != nil {
		return nil, err
	}
	info, err := lookupFor(reg, Write)
	if err != nil {
		return nil, err
	}
	if err := checkLen(info, len(payload)); err != nil {
		return nil, err
	}
	w := make([]byte, 0, len(payload)+3)
	w = append(w, byte(reg), byte(len(payload)))
	w = append(w, payload...)
	return append(w, WritePEC(addr, reg, payload)), nil
}

// DecodeWrite is the device's side of a Block Write: it checks the frame w
// received at addr (register known and writable, count equal to the
// register's length and to the bytes received, PEC) and returns the
// register and its payload (aliasing w). The payload's fields are checked
// by the register's Decode function.
func DecodeWrite(addr uint16, w []byte) (Register, []byte, error) {
	if len(w) == 0 {
		return 0, nil, frameErr(0, ErrLength, "empty write")
	}
	reg := Register(w[0])
	if err := checkAddr(reg, addr); err != nil {
		return reg, nil, err
	}
	info, err := lookupFor(reg, Write)
	if err != nil {
		return reg, nil, err
	}
	if len(w) < 3 {
		return reg, nil, frameErr(reg, ErrLength, "write of %d bytes is shorter than command, count and PEC", len(w))
	}
	count := int(w[1])
	if count != info.Len {
		return reg, nil, frameErr(reg, ErrLength, "count is %d, want %d", count, info.Len)
	}
	if len(w) != count+3 {
		return reg, nil, frameErr(reg, ErrLength, "write is %d bytes, want %d", len(w), count+3)
	}
	payload := w[2 : 2+count]
	if got, want := w[len(w)-1], WritePEC(addr, reg, payload); got != want {
		return reg, nil, frameErr(reg, ErrPEC, "got 0x%02x, want 0x%02x", got, want)
	}
	return reg, payload, nil
}

// ReadRequest is what a master writes before the repeated start of a Block
// Read of reg: the command code.
func ReadRequest(reg Register) []byte { return []byte{byte(reg)} }

// EncodeReadResponse is the device's answer to a Block Read of reg at
// addr: count, payload, PEC.
func EncodeReadResponse(addr uint16, reg Register, payload []byte) ([]byte, error) {
	if err := checkAddr(reg, addr); err != nil {
		return nil, err
	}
	info, err := lookupFor(reg, Read)
	if err != nil {
		return nil, err
	}
	if err := checkLen(info, len(payload)); err != nil {
		return nil, err
	}
	r := make([]byte, 0, len(payload)+2)
	r = append(r, byte(len(payload)))
	r = append(r, payload...)
	return append(r, ReadPEC(addr, reg, payload)), nil
}

// DecodeReadResponse is the master's side of a Block Read of reg from
// addr: it checks the bytes r read (ReadLen(reg) of them; count equal to
// the register's length; PEC) and returns the payload (aliasing r).
func DecodeReadResponse(addr uint16, reg Register, r []byte) ([]byte, error) {
	if err := checkAddr(reg, addr); err != nil {
		return nil, err
	}
	info, err := lookupFor(reg, Read)
	if err != nil {
		return nil, err
	}
	if len(r) != info.Len+2 {
		return nil, frameErr(reg, ErrLength, "read %d bytes, want %d", len(r), info.Len+2)
	}
	if count := int(r[0]); count != info.Len {
		return nil, frameErr(reg, ErrLength, "count is %d, want %d", count, info.Len)
	}
	payload := r[1 : 1+info.Len]
	if got, want := r[len(r)-1], ReadPEC(addr, reg, payload); got != want {
		return nil, frameErr(reg, ErrPEC, "got 0x%02x, want 0x%02x", got, want)
	}
	return payload, nil
}
