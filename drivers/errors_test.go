package drivers_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/racklet/rack/drivers"
)

func TestError(t *testing.T) {
	cause := errors.New("nak at 0x21")
	tests := []struct {
		name      string
		err       error
		msg       string
		is        []error
		isNot     []error
		slot      int
		retryable bool
	}{
		{
			name: "unreachable with cause",
			err:  &drivers.Error{Op: drivers.OpPowerSet, Slot: 3, Err: drivers.ErrUnreachable, Cause: cause},
			msg:  "power.set slot 3: drivers: unreachable: nak at 0x21",
			is:   []error{drivers.ErrUnreachable, cause}, isNot: []error{drivers.ErrTimeout},
			slot: 3, retryable: true,
		},
		{
			name: "rmc refused",
			err:  &drivers.Error{Op: drivers.OpRackRead, Err: drivers.ErrRefused},
			msg:  "rack.read: drivers: refused",
			is:   []error{drivers.ErrRefused}, isNot: []error{drivers.ErrUnreachable},
		},
		{
			name: "deadline",
			err:  drivers.ContextError(drivers.OpPowerRead, 2, context.DeadlineExceeded),
			msg:  "power.read slot 2: drivers: timeout: context deadline exceeded",
			is:   []error{drivers.ErrTimeout, context.DeadlineExceeded}, isNot: []error{context.Canceled},
			slot: 2, retryable: true,
		},
		{
			name: "canceled",
			err:  drivers.ContextError(drivers.OpPowerRead, 2, context.Canceled),
			msg:  "power.read slot 2: context canceled",
			is:   []error{context.Canceled}, isNot: []error{drivers.ErrTimeout},
			slot: 2,
		},
		{
			name: "wrapped no slot",
			err:  fmt.Errorf("reconciling n3: %w", drivers.CheckSlot(drivers.OpBMC, 9, 5)),
			msg:  "reconciling n3: bmc slot 9: drivers: no such slot: slot 9 is not in 1..5",
			is:   []error{drivers.ErrNoSlot}, slot: 9,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.msg {
				t.Errorf("Error() = %q, want %q", got, tc.msg)
			}
			for _, e := range tc.is {
				if !errors.Is(tc.err, e) {
					t.Errorf("not errors.Is %v", e)
				}
			}
			for _, e := range tc.isNot {
				if errors.Is(tc.err, e) {
					t.Errorf("errors.Is %v", e)
				}
			}
			var de *drivers.Error
			if !errors.As(tc.err, &de) {
				t.Fatalf("%v is not a *drivers.Error", tc.err)
			}
			if de.Slot != tc.slot {
				t.Errorf("slot = %d, want %d", de.Slot, tc.slot)
			}
			if got := drivers.Retryable(tc.err); got != tc.retryable {
				t.Errorf("Retryable = %v, want %v", got, tc.retryable)
			}
		})
	}
}

func TestCheckSlot(t *testing.T) {
	for _, tc := range []struct {
		slot int
		ok   bool
	}{{0, false}, {1, true}, {5, true}, {6, false}, {-1, false}} {
		if err := drivers.CheckSlot("x", tc.slot, 5); (err == nil) != tc.ok {
			t.Errorf("CheckSlot(%d, 5) = %v", tc.slot, err)
		}
	}
}

func TestPowerStateValid(t *testing.T) {
	for s, want := range map[drivers.PowerState]bool{drivers.PowerOn: true, drivers.PowerOff: true, "cycle": false, "": false} {
		if got := s.Valid(); got != want {
			t.Errorf("%q.Valid() = %v, want %v", s, got, want)
		}
	}
}
