package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/racklet/rack/drivers"
)

// Backplane returns the rack as a drivers.Backplane: what the control
// plane's reconcilers drive.
func (r *Rack) Backplane() drivers.Backplane { return backplane{r} }

type backplane struct{ r *Rack }

var _ drivers.Backplane = backplane{}

func (b backplane) Slots() int { return len(b.r.units) }

func (b backplane) BMC(slot int) (drivers.BMC, error) {
	if err := drivers.CheckSlot(drivers.OpBMC, slot, len(b.r.units)); err != nil {
		return nil, err
	}
	return &bmc{r: b.r, slot: slot}, nil
}

// Present reads the slot's presence pin through the RMC.
func (b backplane) Present(ctx context.Context, slot int) (bool, error) {
	if err := drivers.CheckSlot(drivers.OpPresence, slot, len(b.r.units)); err != nil {
		return false, err
	}
	var present bool
	err := b.r.transact(ctx, drivers.OpPresence, slot, 0, func(now time.Time) error {
		present = b.r.units[slot-1].present
		return nil
	})
	return present, err
}

func (b backplane) RMC() drivers.RMC { return rmc{b.r} }

type rmc struct{ r *Rack }

var _ drivers.RMC = rmc{}

func (m rmc) ReadRack(ctx context.Context) (drivers.RackReadings, error) {
	var rd drivers.RackReadings
	err := m.r.transact(ctx, drivers.OpRackRead, 0, 0, func(now time.Time) error {
		r := m.r
		w := r.rackWattsLocked(now) + r.rmcRng.NormFloat64()*r.cfg.Power.NoiseWatts
		rd = drivers.RackReadings{
			InletCelsius: r.inlet + r.rmcRng.NormFloat64()*r.cfg.Thermal.NoiseCelsius,
			Watts:        max(w, 0),
			Joules:       r.rackJoulesLocked(now) * r.rmcGain,
		}
		return nil
	})
	return rd, err
}

// bmc is the BMC of one slot, reached over the simulated SMBus.
type bmc struct {
	r    *Rack
	slot int
}

var (
	_ drivers.BMC        = (*bmc)(nil)
	_ drivers.BootStager = (*bmc)(nil)
)

func (b *bmc) Slot() int { return b.slot }

func (b *bmc) PowerState(ctx context.Context) (drivers.PowerState, error) {
	var p drivers.PowerState
	err := b.r.transact(ctx, drivers.OpPowerRead, b.slot, b.slot, func(now time.Time) error {
		u := b.r.units[b.slot-1]
		if u.stale != nil {
			p = u.stale.power
		} else {
			p = powerOf(u.on)
		}
		return nil
	})
	return p, err
}

func (b *bmc) SetPower(ctx context.Context, s drivers.PowerState) error {
	return b.r.transact(ctx, drivers.OpPowerSet, b.slot, b.slot, func(now time.Time) error {
		switch s {
		case drivers.PowerOn:
			b.r.powerOnLocked(b.slot, now)
		case drivers.PowerOff:
			b.r.powerOffLocked(b.slot, now, false)
		default:
			return &drivers.Error{Op: drivers.OpPowerSet, Slot: b.slot, Err: drivers.ErrRefused,
				Cause: fmt.Errorf("power state %q is not on or off", string(s))}
		}
		b.r.units[b.slot-1].resume = false
		return nil
	})
}

func (b *bmc) PowerCycle(ctx context.Context) error {
	return b.r.transact(ctx, drivers.OpPowerCycle, b.slot, b.slot, func(now time.Time) error {
		b.r.powerOffLocked(b.slot, now, false)
		b.r.powerOnLocked(b.slot, now)
		return nil
	})
}

func (b *bmc) ReadSensors(ctx context.Context) (drivers.Readings, error) {
	var rd drivers.Readings
	err := b.r.transact(ctx, drivers.OpSensorsRead, b.slot, b.slot, func(now time.Time) error {
		u := b.r.units[b.slot-1]
		if u.stale != nil {
			rd = u.stale.readings
		} else {
			rd = b.r.readingsLocked(u, now)
		}
		return nil
	})
	return rd, err
}

func (b *bmc) BootStage(ctx context.Context) (drivers.BootStage, error) {
	var st drivers.BootStage
	err := b.r.transact(ctx, drivers.OpStageRead, b.slot, b.slot, func(now time.Time) error {
		u := b.r.units[b.slot-1]
		if u.stale != nil {
			st = u.stale.stage
		} else {
			st = b.r.reportedStage(u, now)
		}
		return nil
	})
	return st, err
}

// transact runs one SMBus transaction: to the BMC of slot addr, or to the
// RMC if addr is 0; errors name errSlot. It waits for the bus, spends the
// bus latency (plus a slow BMC's extra) holding it, then, if the target
// answers, runs fn under the rack's lock with the time of completion. A
// target that stops answering NAKs (ErrUnreachable); a hung one releases the
// bus and keeps the caller until its context is done (ErrTimeout). A
// transaction cut short by the context has no effect.
func (r *Rack) transact(ctx context.Context, op string, errSlot, addr int, fn func(now time.Time) error) error {
	if err := ctx.Err(); err != nil {
		return drivers.ContextError(op, errSlot, err)
	}
	if r.isClosed() {
		return &drivers.Error{Op: op, Slot: errSlot, Err: drivers.ErrUnreachable, Cause: ErrClosed}
	}
	select {
	case <-r.closed:
		return &drivers.Error{Op: op, Slot: errSlot, Err: drivers.ErrUnreachable, Cause: ErrClosed}
	case <-ctx.Done():
		return drivers.ContextError(op, errSlot, ctx.Err())
	case r.bus <- struct{}{}:
	}
	held := true
	release := func() {
		if held {
			held = false
			<-r.bus
		}
	}
	defer release()

	latency := r.cfg.BusLatency
	if addr > 0 {
		r.mu.Lock()
		latency += r.units[addr-1].slow
		r.mu.Unlock()
	}
	if err := r.sleep(ctx, latency); err != nil {
		return waitErr(ctx, op, errSlot, err)
	}

	r.mu.Lock()
	answers, hung := r.rackOn, false
	if addr > 0 {
		u := r.units[addr-1]
		answers = answers && u.present && u.slotOn && !u.nak
		hung = answers && u.hung
	}
	if hung {
		r.mu.Unlock()
		release()
		select {
		case <-ctx.Done():
			return drivers.ContextError(op, errSlot, ctx.Err())
		case <-r.closed:
			return &drivers.Error{Op: op, Slot: errSlot, Err: drivers.ErrUnreachable, Cause: ErrClosed}
		}
	}
	if !answers {
		r.mu.Unlock()
		return &drivers.Error{Op: op, Slot: errSlot, Err: drivers.ErrUnreachable, Cause: fmt.Errorf("no answer from %s", target(addr))}
	}
	err := fn(r.clock.Now())
	r.mu.Unlock()
	r.deliver()
	return err
}

func target(addr int) string {
	if addr == 0 {
		return "rmc"
	}
	return fmt.Sprintf("bmc %d", addr)
}

// sleep waits d on the wall clock, or until ctx is done or the rack closed.
func (r *Rack) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.closed:
		return ErrClosed
	}
}

func waitErr(ctx context.Context, op string, slot int, err error) error {
	if err == ErrClosed {
		return &drivers.Error{Op: op, Slot: slot, Err: drivers.ErrUnreachable, Cause: ErrClosed}
	}
	return drivers.ContextError(op, slot, ctx.Err())
}

func (r *Rack) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}
