package devrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/reconcilers/fans"
	"github.com/racklet/rack/sim"
)

// FansConfig configures the simulated fans and the fan reconciler that
// runs on every member (it acts on the leader only).
type FansConfig struct {
	// Profile is the RMC's fans (default sim.DefaultFans()).
	Profile sim.FanProfile
	// Policy is the fan policy the rack starts with: appended to the log
	// when the log has none (default fans.DefaultPolicy()).
	Policy *events.FanPolicy
	// Interval is the sampling period (default 1s).
	Interval time.Duration
	// CallTimeout bounds each driver call of a sample (default
	// fans.DefaultCallTimeout).
	CallTimeout time.Duration
	// Disabled runs no fan reconciler (and seeds no policy).
	Disabled bool
}

func (c FansConfig) profile() sim.FanProfile {
	if c.Profile == (sim.FanProfile{}) {
		return sim.DefaultFans()
	}
	return c.Profile
}

func (c FansConfig) policy() events.FanPolicy {
	if c.Policy == nil {
		return fans.DefaultPolicy()
	}
	return c.Policy.WithDefaults()
}

// startFans registers the fan reconciler of member m; its samples go out
// through the member (NATS, the member's API and /metrics).
func (r *Rack) startFans(rt *reconcilers.Runtime, m *member.Member, bp drivers.Backplane, name string) error {
	c := r.cfg.Fans
	if c.Disabled {
		return nil
	}
	fr, err := fans.New(fans.Config{
		Log: m.EventLog(), Backplane: bp, Rack: r.cfg.Rack, Member: name,
		Policy: c.policy(), Interval: c.Interval, CallTimeout: c.CallTimeout, Publish: m.PublishTelemetry,
		Registerer: m.Registry(), Logger: r.log.With("member", name),
	})
	if err != nil {
		return err
	}
	return rt.Register(fr)
}

// seedFanPolicy appends the configured fan policy if the log has none, so
// the policy in force is always in the log (GET /v1/fan-policy).
func (r *Rack) seedFanPolicy(ctx context.Context, m *member.Member) error {
	if r.cfg.Fans.Disabled {
		return nil
	}
	st, err := m.EventLog().State(ctx)
	if err != nil {
		return err
	}
	if st.Thermal != nil && st.Thermal.Policy != nil {
		return nil
	}
	p := r.cfg.Fans.policy()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("devrack: fan policy: %w", err)
	}
	ev, err := events.New(events.Source(r.cfg.Rack, m.Name()), events.FanPolicySet, r.cfg.Rack, &events.FanPolicySetData{Policy: p})
	if err != nil {
		return err
	}
	ev.Actor = "devrack"
	if _, err := m.EventLog().Append(ctx, ev); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("devrack: setting the fan policy: %w", err)
	}
	return nil
}
