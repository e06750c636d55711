package devrack

import (
	"cmp"
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
			PollInterval: cmp.Or(c.Boot.PollInterval, 100*time.Millisecond),
		},
		Presence: hardware.PresenceConfig{
			Disabled: c.Boot.PresenceInterval < 0,
			Interval: cmp.Or(c.Boot.PresenceInterval, time.Second), MemberGrace: c.Boot.MemberGrace,
			NodeName: NodeName, MemberOf: r.memberOf, DefaultPower: c.Boot.DefaultPower,
		},
		Fans: c.Fans.FansConfig,
	}
	if c.Firmware.Dir != "" {
		fp, err := r.firmware()
		if err != nil {
			return hardware.Config{}, err
		}
		hc.Firmware = hardware.FirmwareConfig{
			Images: firmware.Dir(c.Firmware.Dir), Trusted: fp.trusted, Backplane: fp.bp,
			ObserveInterval: cmp.Or(c.Firmware.ObserveInterval, 2*time.Second),
			HealthTimeout:   cmp.Or(c.Firmware.HealthTimeout, 30*time.Second),
			PollInterval:    50 * time.Millisecond,
		}
	}
	return hc, nil
}
