// Package member runs one control-plane member in a process, the way etcd's
// embed package does: the embedded NATS server (clustered with the other
// members over routes), the event log (Raft over NATS, or an embedded etcd
// member: Config.Store), the HTTP API and metrics. rackd is a thin wrapper
// around it; tests start several members in one process.
package member

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/etcdlog"
	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/natsserver"
	"github.com/racklet/rack/controlplane/natstransport"
	"github.com/racklet/rack/controlplane/raftlog"
	"github.com/racklet/rack/controlplane/telemetry"
)

// Member is a running control-plane member.
type Member struct {
	cfg      Config
	logger   *slog.Logger
	nats     *natsserver.Server
	nc       *nats.Conn
	log      *raftlog.Log // the Raft store's log; nil with the etcd store
	etcd     *etcdBackend // the etcd store; nil with the Raft store
	elog     eventlog.Log // the log in use, whichever the store
	lead     leadership
	store    *eventlog.Store
	cluster  api.Cluster
	http     *http.Server
	httpDone chan struct{}
	apiURL   string
	registry *prometheus.Registry
	// telemetry is the latest rack sample (telemetry.go).
	telemetry *telemetry.Latest

	// stopBackground ends the member's own goroutines (the CRL watch).
	stopBackground context.CancelFunc

	stopOnce sync.Once
	stopErr  error
}

// Start starts a member. It returns once the member serves its API; the
// member may still be electing or joining (GET /readyz tells).
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Member, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sec, err := cfg.loadSecurity(time.Now())
	if err != nil {
		return nil, err
	}
	m := &Member{cfg: cfg, logger: logger.With("member", cfg.Name), registry: prometheus.NewRegistry(), httpDone: make(chan struct{})}
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.nats, err = natsserver.Start(natsserver.Config{
		Name: cfg.Name, Rack: cfg.Rack, Listen: cfg.NATS, ClusterListen: cfg.NATSCluster, ClusterAdvertise: cfg.NATSClusterAdvertise,
		Routes: cfg.Join, Logger: m.logger,
		MaxPayload: natsserver.DefaultMaxPayload,
		Security:   sec.nats(),
	})
	if err != nil {
		return nil, fmt.Errorf("starting nats: %w", err)
	}
	undo := []func(){m.nats.Shutdown}
	fail := func(err error) (*Member, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	m.nc, err = m.nats.Connect("rackd-" + cfg.Name)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, m.nc.Close)
	if err := m.startTelemetry(); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fail(fmt.Errorf("listening for the API: %w", err))
	}
	undo = append(undo, func() { _ = ln.Close() })
	m.apiURL = "http://" + ln.Addr().String()
	if sec != nil {
		ln = tls.NewListener(ln, api.ServerTLS(sec.trust, sec.cert))
		m.apiURL = "https://" + ln.Addr().String()
	}

	if cfg.Store == StoreEtcd {
		m.etcd, err = startEtcd(ctx, cfg, sec, m.nc, m.nats.ClientURL(), m.apiURL, m.registry, m.logger)
		if err != nil {
			return fail(fmt.Errorf("starting the etcd store: %w", err))
		}
		undo = append(undo, m.etcd.kill)
		m.elog, m.lead, m.store, m.cluster = m.etcd.el, m.etcd.el, m.etcd.el.Store(), m.etcd
	} else {
		if err := m.openRaft(ctx, ln); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { _ = m.log.Kill() })
		m.elog, m.lead, m.store, m.cluster = m.log, m.log, m.log.Store(), clusterAdapter{m.log}
	}

	handler, err := api.New(api.Config{
		Rack: cfg.Rack, Member: cfg.Name, Log: m.elog, Cluster: m.cluster,
		Registry: m.registry, Gatherer: m.registry, Logger: m.logger,
		Telemetry: m.telemetry, Trust: sec.apiTrust(),
	})
	if err != nil {
		return fail(err)
	}
	m.http = api.NewHTTPServer(ln.Addr().String(), handler, m.logger)
	var bg context.Context
	bg, m.stopBackground = context.WithCancel(context.Background())
	sec.watch(bg, cfg.CRL, cfg.CRLCheckInterval, m.logger)
	go func() {
		defer close(m.httpDone)
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("api server stopped", "err", err)
		}
	}()
	if sec == nil {
		m.logger.Warn("insecure: plain text and no authentication on every port; for a test rack on loopback only")
	}
	m.logger.Info("member started", "store", cmp.Or(cfg.Store, StoreRaft), "tls", sec != nil, "api", m.apiURL, "nats", m.nats.ClientURL(), "nats-cluster", m.nats.ClusterURL(), "data-dir", cfg.DataDir)
	return m, nil
}

// openRaft opens the Raft store: Raft over NATS.
func (m *Member) openRaft(ctx context.Context, ln net.Listener) error {
	cfg := m.cfg
	tr, err := natstransport.New(natstransport.Config{Conn: m.nc, Rack: cfg.Rack, Addr: raft.ServerAddress(cfg.Name), Logger: m.logger})
	if err != nil {
		return fmt.Errorf("starting raft transport: %w", err)
	}
	m.log, err = raftlog.Open(ctx, raftlog.Config{
		Name: cfg.Name, Rack: cfg.Rack, DataDir: cfg.DataDir, Transport: tr, Conn: m.nc, Bootstrap: cfg.Bootstrap,
		NATSURL: m.nats.ClientURL(), APIURL: m.apiURL,
		Retention: cfg.Retention, HeartbeatTimeout: cfg.HeartbeatTimeout, ElectionTimeout: cfg.ElectionTimeout,
		SnapshotThreshold: cfg.SnapshotThreshold, SnapshotInterval: cfg.SnapshotInterval, TrailingLogs: cfg.TrailingLogs,
		MemberSyncInterval: cfg.MemberSyncInterval,
		Registry:           m.registry, Logger: m.logger,
	})
	if err != nil {
		_ = tr.Close()
		return fmt.Errorf("opening the event log: %w", err)
	}
	return nil
}

// Name is the member's name.
func (m *Member) Name() string { return m.cfg.Name }

// APIURL is the base URL of the member's HTTP API.
func (m *Member) APIURL() string { return m.apiURL }

// NATSURL is the URL NATS clients connect to.
func (m *Member) NATSURL() string { return m.nats.ClientURL() }

// ClusterURL is the route URL other members join.
func (m *Member) ClusterURL() string { return m.nats.ClusterURL() }

// Log is the member's Raft log, for what only the Raft store has (Raft
// itself, its membership); nil with the etcd store. EventLog serves either.
func (m *Member) Log() *raftlog.Log { return m.log }

// EventLog is the member's event log, whichever the store. It also
// implements eventlog.Fenced.
func (m *Member) EventLog() eventlog.Log { return m.elog }

// Store is the member's applied store (read-only use).
func (m *Member) Store() *eventlog.Store { return m.store }

// EtcdLog is the etcd store's log; nil with the Raft store.
func (m *Member) EtcdLog() *etcdlog.Log {
	if m.etcd == nil {
		return nil
	}
	return m.etcd.el
}

// EtcdClientURL is the embedded etcd member's client URL ("" with the
// Raft store): etcdctl --endpoints takes it.
func (m *Member) EtcdClientURL() string {
	if m.etcd == nil {
		return ""
	}
	return m.etcd.server.ClientURL()
}

// IsLeader reports whether this member leads the rack (runs the
// reconcilers, publishes events): the Raft leader, or the winner of the
// etcd store's election.
func (m *Member) IsLeader() bool { return m.lead.IsLeader() }

// LeaderCh delivers true when this member starts leading the rack and
// false when it stops, starting with the current value; closed when the
// log closes. (reconcilers.Leadership)
func (m *Member) LeaderCh() <-chan bool { return m.lead.LeaderCh() }

// Members lists the control-plane members as GET /v1/members does.
func (m *Member) Members(ctx context.Context) ([]api.MemberInfo, error) {
	return m.cluster.Members(ctx)
}

// RemoveMember takes a member out of the control plane (the Raft
// configuration, or etcd's member list), as DELETE /v1/members/NAME does.
func (m *Member) RemoveMember(ctx context.Context, name string) error {
	return m.cluster.RemoveMember(ctx, name)
}

// leadership is the rack leadership of either store.
type leadership interface {
	IsLeader() bool
	LeaderCh() <-chan bool
}

// Registry holds the member's metrics.
func (m *Member) Registry() *prometheus.Registry { return m.registry }

// Close shuts the member down cleanly: the API stops taking requests (in
// flight ones get until ctx ends), a leader hands leadership over, Raft
// stops, then NATS.
func (m *Member) Close(ctx context.Context) error {
	m.stopOnce.Do(func() {
		m.stopBackground()
		var errs []error
		if err := m.http.Shutdown(ctx); err != nil {
			_ = m.http.Close()
		}
		<-m.httpDone
		if m.etcd != nil {
			if err := m.etcd.close(); err != nil {
				errs = append(errs, err)
			}
		} else if err := m.log.Close(); err != nil {
			errs = append(errs, err)
		}
		m.nc.Close()
		m.nats.Shutdown()
		m.stopErr = errors.Join(errs...)
		m.logger.Info("member stopped")
	})
	return m.stopErr
}

// Kill stops the member at once, as pulled power would: NATS first, so
// peers see it vanish mid-flight; no leadership transfer. The data dir is
// left as it is, for a restart.
func (m *Member) Kill() {
	m.stopOnce.Do(func() {
		m.stopBackground()
		m.nats.Shutdown()
		_ = m.http.Close()
		<-m.httpDone
		if m.etcd != nil {
			m.etcd.kill()
		} else {
			_ = m.log.Kill()
		}
		m.nc.Close()
		m.logger.Info("member killed")
	})
}

// clusterAdapter presents the Raft log's membership to the API.
type clusterAdapter struct{ l *raftlog.Log }

func (c clusterAdapter) Members(ctx context.Context) ([]api.MemberInfo, error) {
	ms, err := c.l.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.MemberInfo, len(ms))
	for i, mi := range ms {
		out[i] = api.MemberInfo{
			Name: mi.Name, RaftAddress: mi.RaftAddress, NATSURL: mi.NATSURL, APIURL: mi.APIURL,
			Voter: mi.Voter, Leader: mi.Leader, AppliedIndex: mi.AppliedIndex, CommitIndex: mi.CommitIndex,
		}
	}
	return out, nil
}

func (c clusterAdapter) RemoveMember(ctx context.Context, name string) error {
	return c.l.RemoveMember(ctx, name)
}

func (c clusterAdapter) Ready(ctx context.Context) error { return c.l.Ready(ctx) }

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("invalid log-level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// WaitReady waits until the member can serve linearizable reads.
func (m *Member) WaitReady(ctx context.Context) error {
	for {
		err := m.cluster.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %s not ready: %w", m.cfg.Name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
