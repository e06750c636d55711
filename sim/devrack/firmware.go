package devrack

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/racklet/rack/drivers/smbus"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/sim"
)

// FirmwareConfig configures the firmware update reconciler. It is off
// unless Dir is set.
type FirmwareConfig struct {
	// Dir is the image repository (firmware.Dir): bmc-<version>.bin with
	// its manifest beside it, as `rackctl firmware sign` leaves them.
	Dir string
	// Keys are the public key files trusted to sign images (PEM, as
	// `rackctl firmware keygen` writes them); Trusted, if set, is used
	// instead. One of them is required with Dir.
	Keys    []string
	Trusted firmware.Keyring
	// Version is the version every BMC starts with (default 1.0.0).
	Version firmware.FirmwareVersion
	// ObserveInterval: how often each BMC's firmware is read (default 2s).
	ObserveInterval time.Duration
	// HealthTimeout: how long a new image may take to bring its unit to
	// ready (default 30s).
	HealthTimeout time.Duration
}

// firmwarePath is the rack's SMBus with emulated BMC firmware (one per
// rack: the firmware's A/B slots live in it), reached by every member's
// firmware reconciler through the SMBus driver.
type firmwarePath struct {
	once    sync.Once
	err     error
	bus     *sim.FirmwareBus
	bp      *smbus.Backplane
	trusted firmware.Keyring
}

// firmware builds the rack's firmware path on first use.
func (r *Rack) firmware() (*firmwarePath, error) {
	fp := &r.fw
	fp.once.Do(func() {
		c := r.cfg.Firmware
		fp.trusted = c.Trusted
		if len(fp.trusted) == 0 {
			if len(c.Keys) == 0 {
				fp.err = errors.New("devrack: firmware: a repository needs trusted keys (Keys or Trusted)")
				return
			}
			if fp.trusted, fp.err = firmware.ReadKeyring(c.Keys...); fp.err != nil {
				fp.err = fmt.Errorf("devrack: firmware: %w", fp.err)
				return
			}
		}
		if fp.bus, fp.err = r.Sim.FirmwareBus(sim.FirmwareConfig{Version: c.Version}); fp.err != nil {
			return
		}
		fp.bp, fp.err = smbus.New(smbus.Config{Bus: fp.bus, Slots: r.Sim.Slots(), Logger: r.log.With("component", "smbus")})
	})
	return fp, fp.err
}

// FirmwareBus is the rack's SMBus with emulated BMC firmware, for wire
// faults and BreakTrial; nil if no firmware repository is configured or
// no member has started.
func (r *Rack) FirmwareBus() *sim.FirmwareBus {
	if r.cfg.Firmware.Dir == "" {
		return nil
	}
	fp, err := r.firmware()
	if err != nil {
		return nil
	}
	return fp.bus
}
