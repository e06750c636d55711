package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/server/v3/embed"
)

// ClusterConfig configures an etcd cluster embedded in this process.
type ClusterConfig struct {
	// Dir holds one data dir per member (Dir/e1, Dir/e2, …). Required.
	Dir string
	// Members is how many members to start (default 3).
	Members int
	// TickMs and ElectionMs are etcd's heartbeat interval and election
	// timeout (defaults 50 and 500: a loopback cluster elects in well
	// under a second).
	TickMs, ElectionMs uint
	// UnsafeNoFsync skips etcd's fsyncs: for benchmarks of the floor
	// only, never for data that matters.
	UnsafeNoFsync bool
	// Logger receives the cluster's own messages; etcd's zap logging is
	// discarded.
	Logger *slog.Logger
}

// Cluster is an etcd cluster embedded in this process, every member on
// loopback with ports picked at random. It is for tests and benchmarks; a
// production member runs one embedded member (see Member) or talks to an
// external cluster.
type Cluster struct {
	cfg     ClusterConfig
	log     *slog.Logger
	initial string // name=peerURL,…

	mu      sync.Mutex
	members []*Member
}

// Member is one embedded etcd member.
type Member struct {
	Name    string
	Dir     string
	PeerURL string
	// ClientURL is the member's client endpoint (http://127.0.0.1:port).
	ClientURL string

	mu    sync.Mutex
	etcd  *embed.Etcd
	quiet atomic.Bool // stopping: etcd's errors are expected
}

// StartCluster starts cfg.Members etcd members on loopback and waits until
// every one of them has joined the cluster (a leader elected) or ctx ends.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Dir == "" {
		return nil, errors.New("etcdlog: ClusterConfig.Dir is required")
	}
	if cfg.Members <= 0 {
		cfg.Members = 3
	}
	if cfg.TickMs == 0 {
		cfg.TickMs = 50
	}
	if cfg.ElectionMs == 0 {
		cfg.ElectionMs = 10 * cfg.TickMs
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger}
	ports, err := freePorts(2 * cfg.Members)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range cfg.Members {
		m := &Member{
			Name:      fmt.Sprintf("e%d", i+1),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.Dir = filepath.Join(cfg.Dir, m.Name)
		c.members = append(c.members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.initial = strings.Join(initial, ",")
	for _, m := range c.members {
		if err := c.start(m); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, m := range c.members {
		if err := m.waitReady(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.log.Info("etcd cluster started", "members", len(c.members), "endpoints", c.Endpoints())
	return c, nil
}

// start starts a member on its data dir: a new one joins the initial
// cluster, an existing one restarts from its state.
func (c *Cluster) start(m *Member) error {
	ec, err := embedConfig(m.Name, m.Dir, m.PeerURL, m.PeerURL, m.ClientURL, m.ClientURL, c.log.With("etcd-member", m.Name), &m.quiet)
	if err != nil {
		return err
	}
	ec.TickMs, ec.ElectionMs = c.cfg.TickMs, c.cfg.ElectionMs
	ec.InitialCluster = c.initial
	ec.InitialClusterToken = "racklet-" + filepath.Base(c.cfg.Dir)
	ec.UnsafeNoFsync = c.cfg.UnsafeNoFsync
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return fmt.Errorf("etcdlog: starting member %s: %w", m.Name, err)
	}
	m.mu.Lock()
	m.etcd = e
	m.quiet.Store(false)
	m.mu.Unlock()
	return nil
}

// waitReady waits until the member serves (it has joined and a leader is
// known), fails or ctx ends.
func (m *Member) waitReady(ctx context.Context) error {
	m.mu.Lock()
	e := m.etcd
	m.mu.Unlock()
	if e == nil {
		return fmt.Errorf("etcdlog: member %s is stopped", m.Name)
	}
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcdlog: member %s: %w", m.Name, err)
	case <-ctx.Done():
		return fmt.Errorf("etcdlog: waiting for member %s: %w", m.Name, ctx.Err())
	}
}

// Endpoints returns every member's client URL, stopped ones included (a
// client moves past those).
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.ClientURL
	}
	return out
}

// Members returns the members, in order (e1, e2, …).
func (c *Cluster) Members() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Member(nil), c.members...)
}

// Stop stops member i (0-based), as if its process ended; its data dir is
// kept for Restart.
func (c *Cluster) Stop(i int) {
	m := c.Members()[i]
	m.mu.Lock()
	e := m.etcd
	m.etcd = nil
	m.mu.Unlock()
	if e != nil {
		m.quiet.Store(true)
		e.Close()
		c.log.Info("etcd member stopped", "member", m.Name)
	}
}

// Restart starts a stopped member i again on its data dir and waits until
// it serves.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	m := c.Members()[i]
	if m.Running() {
		return fmt.Errorf("etcdlog: member %s is running", m.Name)
	}
	if err := c.start(m); err != nil {
		return err
	}
	if err := m.waitReady(ctx); err != nil {
		return err
	}
	c.log.Info("etcd member restarted", "member", m.Name)
	return nil
}

// Close stops every member.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range c.Members() {
		wg.Add(1)
		go func() { defer wg.Done(); c.Stop(i) }()
	}
	wg.Wait()
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago (etcd must know its peers' URLs before it listens, so port 0 will
// not do).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("etcdlog: picking a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Running reports whether the member is started.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd != nil
}

// IsLeader reports whether the member is running and is etcd's Raft leader.
func (m *Member) IsLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd != nil && m.etcd.Server.Leader() == m.etcd.Server.MemberID()
}
