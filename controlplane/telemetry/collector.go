package telemetry

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Collector exports the latest sample as Prometheus metrics:
//
//	racklet_node_power_watts{node}            gauge
//	racklet_node_energy_joules_total{node}    counter (the BMC's accumulator)
//	racklet_node_temperature_celsius{node}    gauge
//	racklet_rack_power_watts                  gauge
//	racklet_rack_energy_joules_total          counter (the RMC's accumulator)
//	racklet_rack_inlet_celsius                gauge
//	racklet_fan_rpm{fan}                      gauge
//	racklet_fan_duty_percent{fan}             gauge
//	racklet_fans_failsafe                     gauge, 1 while the fans run at 100% on an alarm
//	racklet_telemetry_sample_timestamp_seconds gauge, when the sample was taken
//
// A node whose BMC did not answer in the sample has no series in it. Past
// FreshFor, only the timestamp is exported (alert on its age). The figures
// are the hardware's: the energy counters come from the power monitors, so
// they continue across leader changes (whichever member samples, it reads
// the same accumulators) and reset only when a monitor does.
type Collector struct {
	l *Latest

	nodeWatts, nodeJoules, nodeCelsius  *prometheus.Desc
	rackWatts, rackJoules, rackInlet    *prometheus.Desc
	fanRPM, fanDuty, failSafe, sampleTS *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector of l's sample.
func NewCollector(l *Latest) *Collector {
	d := prometheus.NewDesc
	node, fan := []string{"node"}, []string{"fan"}
	return &Collector{
		l:           l,
		nodeWatts:   d("racklet_node_power_watts", "Power drawn by the node, from its BMC's power monitor.", node, nil),
		nodeJoules:  d("racklet_node_energy_joules_total", "Energy drawn by the node, the BMC power monitor's accumulator.", node, nil),
		nodeCelsius: d("racklet_node_temperature_celsius", "The node's SoC temperature.", node, nil),
		rackWatts:   d("racklet_rack_power_watts", "Power drawn by the rack at its supply (units, RMC, fans), from the RMC's monitor.", nil, nil),
		rackJoules:  d("racklet_rack_energy_joules_total", "Energy drawn by the rack at its supply, the RMC power monitor's accumulator.", nil, nil),
		rackInlet:   d("racklet_rack_inlet_celsius", "Air temperature at the rack's inlet.", nil, nil),
		fanRPM:      d("racklet_fan_rpm", "Fan speed from its tachometer.", fan, nil),
		fanDuty:     d("racklet_fan_duty_percent", "Duty the RMC drives the fan with.", fan, nil),
		failSafe:    d("racklet_fans_failsafe", "1 while the fans run at 100% because of an alarm (failed fan, stale or missing sensor, critical temperature).", nil, nil),
		sampleTS:    d("racklet_telemetry_sample_timestamp_seconds", "When the latest telemetry sample was taken (Unix time).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.nodeWatts, c.nodeJoules, c.nodeCelsius, c.rackWatts, c.rackJoules, c.rackInlet, c.fanRPM, c.fanDuty, c.failSafe, c.sampleTS} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s, age, ok := c.l.Get()
	if !ok {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.sampleTS, float64(s.Time.UnixNano())/1e9)
	if age > FreshFor(s) {
		return
	}
	for _, n := range s.Nodes {
		if !n.OK {
			continue
		}
		gauge(c.nodeWatts, n.Watts, n.Name)
		gauge(c.nodeCelsius, n.Celsius, n.Name)
		if n.Joules > 0 {
			ch <- prometheus.MustNewConstMetric(c.nodeJoules, prometheus.CounterValue, n.Joules, n.Name)
		}
	}
	if s.Totals.OK {
		gauge(c.rackWatts, s.Totals.Watts)
		gauge(c.rackInlet, s.Totals.InletCelsius)
		if s.Totals.Joules > 0 {
			ch <- prometheus.MustNewConstMetric(c.rackJoules, prometheus.CounterValue, s.Totals.Joules)
		}
	}
	for _, f := range s.Fans {
		name := strconv.Itoa(f.Fan)
		gauge(c.fanRPM, f.RPM, name)
		gauge(c.fanDuty, f.Duty, name)
	}
	fs := 0.0
	if s.FailSafe {
		fs = 1
	}
	gauge(c.failSafe, fs)
}

// Value finds a sample's value in families parsed from an exposition
// (expfmt): the first metric of family whose labels include labels.
// For tests and tools that check scraped figures.
func Value(mfs map[string]*dto.MetricFamily, family string, labels map[string]string) (float64, bool) {
	mf, ok := mfs[family]
	if !ok {
		return 0, false
	}
metric:
	for _, m := range mf.GetMetric() {
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue metric
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}
