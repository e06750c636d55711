package firmware

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/events"
)

// metrics are the firmware reconciler's own Prometheus metrics (the
// runtime exports the generic reconcile metrics).
type metrics struct {
	updates *prometheus.CounterVec // racklet_firmware_updates_total{result}
	steps   *prometheus.CounterVec // racklet_firmware_steps_total{step,result}
}

// Results of an update, the result label of racklet_firmware_updates_total.
const (
	resultSucceeded = "succeeded"
	resultFailed    = "failed"
	resultRefused   = "refused"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racklet_firmware_updates_total",
			Help: "Firmware updates, by result: succeeded, failed (to be retried) or refused (bad image, rollback attack, failed health check, ...).",
		}, []string{"result"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racklet_firmware_steps_total",
			Help: "Steps of firmware updates, by step and result (succeeded, failed).",
		}, []string{"step", "result"}),
	}
	for _, r := range []string{resultSucceeded, resultFailed, resultRefused} {
		m.updates.WithLabelValues(r)
	}
	for _, s := range events.FirmwareSteps {
		m.steps.WithLabelValues(s, resultSucceeded)
		m.steps.WithLabelValues(s, resultFailed)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.updates, m.steps} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering firmware reconciler metrics: %w", err)
		}
	}
	return m, nil
}
