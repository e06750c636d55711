package sim

import (
	"fmt"
	"slices"
	"time"
)

// FaultKind names a kind of injected fault, for counts and chaos reports.
type FaultKind string

const (
	FaultSlotPower      FaultKind = "slot-power"
	FaultRackPower      FaultKind = "rack-power"
	FaultBMCHang        FaultKind = "bmc-hang"
	FaultBMCSlow        FaultKind = "bmc-slow"
	FaultBMCUnreachable FaultKind = "bmc-unreachable"
	FaultBMCStale       FaultKind = "bmc-stale"
	FaultPartition      FaultKind = "partition"
	FaultInlet          FaultKind = "inlet-temperature"
	FaultFanStuck       FaultKind = "fan-stuck"
	FaultUnitHeat       FaultKind = "unit-heat"
)

// Network is the control plane's network between its members, as far as
// the simulator needs it. The simulator does not own the network: the
// control plane's wiring implements this and hands it in Config.Network.
type Network interface {
	// Partition splits the members into groups that reach only their own
	// group; members named in no group are cut off from all.
	Partition(groups ...[]string) error
	// Heal restores full connectivity.
	Heal() error
}

// injectedLocked counts and logs a fault.
func (r *Rack) injectedLocked(kind FaultKind, attrs ...any) {
	r.faults[kind]++
	r.log.Info("fault injected", append([]any{"kind", string(kind)}, attrs...)...)
}

func (r *Rack) clearedLocked(kind FaultKind, attrs ...any) {
	r.log.Info("fault cleared", append([]any{"kind", string(kind)}, attrs...)...)
}

// PullSlotPower cuts a slot's power: its unit dies at once without a
// shutdown (OnPower reports it) and its BMC, powered from the unit, becomes
// unreachable. Presence still shows. Each call counts as a fault.
func (r *Rack) PullSlotPower(slot int) error {
	r.mu.Lock()
	u, err := r.unitLocked(slot)
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("sim: pull slot power: %w", err)
	}
	now := r.clock.Now()
	r.settleLocked(u, now)
	r.powerOffLocked(slot, now, true)
	u.slotOn = false
	r.injectedLocked(FaultSlotPower, "slot", slot)
	r.mu.Unlock()
	r.deliver()
	return nil
}

// RestoreSlotPower gives a slot its power back. The unit stays off unless
// Config.RestorePrevious is set and it was on when the power went.
func (r *Rack) RestoreSlotPower(slot int) error {
	r.mu.Lock()
	u, err := r.unitLocked(slot)
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("sim: restore slot power: %w", err)
	}
	now := r.clock.Now()
	r.settleLocked(u, now)
	if !u.slotOn {
		u.slotOn = true
		r.restoreLocked(slot, now)
		r.clearedLocked(FaultSlotPower, "slot", slot)
	}
	r.mu.Unlock()
	r.deliver()
	return nil
}

// PullRackPower cuts the whole rack's power: every unit dies, and every
// BMC and the RMC become unreachable.
func (r *Rack) PullRackPower() {
	r.mu.Lock()
	now := r.clock.Now()
	r.settleAllLocked(now)
	for s := range r.units {
		r.powerOffLocked(s+1, now, true)
	}
	r.rackOn = false
	r.injectedLocked(FaultRackPower)
	r.mu.Unlock()
	r.deliver()
}

// RestoreRackPower gives the rack its power back; units follow the restore
// policy (slots whose own power is pulled stay dark).
func (r *Rack) RestoreRackPower() {
	r.mu.Lock()
	now := r.clock.Now()
	r.settleAllLocked(now)
	if !r.rackOn {
		r.rackOn = true
		r.rmcRebootLocked(now)
		for s := range r.units {
			r.restoreLocked(s+1, now)
		}
		r.clearedLocked(FaultRackPower)
	}
	r.mu.Unlock()
	r.deliver()
}

// bmcFault applies a fault to the BMC of an occupied slot.
func (r *Rack) bmcFault(what string, slot int, kind FaultKind, apply func(u *unit), attrs ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, err := r.unitLocked(slot)
	if err != nil {
		return fmt.Errorf("sim: %s: %w", what, err)
	}
	if !u.present {
		return fmt.Errorf("sim: %s: slot %d: %w", what, slot, ErrEmptySlot)
	}
	apply(u)
	r.injectedLocked(kind, append([]any{"slot", slot}, attrs...)...)
	return nil
}

// HangBMC makes a slot's BMC stop completing transactions: calls block
// until their context is done and fail with drivers.ErrTimeout. A hung BMC
// does not hold the bus (the master gives up on it), so other slots work.
func (r *Rack) HangBMC(slot int) error {
	return r.bmcFault("hang bmc", slot, FaultBMCHang, func(u *unit) { u.hung = true })
}

// SlowBMC adds extra latency to every transaction with a slot's BMC. The
// bus is held meanwhile (clock stretching), so it slows everyone queued
// behind it.
func (r *Rack) SlowBMC(slot int, extra time.Duration) error {
	if extra < 0 {
		return fmt.Errorf("sim: slow bmc: negative latency %v", extra)
	}
	return r.bmcFault("slow bmc", slot, FaultBMCSlow, func(u *unit) { u.slow = extra }, "extra", extra)
}

// DisconnectBMC makes a slot's BMC stop answering (NAK): calls fail with
// drivers.ErrUnreachable after one bus transaction.
func (r *Rack) DisconnectBMC(slot int) error {
	return r.bmcFault("disconnect bmc", slot, FaultBMCUnreachable, func(u *unit) { u.nak = true })
}

// StaleBMC makes a slot's BMC keep reporting the power state, boot stage
// and sensor readings it had now. Commands still reach the unit.
func (r *Rack) StaleBMC(slot int) error {
	return r.bmcFault("stale bmc", slot, FaultBMCStale, func(u *unit) {
		now := r.clock.Now()
		st, _ := r.stageAt(u, now)
		u.stale = &staleView{power: powerOf(u.on), stage: st, readings: r.readingsLocked(u, now)}
	})
}

// HealBMC clears every fault of a slot's BMC (hang, slow, unreachable,
// stale). BMC faults also go with the unit when it is removed; they survive
// pulled power.
func (r *Rack) HealBMC(slot int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, err := r.unitLocked(slot)
	if err != nil {
		return fmt.Errorf("sim: heal bmc: %w", err)
	}
	u.clearFaults()
	r.log.Info("bmc healed", "slot", slot)
	return nil
}

// Partition splits the control plane's network through Config.Network and
// records the fault.
func (r *Rack) Partition(groups ...[]string) error {
	if r.cfg.Network == nil {
		return fmt.Errorf("sim: partition: %w", ErrNoNetwork)
	}
	if err := r.cfg.Network.Partition(groups...); err != nil {
		return fmt.Errorf("sim: partition: %w", err)
	}
	r.mu.Lock()
	r.partition = make([][]string, len(groups))
	for i, g := range groups {
		r.partition[i] = slices.Clone(g)
	}
	r.injectedLocked(FaultPartition, "groups", groups)
	r.mu.Unlock()
	return nil
}

// HealNetwork heals a partition through Config.Network.
func (r *Rack) HealNetwork() error {
	if r.cfg.Network == nil {
		return fmt.Errorf("sim: heal network: %w", ErrNoNetwork)
	}
	if err := r.cfg.Network.Heal(); err != nil {
		return fmt.Errorf("sim: heal network: %w", err)
	}
	r.mu.Lock()
	r.partition = nil
	r.clearedLocked(FaultPartition)
	r.mu.Unlock()
	return nil
}

// Partitioned returns the groups of the partition in force, nil if none.
func (r *Rack) Partitioned() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]string, len(r.partition))
	for i, g := range r.partition {
		out[i] = slices.Clone(g)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// SetInletTemperature changes the rack's inlet air temperature (a hot
// aisle, a failed CRAC); unit temperatures follow with the thermal model.
func (r *Rack) SetInletTemperature(celsius float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settleAllLocked(r.clock.Now())
	r.inlet = celsius
	r.injectedLocked(FaultInlet, "celsius", celsius)
}

// InsertUnit seats a new compute unit in an empty slot. It arrives powered
// off, at inlet temperature, with a healthy BMC.
func (r *Rack) InsertUnit(slot int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, err := r.unitLocked(slot)
	if err != nil {
		return fmt.Errorf("sim: insert unit: %w", err)
	}
	if u.present {
		return fmt.Errorf("sim: insert unit: slot %d: %w", slot, ErrOccupied)
	}
	now := r.clock.Now()
	r.integrateLocked(u, now)
	u.present, u.on, u.resume = true, false, false
	u.temp, u.tempAt = r.inlet, now
	u.clearFaults()
	u.boot = unitBoot{}
	r.log.Info("unit inserted", "slot", slot)
	return nil
}

// RemoveUnit pulls the compute unit out of a slot; if it was on, it dies
// (OnPower reports it). Its BMC's faults go with it.
func (r *Rack) RemoveUnit(slot int) error {
	r.mu.Lock()
	u, err := r.unitLocked(slot)
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("sim: remove unit: %w", err)
	}
	if !u.present {
		r.mu.Unlock()
		return fmt.Errorf("sim: remove unit: slot %d: %w", slot, ErrEmptySlot)
	}
	now := r.clock.Now()
	r.settleLocked(u, now)
	r.powerOffLocked(slot, now, false)
	u.present, u.resume = false, false
	u.clearFaults()
	r.log.Info("unit removed", "slot", slot)
	r.mu.Unlock()
	r.deliver()
	return nil
}
