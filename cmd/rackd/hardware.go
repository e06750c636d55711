package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/drivers/smbus"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/reconcilers/hardware"
	"github.com/racklet/rack/sim"
)

// Drivers rackd can drive the rack's hardware with (--driver).
const (
	driverNone  = "none"
	driverSMBus = "smbus"
	driverSim   = "sim"
)

// hardwareConfig is how rackd drives the rack's hardware: which driver
// and the hardware reconcilers' settings. Its YAML keys are the flags'
// names, beside member.Config's in the --config file.
type hardwareConfig struct {
	Driver string `yaml:"driver"`
	I2CBus string `yaml:"i2c-bus"`
	Slots  int    `yaml:"slots"`
	// SlotMembers maps a slot number to the member its unit hosts.
	SlotMembers map[string]string `yaml:"slot-members"`

	ObserveInterval  time.Duration `yaml:"observe-interval"`
	BudgetWatts      float64       `yaml:"budget-watts"`
	UnreachableRetry time.Duration `yaml:"unreachable-retry"`

	BootKeys         []string      `yaml:"boot-key"`
	BootCA           string        `yaml:"boot-ca"`
	PresenceInterval time.Duration `yaml:"presence-interval"`
	MemberGrace      time.Duration `yaml:"member-grace"`
	DefaultPower     string        `yaml:"default-power"`

	FanPolicy   string        `yaml:"fan-policy"`
	FanInterval time.Duration `yaml:"fan-interval"`

	FirmwareDir  string   `yaml:"firmware-dir"`
	FirmwareKeys []string `yaml:"firmware-pubkey"`

	// What load read from the settings and the files they name.
	loaded loadedHardware
}

// loadedHardware is what the settings' files and the slot map hold.
type loadedHardware struct {
	memberOf  func(slot int) string
	bootKeys  firmware.Keyring
	bootCAs   *x509.CertPool
	fanPolicy *events.FanPolicy
	fwTrusted firmware.Keyring
}

func defaultHardware() hardwareConfig {
	return hardwareConfig{Driver: driverNone, Slots: 6, DefaultPower: string(events.PowerOn)}
}

func (h *hardwareConfig) flags(f *pflag.FlagSet) {
	f.StringVar(&h.Driver, "driver", h.Driver, "how this member drives the rack's hardware when it leads: none (the log and API only), smbus (the backplane SMBus, through --i2c-bus) or sim (a simulated rack inside this rackd, to try it without hardware)")
	f.StringVar(&h.I2CBus, "i2c-bus", h.I2CBus, "smbus driver: the I2C bus of the backplane, a name or a path such as /dev/i2c-1 (default: the first bus)")
	f.IntVar(&h.Slots, "slots", h.Slots, "slots in the rack (smbus: BMCs at the protocol's addresses for slots 1..N)")
	f.StringToStringVar(&h.SlotMembers, "slot-members", h.SlotMembers, "which control-plane member each slot's unit hosts, slot=member pairs (e.g. 1=m1,2=m2,3=m3): the quorum guard counts a member down when its unit is pulled out")
	f.DurationVar(&h.ObserveInterval, "observe-interval", h.ObserveInterval, "how often the power reconciler reads every BMC (default 1s)")
	f.Float64Var(&h.BudgetWatts, "budget-watts", h.BudgetWatts, "the rack's power budget for staggered power-on, units only (0: none)")
	f.DurationVar(&h.UnreachableRetry, "unreachable-retry", h.UnreachableRetry, "how often a BMC marked unreachable is tried again (default 30s)")
	f.StringArrayVar(&h.BootKeys, "boot-key", h.BootKeys, "public key trusted to sign OS images (PEM, as rackctl firmware keygen writes it); repeat for several; without any, network boots are refused")
	f.StringVar(&h.BootCA, "boot-ca", h.BootCA, "CA certificates (PEM) trusted for OS image servers (default: the system's)")
	f.DurationVar(&h.PresenceInterval, "presence-interval", h.PresenceInterval, "how often every slot's presence is read (default 2s)")
	f.DurationVar(&h.MemberGrace, "member-grace", h.MemberGrace, "how long after its unit was pulled out a member is removed from the control plane (default 5m)")
	f.StringVar(&h.DefaultPower, "default-power", h.DefaultPower, "desired power of a unit inserted into an empty slot: on or off")
	f.StringVar(&h.FanPolicy, "fan-policy", h.FanPolicy, "fan policy file (YAML or JSON, as rackctl fan-policy set takes) the rack starts with, if its log has none")
	f.DurationVar(&h.FanInterval, "fan-interval", h.FanInterval, "how often the fan reconciler samples every sensor and sets the fans (default 1s)")
	f.StringVar(&h.FirmwareDir, "firmware-dir", h.FirmwareDir, "firmware image repository (bmc-X.Y.Z.bin with its manifest, as rackctl firmware sign leaves them); enables firmware updates")
	f.StringArrayVar(&h.FirmwareKeys, "firmware-pubkey", h.FirmwareKeys, "public key trusted to sign firmware (PEM); repeat for several; required with --firmware-dir")
}

// load checks the hardware settings and reads the files they name, once,
// so that a bad one stops rackd before anything starts. It reports the
// first invalid setting, naming its flag.
func (h *hardwareConfig) load() error {
	switch h.Driver {
	case driverNone, driverSMBus, driverSim:
	default:
		return fmt.Errorf("invalid driver %q: use none, smbus or sim", h.Driver)
	}
	if h.Driver == driverNone {
		return nil
	}
	if h.Slots < 1 || h.Slots > firmware.MaxSlots {
		return fmt.Errorf("invalid slots %d: use 1 to %d", h.Slots, firmware.MaxSlots)
	}
	memberOf, err := h.memberOf()
	if err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{
		"observe-interval": h.ObserveInterval, "unreachable-retry": h.UnreachableRetry,
		"presence-interval": h.PresenceInterval, "member-grace": h.MemberGrace, "fan-interval": h.FanInterval,
	} {
		if d < 0 {
			return fmt.Errorf("invalid %s %v: want a positive duration", name, d)
		}
	}
	if h.BudgetWatts < 0 {
		return fmt.Errorf("invalid budget-watts %v: want 0 (none) or more", h.BudgetWatts)
	}
	if p := events.PowerState(h.DefaultPower); p != events.PowerOn && p != events.PowerOff {
		return fmt.Errorf("invalid default-power %q: use on or off", h.DefaultPower)
	}
	if h.FirmwareDir != "" && len(h.FirmwareKeys) == 0 {
		return errors.New("firmware-dir needs at least one firmware-pubkey to verify images with")
	}
	l := loadedHardware{memberOf: memberOf}
	if len(h.BootKeys) > 0 {
		if l.bootKeys, err = firmware.ReadKeyring(h.BootKeys...); err != nil {
			return fmt.Errorf("boot-key: %w", err)
		}
	}
	if h.BootCA != "" {
		if l.bootCAs, err = readCertPool(h.BootCA); err != nil {
			return fmt.Errorf("boot-ca: %w", err)
		}
	}
	if h.FanPolicy != "" {
		p, err := readFanPolicy(h.FanPolicy)
		if err != nil {
			return err
		}
		l.fanPolicy = &p
	}
	if len(h.FirmwareKeys) > 0 {
		if l.fwTrusted, err = firmware.ReadKeyring(h.FirmwareKeys...); err != nil {
			return fmt.Errorf("firmware-pubkey: %w", err)
		}
	}
	h.loaded = l
	return nil
}

// memberOf parses --slot-members.
func (h *hardwareConfig) memberOf() (func(slot int) string, error) {
	bySlot := map[int]string{}
	for k, v := range h.SlotMembers {
		slot, err := strconv.Atoi(k)
		if err != nil || slot < 1 || slot > h.Slots {
			return nil, fmt.Errorf("invalid slot-members %s=%s: the slot is a number from 1 to %d", k, v, h.Slots)
		}
		if !events.ValidName(v) {
			return nil, fmt.Errorf("invalid slot-members %s=%s: a member name is 1 to 63 of a-z, 0-9 and -", k, v)
		}
		bySlot[slot] = v
	}
	return func(slot int) string { return bySlot[slot] }, nil
}

// rig is the hardware rackd drives: the backplane, the firmware path, and
// what to release on shutdown.
type rig struct {
	backplane drivers.Backplane
	firmware  drivers.Backplane // BMCs that speak the firmware protocol; nil: none
	close     func() error
}

// openRig opens the driver's hardware.
func (h *hardwareConfig) openRig(logger *slog.Logger) (*rig, error) {
	switch h.Driver {
	case driverSMBus:
		if _, err := host.Init(); err != nil {
			return nil, fmt.Errorf("initialising the host's drivers (periph.io): %w", err)
		}
		if len(i2creg.All()) == 0 {
			return nil, fmt.Errorf("opening the I2C bus %q: this machine has no I2C bus (on a Raspberry Pi: dtparam=i2c_arm=on, and the i2c-dev module loaded for /dev/i2c-*)", h.I2CBus)
		}
		bus, err := i2creg.Open(h.I2CBus)
		if err != nil {
			return nil, fmt.Errorf("opening the I2C bus %q: %w", h.I2CBus, err)
		}
		bp, err := smbus.New(smbus.Config{Bus: bus, Slots: h.Slots, Logger: logger.With("component", "smbus")})
		if err != nil {
			_ = bus.Close()
			return nil, err
		}
		return &rig{backplane: bp, firmware: bp, close: bus.Close}, nil
	case driverSim:
		// The simulated rack: the simulator's backplane for power, boot,
		// presence and fans, and its emulated firmware over the SMBus
		// driver for firmware updates, as rackd dev has.
		r, err := sim.New(sim.Config{Slots: h.Slots, StartOn: true, RestorePrevious: true, Fans: sim.DefaultFans(), Logger: logger.With("component", "sim")})
		if err != nil {
			return nil, err
		}
		rg := &rig{backplane: r.Backplane(), close: func() error { return nil }}
		if h.FirmwareDir != "" {
			bus, err := r.FirmwareBus(sim.FirmwareConfig{})
			if err != nil {
				return nil, err
			}
			if rg.firmware, err = smbus.New(smbus.Config{Bus: bus, Slots: h.Slots, Logger: logger.With("component", "smbus")}); err != nil {
				return nil, err
			}
		}
		return rg, nil
	}
	return nil, fmt.Errorf("driver %q drives no hardware", h.Driver)
}

// config is the hardware reconcilers' configuration for member m on rg,
// from the loaded settings (load).
func (h *hardwareConfig) config(m hardware.Member, rack string, rg *rig, logger *slog.Logger) (hardware.Config, error) {
	l := h.loaded
	hc := hardware.Config{
		Member: m, Rack: rack, Backplane: rg.backplane, Logger: logger,
		Power: hardware.PowerConfig{ObserveInterval: h.ObserveInterval, BudgetWatts: h.BudgetWatts, UnreachableRetry: h.UnreachableRetry},
		Boot:  hardware.BootConfig{Keyring: l.bootKeys, RootCAs: l.bootCAs},
		Presence: hardware.PresenceConfig{
			Interval: h.PresenceInterval, MemberGrace: h.MemberGrace, MemberOf: l.memberOf,
			DefaultPower: events.PowerState(h.DefaultPower),
		},
		Fans: hardware.FansConfig{Interval: h.FanInterval, Policy: l.fanPolicy},
	}
	if h.FirmwareDir != "" {
		if rg.firmware == nil {
			return hardware.Config{}, fmt.Errorf("driver %s cannot update firmware", h.Driver)
		}
		hc.Firmware = hardware.FirmwareConfig{Images: firmware.Dir(h.FirmwareDir), Trusted: l.fwTrusted, Backplane: rg.firmware}
	}
	return hc, nil
}

// runHardware runs the hardware reconcilers of member m until ctx ends.
// It returns once they are set up; done is closed when they have stopped.
// It takes over rg, which it closes when the reconcilers stop (or at once
// if they cannot start).
func (h *hardwareConfig) runHardware(ctx context.Context, rg *rig, m hardware.Member, rack string, logger *slog.Logger) (done <-chan struct{}, err error) {
	hc, err := h.config(m, rack, rg, logger)
	if err != nil {
		_ = rg.close()
		return nil, err
	}
	rt, err := hardware.New(hc)
	if err != nil {
		_ = rg.close()
		return nil, err
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer func() { _ = rg.close() }()
		if err := rt.Run(ctx); err != nil && ctx.Err() == nil {
			logger.Error("hardware reconcilers stopped", "err", err)
		}
	}()
	go func() {
		// Record the fan policy the rack starts with, once the log can
		// take it; a policy already in the log is kept.
		for ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := hardware.SeedFanPolicy(sctx, m.EventLog(), rack, m.Name(), "rackd", hc.Fans)
			cancel()
			if err == nil {
				return
			}
			logger.Debug("fan policy not recorded yet", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	logger.Info("driving the rack's hardware", "driver", h.Driver, "slots", h.Slots)
	return ch, nil
}

// loadConfigFile overlays the YAML file at path on cfg and hw: member
// settings and hardware settings side by side, with the flags' names as
// keys. Unknown keys are errors, so a typo does not fall back to a
// default silently.
func loadConfigFile(path string, cfg *member.Config, hw *hardwareConfig) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	file := struct {
		Member   member.Config  `yaml:",inline"`
		Hardware hardwareConfig `yaml:",inline"`
	}{*cfg, *hw}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("parsing config %s: %w", path, err)
	}
	*cfg, *hw = file.Member, file.Hardware
	return nil
}

// readCertPool reads PEM CA certificates.
func readCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
