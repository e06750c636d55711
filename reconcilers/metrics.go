package reconcilers

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the runtime's Prometheus metrics, labelled by reconciler.
type metrics struct {
	duration *prometheus.HistogramVec // racklet_reconcile_duration_seconds{reconciler}
	total    *prometheus.CounterVec   // racklet_reconcile_total{reconciler,result}
	errors   *prometheus.CounterVec   // racklet_reconcile_errors_total{reconciler,kind}
	depth    *prometheus.GaugeVec     // racklet_reconcile_queue_depth{reconciler}
	leading  prometheus.Gauge         // racklet_reconcile_leading
}

// Results of a reconcile, the result label of racklet_reconcile_total.
const (
	resultSuccess  = "success"  // done, nothing scheduled
	resultRequeue  = "requeue"  // done, RequeueAfter scheduled
	resultRetry    = "retry"    // error, retried with backoff
	resultTerminal = "terminal" // terminal error, not retried
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "racklet_reconcile_duration_seconds",
			Help:    "Time a Reconcile call took, by reconciler.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"reconciler"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racklet_reconcile_total",
			Help: "Reconcile calls, by reconciler and result (success, requeue, retry, terminal).",
		}, []string{"reconciler", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racklet_reconcile_errors_total",
			Help: "Reconcile calls that failed, by reconciler and kind (retry or terminal).",
		}, []string{"reconciler", "kind"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "racklet_reconcile_queue_depth",
			Help: "Names waiting to be reconciled, by reconciler.",
		}, []string{"reconciler"}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "racklet_reconcile_leading",
			Help: "1 while this member leads and runs its reconcilers, else 0.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.duration, m.total, m.errors, m.depth, m.leading} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering reconciler metrics (one runtime per registry): %w", err)
		}
	}
	return m, nil
}

// reconcilerMetrics are one reconciler's children of the vectors,
// created at registration so they are exported (at zero) from the start.
type reconcilerMetrics struct {
	duration prometheus.Observer
	results  map[string]prometheus.Counter
	errors   map[string]prometheus.Counter // by kind: retry, terminal
	depth    prometheus.Gauge
}

func (m *metrics) forReconciler(name string) *reconcilerMetrics {
	rm := &reconcilerMetrics{
		duration: m.duration.WithLabelValues(name),
		results:  map[string]prometheus.Counter{},
		errors:   map[string]prometheus.Counter{},
		depth:    m.depth.WithLabelValues(name),
	}
	for _, r := range []string{resultSuccess, resultRequeue, resultRetry, resultTerminal} {
		rm.results[r] = m.total.WithLabelValues(name, r)
	}
	for _, k := range []string{resultRetry, resultTerminal} {
		rm.errors[k] = m.errors.WithLabelValues(name, k)
	}
	return rm
}
