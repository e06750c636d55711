// Package hardware wires the reconcilers that drive a rack's hardware for
// one control-plane member: power, boot, presence (hot swap), fans and,
// with an image repository, firmware updates. They share one reconciler
// runtime (they act only while the member leads) and one
// drivers.Backplane: the simulator's, or drivers/smbus on the backplane
// SMBus.
//
// rackd runs it when it is given a driver (rackd --driver); sim/devrack
// runs it on every simulated member. New builds the runtime; the caller
// runs it (Runtime.Run) and stops it by cancelling the context, before it
// closes the member.
package hardware

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	fw "github.com/racklet/rack/firmware"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/reconcilers/boot"
	"github.com/racklet/rack/reconcilers/fans"
	"github.com/racklet/rack/reconcilers/firmware"
	"github.com/racklet/rack/reconcilers/power"
	"github.com/racklet/rack/reconcilers/presence"
)

// ErrInvalid: the configuration is malformed.
var ErrInvalid = errors.New("hardware: invalid config")

// Member is what the reconcilers need of the control-plane member they run
// on. *member.Member implements it.
type Member interface {
	Name() string
	// EventLog is the rack's log (either store).
	EventLog() eventlog.Log
	// LeaderCh says when this member leads.
	LeaderCh() <-chan bool
	// Registry receives the reconcilers' metrics.
	Registry() *prometheus.Registry
	// PublishTelemetry sends a fan/temperature/energy sample out (NATS,
	// the API, /metrics).
	PublishTelemetry(ctx context.Context, s telemetry.Sample) error
	// RemoveMember takes a member out of the control plane (the presence
	// reconciler, after a member's unit was pulled out).
	RemoveMember(ctx context.Context, name string) error
}

// Config configures the hardware reconcilers of one member. Member, Rack
// and Backplane are required; zero values elsewhere take each reconciler's
// defaults.
type Config struct {
	Member    Member
	Rack      string
	Backplane drivers.Backplane

	Power    PowerConfig
	Boot     BootConfig
	Presence PresenceConfig
	Fans     FansConfig
	Firmware FirmwareConfig

	// Logger defaults to slog.Default(); each reconciler logs with the
	// member's name.
	Logger *slog.Logger
}

// PowerConfig configures the power reconciler (reconcilers/power).
type PowerConfig struct {
	// ObserveInterval: how often every BMC is read.
	ObserveInterval time.Duration
	// BudgetWatts is the rack's power budget for staggered power-on (0:
	// none).
	BudgetWatts float64
	// UnreachableRetry: how often a BMC marked unreachable is tried again.
	UnreachableRetry time.Duration
}

// BootConfig configures the boot reconciler (reconcilers/boot). It always
// runs: without keys every network boot is refused, local boots work.
type BootConfig struct {
	// Keyring holds the keys trusted to sign OS images.
	Keyring fw.Keyring
	// RootCAs are the CAs trusted for image servers (nil: the system's).
	RootCAs *x509.CertPool
	// Timeouts of the boot stages (zero fields: boot.DefaultTimeouts).
	Timeouts boot.Timeouts
	// PollInterval: how often a booting node's stage is read.
	PollInterval time.Duration
}

// PresenceConfig configures the presence (hot swap) reconciler
// (reconcilers/presence).
type PresenceConfig struct {
	// Disabled runs no presence reconciler.
	Disabled bool
	// Interval: how often every slot's presence is read.
	Interval time.Duration
	// MemberGrace: how long after its unit was pulled out a member is
	// removed from the control plane.
	MemberGrace time.Duration
	// NodeName names the node of a unit inserted in a slot (default
	// "n<slot>"); MemberOf names the member a slot's unit hosts ("" for
	// none; default none).
	NodeName func(slot int) string
	MemberOf func(slot int) string
	// DefaultPower is the desired power of an inserted unit (default on).
	DefaultPower events.PowerState
}

// FansConfig configures the fan reconciler (reconcilers/fans).
type FansConfig struct {
	// Disabled runs no fan reconciler.
	Disabled bool
	// Policy is run while the log holds none (nil: fans.DefaultPolicy()).
	// SeedFanPolicy records it in the log.
	Policy *events.FanPolicy
	// Interval is the sampling period; CallTimeout bounds each driver
	// call of a sample.
	Interval    time.Duration
	CallTimeout time.Duration
}

// FirmwareConfig configures the firmware update reconciler
// (reconcilers/firmware). It runs only with Images.
type FirmwareConfig struct {
	// Images is the signed image repository (e.g. firmware.Dir); nil runs
	// no firmware reconciler.
	Images fw.Repository
	// Trusted are the keys trusted to sign firmware; required with Images.
	Trusted fw.Keyring
	// Backplane reaches BMCs that speak the firmware protocol (default
	// Config.Backplane; its BMCs must implement firmware.Device).
	Backplane drivers.Backplane
	// ObserveInterval, HealthTimeout and PollInterval: see
	// reconcilers/firmware.Config.
	ObserveInterval time.Duration
	HealthTimeout   time.Duration
	PollInterval    time.Duration
}

// Policy is the fan policy the configuration starts the rack with.
func (c FansConfig) policy() events.FanPolicy {
	if c.Policy == nil {
		return fans.DefaultPolicy()
	}
	return c.Policy.WithDefaults()
}

// New builds the runtime of cfg's reconcilers. Run it with Runtime.Run.
func New(cfg Config) (*reconcilers.Runtime, error) {
	switch {
	case cfg.Member == nil:
		return nil, fmt.Errorf("%w: Member is required", ErrInvalid)
	case cfg.Backplane == nil:
		return nil, fmt.Errorf("%w: Backplane is required", ErrInvalid)
	case !events.ValidName(cfg.Rack):
		return nil, fmt.Errorf("%w: rack %q", ErrInvalid, cfg.Rack)
	case cfg.Firmware.Images != nil && len(cfg.Firmware.Trusted) == 0:
		return nil, fmt.Errorf("%w: a firmware repository needs trusted keys", ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, name := cfg.Member, cfg.Member.Name()
	log, reg, logger := m.EventLog(), m.Registry(), cfg.Logger.With("member", name)

	rt, err := reconcilers.New(reconcilers.Config{Log: log, Leadership: m, Registerer: reg, Logger: logger})
	if err != nil {
		return nil, err
	}
	var rs []reconcilers.Reconciler
	add := func(r reconcilers.Reconciler, err error) error {
		if err != nil {
			return err
		}
		rs = append(rs, r)
		return nil
	}

	p := cfg.Power
	if err := add(power.New(power.Config{
		Log: log, Backplane: cfg.Backplane, Rack: cfg.Rack, Member: name,
		ObserveInterval: p.ObserveInterval, BudgetWatts: p.BudgetWatts, UnreachableRetry: p.UnreachableRetry,
		Registerer: reg, Logger: logger,
	})); err != nil {
		return nil, fmt.Errorf("power reconciler: %w", err)
	}

	b := cfg.Boot
	if err := add(boot.New(boot.Config{
		Log: log, Backplane: cfg.Backplane, Rack: cfg.Rack, Member: name,
		Keyring: b.Keyring, RootCAs: b.RootCAs, Timeouts: b.Timeouts, PollInterval: b.PollInterval,
		Registerer: reg, Logger: logger,
	})); err != nil {
		return nil, fmt.Errorf("boot reconciler: %w", err)
	}

	if pc := cfg.Presence; !pc.Disabled {
		if err := add(presence.New(presence.Config{
			Log: log, Backplane: cfg.Backplane, Rack: cfg.Rack, Member: name,
			Members: m, MemberGrace: pc.MemberGrace, Interval: pc.Interval,
			NodeName: pc.NodeName, MemberOf: pc.MemberOf, DefaultPower: pc.DefaultPower,
			Registerer: reg, Logger: logger,
		})); err != nil {
			return nil, fmt.Errorf("presence reconciler: %w", err)
		}
	}

	if fc := cfg.Fans; !fc.Disabled {
		if err := add(fans.New(fans.Config{
			Log: log, Backplane: cfg.Backplane, Rack: cfg.Rack, Member: name,
			Policy: fc.policy(), Interval: fc.Interval, CallTimeout: fc.CallTimeout, Publish: m.PublishTelemetry,
			Registerer: reg, Logger: logger,
		})); err != nil {
			return nil, fmt.Errorf("fan reconciler: %w", err)
		}
	}

	if f := cfg.Firmware; f.Images != nil {
		bp := f.Backplane
		if bp == nil {
			bp = cfg.Backplane
		}
		if err := add(firmware.New(firmware.Config{
			Log: log, Backplane: bp, Images: f.Images, Trusted: f.Trusted, Rack: cfg.Rack, Member: name,
			ObserveInterval: f.ObserveInterval, HealthTimeout: f.HealthTimeout, PollInterval: f.PollInterval,
			Registerer: reg, Logger: logger,
		})); err != nil {
			return nil, fmt.Errorf("firmware reconciler: %w", err)
		}
	}

	for _, r := range rs {
		if err := rt.Register(r); err != nil {
			return nil, err
		}
	}
	return rt, nil
}

// SeedFanPolicy appends cfg's fan policy to the log if the log has none,
// so that the policy in force is always in the log (GET /v1/fan-policy).
// Any member may call it; a policy set meanwhile by someone else is kept
// (the projection's last fanpolicy.set wins, and this one is only
// appended when there is none).
func SeedFanPolicy(ctx context.Context, log eventlog.Log, rack, member, actor string, c FansConfig) error {
	if c.Disabled {
		return nil
	}
	st, err := log.State(ctx)
	if err != nil {
		return err
	}
	if st.Thermal != nil && st.Thermal.Policy != nil {
		return nil
	}
	p := c.policy()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("fan policy: %w", err)
	}
	ev, err := events.New(events.Source(rack, member), events.FanPolicySet, rack, &events.FanPolicySetData{Policy: p})
	if err != nil {
		return err
	}
	ev.Actor = actor
	if _, err := log.Append(ctx, ev); err != nil {
		return fmt.Errorf("setting the fan policy: %w", err)
	}
	return nil
}
