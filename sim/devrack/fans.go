package devrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers/hardware"
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

// seedFanPolicy appends the configured fan policy if the log has none, so
// the policy in force is always in the log (GET /v1/fan-policy).
func (r *Rack) seedFanPolicy(ctx context.Context, m *member.Member) error {
	err := hardware.SeedFanPolicy(ctx, m.EventLog(), r.cfg.Rack, m.Name(), "devrack", r.fans())
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("devrack: %w", err)
	}
	return nil
}
