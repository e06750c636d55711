package power

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the power reconciler's own Prometheus metrics (the runtime
// exports the generic reconcile metrics).
type metrics struct {
	actions     *prometheus.CounterVec // racklet_power_actions_total{operation,result}
	refusals    prometheus.Counter     // racklet_power_refusals_total
	budgetWaits prometheus.Counter     // racklet_power_budget_waits_total
}

// Results of an action, the result label of racklet_power_actions_total.
const (
	resultSucceeded = "succeeded"
	resultFailed    = "failed"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racklet_power_actions_total",
			Help: "Power actions on BMCs, by operation (power.on, power.off, power.cycle) and result (succeeded, failed).",
		}, []string{"operation", "result"}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racklet_power_refusals_total",
			Help: "Desired power states the power reconciler refused (quorum guard).",
		}),
		budgetWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racklet_power_budget_waits_total",
			Help: "Power-ons deferred because the rack's power budget had no room for their inrush.",
		}),
	}
	for _, op := range []string{opOn, opOff, opCycle} {
		for _, r := range []string{resultSucceeded, resultFailed} {
			m.actions.WithLabelValues(op, r)
		}
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.actions, m.refusals, m.budgetWaits} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering power reconciler metrics: %w", err)
		}
	}
	return m, nil
}
