package drivers

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// The kinds of driver failure. A driver's error wraps exactly one of them
// (or a context error for a cancelled call); check with errors.Is.
var (
	// ErrUnreachable: the device did not answer (NAK, no power, empty slot,
	// link down). Retrying later may help.
	ErrUnreachable = errors.New("drivers: unreachable")
	// ErrTimeout: the device did not complete the call before the context's
	// deadline. The call may or may not have taken effect.
	ErrTimeout = errors.New("drivers: timeout")
	// ErrRefused: the device answered and rejected the call (bad argument,
	// not possible in its present state). Retrying the same call will not help.
	ErrRefused = errors.New("drivers: refused")
	// ErrNoSlot: the slot does not exist in this rack.
	ErrNoSlot = errors.New("drivers: no such slot")
)

// Error is a failed driver call: the operation, the slot (0 for the RMC and
// rack-wide calls), the kind (one of the sentinels, or context.Canceled) and
// an optional cause with details. errors.Is matches both Err and Cause.
type Error struct {
	Op    string
	Slot  int
	Err   error
	Cause error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Slot != 0 {
		b.WriteString(" slot ")
		b.WriteString(strconv.Itoa(e.Slot))
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("failed")
	}
	if e.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	return b.String()
}

// Unwrap gives the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// ContextError turns the error of a context that is done into a driver
// error: a deadline becomes ErrTimeout (context.DeadlineExceeded stays
// matchable as its cause), a cancellation stays context.Canceled.
func ContextError(op string, slot int, ctxErr error) error {
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		return &Error{Op: op, Slot: slot, Err: ErrTimeout, Cause: ctxErr}
	}
	return &Error{Op: op, Slot: slot, Err: ctxErr}
}

// Retryable reports whether err is a failure that may go away by itself
// (unreachable or timeout), as opposed to a refusal or a missing slot.
func Retryable(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrTimeout)
}
