package firmware

import (
	"errors"
	"fmt"
)

// The ways a frame or payload is rejected. Decoders return a *FrameError
// wrapping one of them; check with errors.Is.
var (
	// ErrPEC: the packet error code does not match the frame.
	ErrPEC = errors.New("firmware: bad packet error code")
	// ErrLength: the frame or payload is not as long as its register is.
	ErrLength = errors.New("firmware: wrong length")
	// ErrUnknownRegister: the protocol defines no such register.
	ErrUnknownRegister = errors.New("firmware: unknown register")
	// ErrAccess: the register cannot be accessed that way (a write to a
	// read-only register, a read of a write-only one).
	ErrAccess = errors.New("firmware: register access not allowed")
	// ErrValue: a payload field holds a value the protocol does not define.
	ErrValue = errors.New("firmware: bad value")
	// ErrAddress: not a 7-bit address.
	ErrAddress = errors.New("firmware: bad address")
)

// What a bus reports for a failed transaction. The emulated bus in sim
// returns these; a real bus returns its own errors (the driver treats every
// failed transaction alike, except a bus timeout).
var (
	// ErrNAK: the device did not acknowledge (nothing at the address, or
	// the device rejected the frame).
	ErrNAK = errors.New("firmware: no acknowledge")
	// ErrBusTimeout: the transaction did not complete in the bus's time
	// limit (a device holding the clock low).
	ErrBusTimeout = errors.New("firmware: bus timeout")
)

// FrameError is a rejected frame or payload: the register it was for (if
// known), the kind (one of the sentinels above) and details.
type FrameError struct {
	Reg    Register
	Err    error
	Detail string
}

func (e *FrameError) Error() string {
	s := fmt.Sprintf("%v: register %v", e.Err, e.Reg)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *FrameError) Unwrap() error { return e.Err }

func frameErr(reg Register, kind error, format string, args ...any) error {
	return &FrameError{Reg: reg, Err: kind, Detail: fmt.Sprintf(format, args...)}
}
