package smbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
)

// device is one controller on the bus: register reads and writes with
// version check, retries and error mapping.
type device struct {
	bus      i2c.Bus
	addr     uint16
	attempts int
	backoff  time.Duration
	log      *slog.Logger
	// verified: the device answered register 0x00 with our version, and
	// has answered every call since.
	verified atomic.Bool
}

// read reads reg and hands its payload to decode; a decode error counts as
// a corrupt frame. Errors name op and slot.
func (d *device) read(ctx context.Context, op string, slot int, reg firmware.Register, decode func(p []byte) error) error {
	if err := d.check(ctx, op, slot); err != nil {
		return err
	}
	return d.readRaw(ctx, op, slot, reg, decode)
}

// write writes payload to reg.
func (d *device) write(ctx context.Context, op string, slot int, reg firmware.Register, payload []byte) error {
	if err := d.check(ctx, op, slot); err != nil {
		return err
	}
	w, err := firmware.EncodeWrite(d.addr, reg, payload)
	if err != nil {
		return &drivers.Error{Op: op, Slot: slot, Err: drivers.ErrRefused, Cause: err}
	}
	return d.retry(ctx, op, slot, func() error { return d.tx(ctx, w, nil) })
}

// writeImage writes payload to an image register. The device records why
// it refuses an image write in firmware.RegImageStatus: after a failed
// attempt the status is read, and a refusal of this very frame ends the
// call at once with drivers.ErrRefused wrapping a *firmware.StatusError;
// a status saying the frame was accepted (its acknowledge lost) is
// success. Anything else is retried like any write.
func (d *device) writeImage(ctx context.Context, op string, slot int, reg firmware.Register, payload []byte) error {
	if err := d.check(ctx, op, slot); err != nil {
		return err
	}
	w, err := firmware.EncodeWrite(d.addr, reg, payload)
	if err != nil {
		return &drivers.Error{Op: op, Slot: slot, Err: drivers.ErrRefused, Cause: err}
	}
	return d.retry(ctx, op, slot, func() error {
		err := d.tx(ctx, w, nil)
		if err == nil || ctx.Err() != nil {
			return err
		}
		st, serr := d.imageStatus(ctx)
		switch {
		case serr != nil || !st.About(w):
			return err
		case st.Code == firmware.StatusAccepted:
			return nil
		case st.Code.Refused():
			return &refusal{&firmware.StatusError{Reg: reg, Code: st.Code}}
		}
		return err
	})
}

// imageStatus reads (and so clears) the image status, in one attempt.
func (d *device) imageStatus(ctx context.Context) (firmware.ImageStatus, error) {
	r := make([]byte, firmware.ReadLen(firmware.RegImageStatus))
	if err := d.tx(ctx, firmware.ReadRequest(firmware.RegImageStatus), r); err != nil {
		return firmware.ImageStatus{}, err
	}
	p, err := firmware.DecodeReadResponse(d.addr, firmware.RegImageStatus, r)
	if err != nil {
		return firmware.ImageStatus{}, err
	}
	return firmware.DecodeImageStatus(p)
}

// refusal is a device's answer that retrying will not change.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }

// check fails on a done context, and makes sure the device speaks our
// protocol version.
func (d *device) check(ctx context.Context, op string, slot int) error {
	if err := ctx.Err(); err != nil {
		return drivers.ContextError(op, slot, err)
	}
	if d.verified.Load() {
		return nil
	}
	var v uint16
	err := d.readRaw(ctx, op, slot, firmware.RegProtocolVersion, func(p []byte) (err error) {
		v, err = firmware.DecodeProtocolVersion(p)
		return err
	})
	if err != nil {
		return err
	}
	if v != firmware.ProtocolVersion {
		return &drivers.Error{Op: op, Slot: slot, Err: drivers.ErrRefused, Cause: &VersionError{Firmware: v, Driver: firmware.ProtocolVersion}}
	}
	d.verified.Store(true)
	return nil
}

func (d *device) readRaw(ctx context.Context, op string, slot int, reg firmware.Register, decode func(p []byte) error) error {
	w := firmware.ReadRequest(reg)
	return d.retry(ctx, op, slot, func() error {
		// A fresh buffer each attempt: an abandoned Tx may still fill the last.
		r := make([]byte, firmware.ReadLen(reg))
		if err := d.tx(ctx, w, r); err != nil {
			return err
		}
		p, err := firmware.DecodeReadResponse(d.addr, reg, r)
		if err != nil {
			return err
		}
		return decode(p)
	})
}

// retry runs attempt up to d.attempts times while it fails and ctx lasts.
func (d *device) retry(ctx context.Context, op string, slot int, attempt func() error) error {
	var last error
	n := 0
	for n < d.attempts {
		if n > 0 {
			if err := sleep(ctx, time.Duration(n)*d.backoff); err != nil {
				return drivers.ContextError(op, slot, err)
			}
		}
		n++
		if err := ctx.Err(); err != nil {
			return drivers.ContextError(op, slot, err)
		}
		err := attempt()
		if err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return drivers.ContextError(op, slot, cerr)
		}
		var ref *refusal
		if errors.As(err, &ref) {
			return &drivers.Error{Op: op, Slot: slot, Err: drivers.ErrRefused, Cause: ref.err}
		}
		last = err
		d.log.Debug("smbus transaction failed", "op", op, "attempt", n, "of", d.attempts, "err", err)
	}
	// The device may have been swapped meanwhile: check its version again.
	d.verified.Store(false)
	kind := drivers.ErrUnreachable
	if errors.Is(last, firmware.ErrBusTimeout) {
		kind = drivers.ErrTimeout
	}
	return &drivers.Error{Op: op, Slot: slot, Err: kind, Cause: fmt.Errorf("smbus: 0x%02x: %d attempts: %w", d.addr, n, last)}
}

// tx runs one bus transaction, returning when ctx is done at the latest.
func (d *device) tx(ctx context.Context, w, r []byte) error {
	if cb, ok := d.bus.(ContextBus); ok {
		return cb.TxContext(ctx, d.addr, w, r)
	}
	done := make(chan error, 1)
	// Tx cannot be interrupted: if ctx ends first, the goroutine ends with
	// Tx (bounded by the bus's own timeout) and its result is dropped.
	go func() { done <- d.bus.Tx(d.addr, w, r) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
