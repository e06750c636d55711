package member

import (
	"context"
	"fmt"

	"github.com/racklet/rack/controlplane/telemetry"
)

// startTelemetry sets up the member's view of the rack's telemetry: the
// latest sample, kept up to date from NATS (racklet.<rack>.telemetry,
// published by the leader's fan reconciler) and exported on /metrics. The
// subscription ends with the member's NATS connection.
func (m *Member) startTelemetry() error {
	m.telemetry = telemetry.NewLatest(nil)
	if _, err := telemetry.Subscribe(m.nc, m.cfg.Rack, m.telemetry, m.logger); err != nil {
		return err
	}
	if err := m.registry.Register(telemetry.NewCollector(m.telemetry)); err != nil {
		return fmt.Errorf("registering the telemetry collector: %w", err)
	}
	return nil
}

// Telemetry is the latest rack sample this member has received.
func (m *Member) Telemetry() *telemetry.Latest { return m.telemetry }

// PublishTelemetry keeps a sample this member took (as the leader) and
// publishes it to every member. It is the fan reconciler's Publish hook.
func (m *Member) PublishTelemetry(_ context.Context, s telemetry.Sample) error {
	m.telemetry.Put(s)
	return telemetry.Publish(m.nc, s)
}
