package boot

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the boot reconciler's own Prometheus metrics.
type metrics struct {
	results *prometheus.CounterVec // racklet_boot_results_total{result}
	verify  prometheus.Histogram   // racklet_boot_verify_duration_seconds
}

// How a boot ended, the result label of racklet_boot_results_total.
const (
	resultReady   = "ready"
	resultFailed  = "failed"
	resultRefused = "refused"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racklet_boot_results_total",
			Help: "Boots the boot reconciler saw end, by result: ready, failed (a stage timed out or could not start) or refused (the image did not verify).",
		}, []string{"result"}),
		verify: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "racklet_boot_verify_duration_seconds",
			Help:    "Time to fetch and verify an OS image and its manifest.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 8),
		}),
	}
	for _, r := range []string{resultReady, resultFailed, resultRefused} {
		m.results.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.results, m.verify} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering boot reconciler metrics: %w", err)
		}
	}
	return m, nil
}
