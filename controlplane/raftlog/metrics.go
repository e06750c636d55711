package raftlog

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	applyDuration  prometheus.Histogram
	appendDuration prometheus.Histogram
	eventsApplied  *prometheus.CounterVec
	published      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "racklet_eventlog_fsm_apply_duration_seconds",
			Help:    "Time to apply one committed Raft entry (a batch of events) to the state projection.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
		}),
		appendDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "racklet_eventlog_append_duration_seconds",
			Help:    "Time from an append on this member to its commit and apply (including forwarding to the leader).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		eventsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racklet_eventlog_events_applied_total",
			Help: "Events applied to the log, by type.",
		}, []string{"type"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racklet_eventlog_events_published_total",
			Help: "Committed events this member published to NATS as leader.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.applyDuration, m.appendDuration, m.eventsApplied, m.published)
	}
	return m
}

// raftCollector reads Raft's state on every scrape.
type raftCollector struct {
	r                                  *raft.Raft
	state, term, commit, applied, last *prometheus.Desc
}

func newRaftCollector(r *raft.Raft) *raftCollector {
	return &raftCollector{
		r:       r,
		state:   prometheus.NewDesc("racklet_raft_state", "Raft state of this member: 1 for the current one of follower, candidate, leader, shutdown.", []string{"state"}, nil),
		term:    prometheus.NewDesc("racklet_raft_term", "Current Raft term.", nil, nil),
		commit:  prometheus.NewDesc("racklet_raft_commit_index", "Raft commit index.", nil, nil),
		applied: prometheus.NewDesc("racklet_raft_applied_index", "Raft applied index.", nil, nil),
		last:    prometheus.NewDesc("racklet_raft_last_index", "Last index in the Raft log.", nil, nil),
	}
}

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.term
	ch <- c.commit
	ch <- c.applied
	ch <- c.last
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	cur := c.r.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, s.String())
	}
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(c.r.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(c.r.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(c.r.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(c.r.LastIndex()))
}
