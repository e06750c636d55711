package etcdlog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"
)

// ServerConfig configures the one etcd member a rackd process embeds
// (rackd --store etcd): its data dir, its URLs, and how it enters its
// cluster the first time (later starts restart from the data dir).
type ServerConfig struct {
	// Name is the member's name in etcd (rackd's member name). Required.
	Name string
	// Dir is the member's data dir. Required.
	Dir string
	// PeerListen and ClientListen are the URLs it listens on for other
	// members and for clients (http://host:port). Required.
	PeerListen, ClientListen string
	// PeerAdvertise and ClientAdvertise are the URLs told to others
	// (default: the listen URLs).
	PeerAdvertise, ClientAdvertise string
	// InitialCluster lists every member of a new cluster as
	// name=peerURL,… (etcd's --initial-cluster; default: this member
	// alone). Every member of a new cluster must be given the same list.
	InitialCluster string
	// Join lists client URLs of members of an existing cluster: this
	// member is added to it as a learner, started, and promoted to voter
	// once it has caught up. Excludes InitialCluster.
	Join []string
	// Token tells clusters apart (etcd's --initial-cluster-token).
	Token string
	// TickMs and ElectionMs are etcd's heartbeat interval and election
	// timeout (defaults 100 and 1000).
	TickMs, ElectionMs uint
	// TLS, when set, serves the peer and client ports with mutual TLS
	// (the URLs are then https://). Nil: plain HTTP.
	TLS    *ServerTLS
	Logger *slog.Logger
}

// ServerTLS is the TLS material of an embedded member: its certificate
// and key, the CA that signs every member's, the CRL, and the host name
// a peer's or client's certificate must carry (only members have it).
// Client is the TLS configuration of this member's own clients.
type ServerTLS struct {
	CertFile, KeyFile, CAFile, CRLFile string
	AllowedHostname                    string
	Client                             *tls.Config
}

func (t *ServerTLS) info() transport.TLSInfo {
	return transport.TLSInfo{
		CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.CAFile, CRLFile: t.CRLFile,
		ClientCertAuth: true, AllowedHostnames: []string{t.AllowedHostname},
	}
}

// ClientConfig is the clients' TLS configuration; nil without TLS.
func (t *ServerTLS) ClientConfig() *tls.Config { return t.client() }

func (t *ServerTLS) client() *tls.Config {
	if t == nil {
		return nil
	}
	return t.Client
}

// Server is one embedded etcd member.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	etcd  *embed.Etcd
	quiet atomic.Bool // stopping: etcd's errors are expected
}

// StartServer starts the member and waits until it serves as a voter: a
// new cluster has elected a leader (so every member of InitialCluster
// must be starting too), or a joining member has been promoted. It gives
// up when ctx ends.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.Name == "" || cfg.Dir == "" || cfg.PeerListen == "" || cfg.ClientListen == "" {
		return nil, errors.New("etcdlog: ServerConfig.Name, Dir, PeerListen and ClientListen are required")
	}
	if cfg.PeerAdvertise == "" {
		cfg.PeerAdvertise = cfg.PeerListen
	}
	if cfg.ClientAdvertise == "" {
		cfg.ClientAdvertise = cfg.ClientListen
	}
	if cfg.InitialCluster != "" && len(cfg.Join) > 0 {
		return nil, errors.New("etcdlog: InitialCluster and Join exclude each other")
	}
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.Name + "=" + cfg.PeerAdvertise
	}
	if cfg.ElectionMs == 0 {
		cfg.ElectionMs = 1000
	}
	if cfg.TickMs == 0 {
		cfg.TickMs = max(cfg.ElectionMs/10, 1)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("etcd-member", cfg.Name)}
	ec, err := embedConfig(cfg.Name, cfg.Dir, cfg.PeerListen, cfg.PeerAdvertise, cfg.ClientListen, cfg.ClientAdvertise, s.log, &s.quiet)
	if err == nil && cfg.TLS != nil {
		ec.PeerTLSInfo, ec.ClientTLSInfo = cfg.TLS.info(), cfg.TLS.info()
	}
	if err != nil {
		return nil, err
	}
	ec.TickMs, ec.ElectionMs = cfg.TickMs, cfg.ElectionMs
	ec.InitialCluster = cfg.InitialCluster
	ec.InitialClusterToken = cfg.Token
	var joined uint64 // the member id a join added, to promote
	switch {
	case initialized(cfg.Dir):
		s.log.Info("restarting etcd member from its data dir", "dir", cfg.Dir)
	case len(cfg.Join) > 0:
		id, initial, err := addLearner(ctx, cfg.Join, cfg.Name, cfg.PeerAdvertise, cfg.TLS.client())
		if err != nil {
			return nil, err
		}
		joined = id
		ec.InitialCluster = initial
		ec.ClusterState = embed.ClusterStateFlagExisting
		s.log.Info("joining etcd cluster as a learner", "id", fmt.Sprintf("%x", id), "initial-cluster", initial)
	default:
		s.log.Info("starting etcd member of a new cluster", "initial-cluster", cfg.InitialCluster)
	}
	s.etcd, err = embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("etcdlog: starting etcd member %s: %w", cfg.Name, err)
	}
	fail := func(err error) (*Server, error) {
		s.Kill()
		return nil, err
	}
	select {
	case <-s.etcd.Server.ReadyNotify():
	case err := <-s.etcd.Err():
		return fail(fmt.Errorf("etcdlog: etcd member %s: %w", cfg.Name, err))
	case <-ctx.Done():
		return fail(fmt.Errorf("etcdlog: waiting for etcd member %s to join a quorum (are the other members of %s starting?): %w", cfg.Name, cfg.InitialCluster, ctx.Err()))
	}
	if joined != 0 {
		if err := s.promote(ctx, joined); err != nil {
			return fail(err)
		}
	}
	s.log.Info("etcd member serving", "client", cfg.ClientAdvertise, "peer", cfg.PeerAdvertise)
	return s, nil
}

// embedConfig is the configuration every embedded member shares: the given
// URLs, etcd's errors logged to log (until quiet), no gRPC gateway.
func embedConfig(name, dir, peerListen, peerAdv, clientListen, clientAdv string, log *slog.Logger, quiet *atomic.Bool) (*embed.Config, error) {
	parse := func(what, s string) (url.URL, error) {
		u, err := url.Parse(s)
		if err != nil {
			return url.URL{}, fmt.Errorf("etcdlog: member %s: %s URL: %w", name, what, err)
		}
		return *u, nil
	}
	urls := make([]url.URL, 4)
	for i, x := range []struct{ what, s string }{{"peer", peerListen}, {"peer advertise", peerAdv}, {"client", clientListen}, {"client advertise", clientAdv}} {
		u, err := parse(x.what, x.s)
		if err != nil {
			return nil, err
		}
		urls[i] = u
	}
	ec := embed.NewConfig()
	ec.Name = name
	ec.Dir = dir
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = urls[:1], urls[1:2]
	ec.ListenClientUrls, ec.AdvertiseClientUrls = urls[2:3], urls[3:4]
	ec.ClusterState = embed.ClusterStateFlagNew
	ec.EnableGRPCGateway = false
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToSlog(log, quiet))
	ec.LogLevel = "error"
	return ec, nil
}

// initialized reports whether dir holds an etcd member already (its WAL):
// etcd then restarts from it and ignores how the cluster was formed.
func initialized(dir string) bool { return wal.Exist(filepath.Join(dir, "member", "wal")) }

// addLearner adds a member with peerURL to the cluster at endpoints as a
// learner (or finds it added by an earlier, interrupted start) and returns
// its id and the initial cluster it must start with: every member's name
// and peer URLs, as etcdctl member add prints them.
func addLearner(ctx context.Context, endpoints []string, name, peerURL string, tlsCfg *tls.Config) (uint64, string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Context: ctx, TLS: tlsCfg})
	if err != nil {
		return 0, "", fmt.Errorf("etcdlog: connecting to %v to join: %w", endpoints, err)
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := cli.MemberList(rctx)
	if err != nil {
		return 0, "", fmt.Errorf("etcdlog: listing the members of %v: %w", endpoints, err)
	}
	var id uint64
	for _, m := range list.Members {
		if slices.Contains(m.PeerURLs, peerURL) {
			if m.Name != "" && m.Name != name {
				return 0, "", fmt.Errorf("etcdlog: peer URL %s belongs to member %s already", peerURL, m.Name)
			}
			if m.Name == name {
				return 0, "", fmt.Errorf("etcdlog: member %s is in the cluster already but its data dir is empty: remove it (rackctl remove member %s) and join again", name, name)
			}
			id = m.ID // added by an earlier start that did not get going
		} else if m.Name == name {
			return 0, "", fmt.Errorf("etcdlog: the cluster has a member named %s already (peer URLs %v)", name, m.PeerURLs)
		}
	}
	members := list.Members
	for attempt := 1; id == 0; attempt++ {
		resp, err := cli.MemberAddAsLearner(rctx, []string{peerURL})
		if err == nil {
			id, members = resp.Member.ID, resp.Members
			break
		}
		// etcd refuses to reconfigure a cluster whose members have not
		// all been connected for the last 5 s (a cluster just started, or
		// a member down): wait for that.
		if !errors.Is(err, rpctypes.ErrUnhealthy) || !sleep(rctx, 500*time.Millisecond) {
			return 0, "", fmt.Errorf("etcdlog: adding member %s (%s) as a learner: %w", name, peerURL, err)
		}
	}
	var initial []string
	for _, m := range members {
		n := m.Name
		if m.ID == id {
			n = name
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	return id, strings.Join(initial, ","), nil
}

// promote promotes the learner this member joined as, once it has caught
// up with the leader (etcd refuses before), through the members it joined
// (a learner serves no such request).
func (s *Server) promote(ctx context.Context, id uint64) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.cfg.Join, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Context: ctx, TLS: s.cfg.TLS.client()})
	if err != nil {
		return fmt.Errorf("etcdlog: connecting to promote member %s: %w", s.cfg.Name, err)
	}
	defer cli.Close()
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.MemberPromote(rctx, id)
		cancel()
		if err == nil || strings.Contains(err.Error(), "not a learner") { // "not a learner": an earlier start promoted it
			// The leader committed the promotion; this member serves
			// reads only once it has applied it too ("rpc not supported
			// for learner" until then).
			for s.etcd.Server.IsLearner() {
				if !sleep(ctx, 20*time.Millisecond) {
					return fmt.Errorf("etcdlog: member %s promoted, but still a learner locally: %w", s.cfg.Name, ctx.Err())
				}
			}
			s.log.Info("promoted to voter", "attempts", attempt)
			return nil
		}
		s.log.Debug("promotion refused, retrying", "err", err)
		if !sleep(ctx, 200*time.Millisecond) {
			return fmt.Errorf("etcdlog: promoting member %s to voter: %w (last refusal: %v)", s.cfg.Name, ctx.Err(), err)
		}
	}
}

// ClientURL is the URL clients reach this member at.
func (s *Server) ClientURL() string { return s.cfg.ClientAdvertise }

// PeerURL is the URL other members reach this member at.
func (s *Server) PeerURL() string { return s.cfg.PeerAdvertise }

// ID is the member's id in etcd.
func (s *Server) ID() uint64 { return uint64(s.etcd.Server.MemberID()) }

// IsLeader reports whether the member is etcd's Raft leader.
func (s *Server) IsLeader() bool { return s.etcd.Server.Leader() == s.etcd.Server.MemberID() }

// Err delivers a fatal error of the member (it was removed from the
// cluster, its disk failed, …).
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member gracefully: a leader hands leadership over first.
func (s *Server) Close() {
	s.quiet.Store(true)
	s.etcd.Close()
	s.log.Info("etcd member stopped")
}

// Kill stops the member abruptly, as pulled power would: no leadership
// transfer. The data dir stays for a restart.
func (s *Server) Kill() {
	s.quiet.Store(true)
	s.etcd.Server.HardStop()
	s.etcd.Close()
	s.log.Info("etcd member killed")
}
