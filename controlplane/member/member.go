// Package member runs one control-plane member in a process, the way etcd's
// embed package does: the embedded NATS server (clustered with the other
// members over routes), Raft over NATS, the event log, the HTTP API and
// metrics. rackd is a thin wrapper around it; tests start several members
// in one process.
package member

import (
	"context"
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
	"github.com/racklet/rack/controlplane/natsserver"
	"github.com/racklet/rack/controlplane/natstransport"
	"github.com/racklet/rack/controlplane/raftlog"
)

// Member is a running control-plane member.
type Member struct {
	cfg      Config
	logger   *slog.Logger
	nats     *natsserver.Server
	nc       *nats.Conn
	log      *raftlog.Log
	http     *http.Server
	httpDone chan struct{}
	apiURL   string
	registry *prometheus.Registry

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
	m := &Member{cfg: cfg, logger: logger.With("member", cfg.Name), registry: prometheus.NewRegistry(), httpDone: make(chan struct{})}
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var err error
	m.nats, err = natsserver.Start(natsserver.Config{
		Name: cfg.Name, Rack: cfg.Rack, Listen: cfg.NATS, ClusterListen: cfg.NATSCluster, ClusterAdvertise: cfg.NATSClusterAdvertise,
		Routes: cfg.Join, Logger: m.logger,
		MaxPayload: natsserver.DefaultMaxPayload,
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
	tr, err := natstransport.New(natstransport.Config{Conn: m.nc, Rack: cfg.Rack, Addr: raft.ServerAddress(cfg.Name), Logger: m.logger})
	if err != nil {
		return fail(fmt.Errorf("starting raft transport: %w", err))
	}
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		_ = tr.Close()
		return fail(fmt.Errorf("listening for the API: %w", err))
	}
	undo = append(undo, func() { _ = ln.Close() })
	m.apiURL = "http://" + ln.Addr().String()

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
		return fail(fmt.Errorf("opening the event log: %w", err))
	}
	undo = append(undo, func() { _ = m.log.Kill() })

	handler, err := api.New(api.Config{
		Rack: cfg.Rack, Member: cfg.Name, Log: m.log, Cluster: clusterAdapter{m.log},
		Registry: m.registry, Gatherer: m.registry, Logger: m.logger,
	})
	if err != nil {
		return fail(err)
	}
	m.http = api.NewHTTPServer(ln.Addr().String(), handler, m.logger)
	go func() {
		defer close(m.httpDone)
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("api server stopped", "err", err)
		}
	}()
	m.logger.Info("member started", "api", m.apiURL, "nats", m.nats.ClientURL(), "nats-cluster", m.nats.ClusterURL(), "data-dir", cfg.DataDir)
	return m, nil
}

// Name is the member's name.
func (m *Member) Name() string { return m.cfg.Name }

// APIURL is the base URL of the member's HTTP API.
func (m *Member) APIURL() string { return m.apiURL }

// NATSURL is the URL NATS clients connect to.
func (m *Member) NATSURL() string { return m.nats.ClientURL() }

// ClusterURL is the route URL other members join.
func (m *Member) ClusterURL() string { return m.nats.ClusterURL() }

// Log is the member's event log.
func (m *Member) Log() *raftlog.Log { return m.log }

// Registry holds the member's metrics.
func (m *Member) Registry() *prometheus.Registry { return m.registry }

// Close shuts the member down cleanly: the API stops taking requests (in
// flight ones get until ctx ends), a leader hands leadership over, Raft
// stops, then NATS.
func (m *Member) Close(ctx context.Context) error {
	m.stopOnce.Do(func() {
		var errs []error
		if err := m.http.Shutdown(ctx); err != nil {
			_ = m.http.Close()
		}
		<-m.httpDone
		if err := m.log.Close(); err != nil {
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
		m.nats.Shutdown()
		_ = m.http.Close()
		<-m.httpDone
		_ = m.log.Kill()
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
		err := m.log.Ready(ctx)
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
