package devrack

import (
	"time"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/reconcilers/hardware"
)

// hardware is the configuration of member m's hardware reconcilers
// (power, boot, presence, fans and, with a repository, firmware), driving
// bp. Firmware updates go over the simulated SMBus (drivers/smbus on
// sim.FirmwareBus), not through WrapBackplane: their reboots are firmware
// steps, not power actions.
func (r *Rack) hardware(m *member.Member, bp drivers.Backplane) (hardware.Config, error) {
	c := r.cfg
	hc := hardware.Config{
		Member: m, Rack: c.Rack, Backplane: bp, Logger: r.log,
		Power: hardware.PowerConfig{
			ObserveInterval: c.ObserveInterval, BudgetWatts: c.BudgetWatts, UnreachableRetry: c.UnreachableRetry,
		},
		Boot: hardware.BootConfig{
			Keyring: c.Boot.Keyring, RootCAs: c.Boot.RootCAs, Timeouts: c.Boot.Timeouts,
			PollInterval: orDefault(c.Boot.PollInterval, 100*time.Millisecond),
		},
		Presence: hardware.PresenceConfig{
			Disabled: c.Boot.PresenceInterval < 0,
			Interval: orDefault(c.Boot.PresenceInterval, time.Second), MemberGrace: c.Boot.MemberGrace,
			NodeName: NodeName, MemberOf: r.memberOf, DefaultPower: c.Boot.DefaultPower,
		},
		Fans: r.fans(),
	}
	if c.Firmware.Dir != "" {
		fp, err := r.firmware()
		if err != nil {
			return hardware.Config{}, err
		}
		hc.Firmware = hardware.FirmwareConfig{
			Images: firmware.Dir(c.Firmware.Dir), Trusted: fp.trusted, Backplane: fp.bp,
			ObserveInterval: orDefault(c.Firmware.ObserveInterval, 2*time.Second),
			HealthTimeout:   orDefault(c.Firmware.HealthTimeout, 30*time.Second),
			PollInterval:    50 * time.Millisecond,
		}
	}
	return hc, nil
}

// fans is the fan reconciler's configuration.
func (r *Rack) fans() hardware.FansConfig {
	c := r.cfg.Fans
	return hardware.FansConfig{Disabled: c.Disabled, Policy: c.Policy, Interval: c.Interval, CallTimeout: c.CallTimeout}
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
