package devrack

import (
	"context"
	"errors"
	"fmt"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/reconcilers/hardware"
	"github.com/racklet/rack/sim"
)

// FansConfig configures the simulated fans and the fan reconciler that
// runs on every member (it acts on the leader only).
type FansConfig struct {
	// Profile is the RMC's fans (default sim.DefaultFans()).
	Profile sim.FanProfile
	// The fan reconciler: its policy (appended to the log when the log
	// has none), sampling interval (default 1s), call timeout, or none.
	hardware.FansConfig
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
	err := hardware.SeedFanPolicy(ctx, m.EventLog(), r.cfg.Rack, m.Name(), "devrack", r.cfg.Fans.FansConfig)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("devrack: %w", err)
	}
	return nil
}
