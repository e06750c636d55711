package fans

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/events"
)

// metrics are the reconciler's own counters; the samples themselves are
// exported by every member from the telemetry (controlplane/telemetry).
type metrics struct {
	raised    *prometheus.CounterVec // racklet_fan_alarms_raised_total{kind}
	shutdowns prometheus.Counter     // racklet_fan_thermal_shutdowns_total
	errors    *prometheus.CounterVec // racklet_fan_errors_total{op}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		raised: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racklet_fan_alarms_raised_total",
			Help: "Alarms the fan reconciler raised, by kind (fan-failed, sensor-stale, sensor-missing, critical-temperature).",
		}, []string{"kind"}),
		shutdowns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racklet_fan_thermal_shutdowns_total",
			Help: "Nodes the fan reconciler shut down for going over the critical temperature.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racklet_fan_errors_total",
			Help: "Failures of the fan reconciler, by operation (fans.duty.set, append, publish).",
		}, []string{"op"}),
	}
	for _, k := range []events.AlarmKind{events.AlarmFanFailed, events.AlarmSensorStale, events.AlarmSensorMissing, events.AlarmCriticalTemperature} {
		m.raised.WithLabelValues(string(k))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.raised, m.shutdowns, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering fan reconciler metrics: %w", err)
		}
	}
	return m, nil
}
