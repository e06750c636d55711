// Package natsserver runs the embedded nats-server every control-plane
// member carries. The members' servers form one NATS cluster over routes,
// so a client connected to any member reaches every subject: Raft RPCs,
// member-to-member requests and the rack's events.
//
// With Security, every connection is mutual TLS checked against the rack
// CA, the peer's kind and the revocation list (security.go); when the list
// changes, open client connections and routes it revokes are closed at
// once (revoke.go).
package natsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config configures one member's server.
type Config struct {
	// Name is the server's name (the member's name).
	Name string
	// Rack names the NATS cluster: racklet-<rack>.
	Rack string
	// Listen is the client listen address, host:port (port 0: any free).
	Listen string
	// ClusterListen is the route listen address (port 0: any free); empty: no clustering
	// (a single-member rack).
	ClusterListen string
	// Routes are the route URLs of existing members (nats://host:port).
	Routes []string
	// ClusterAdvertise is the route address (host:port) this server tells
	// the other members about, from which they may open routes to it on
	// their own (gossip). Empty: its route listen address. The network
	// fault hub (sim/netsim) sets an address that refuses connections, so
	// members route to each other only through the hub's proxies.
	ClusterAdvertise string
	// MaxPayload bounds a message (default 1 MiB; members use
	// DefaultMaxPayload so one Raft AppendEntries always fits).
	MaxPayload int32
	// Security, when set, requires mutual TLS from the rack's CA on the
	// client and route ports and restricts what each identity may do (see
	// Security). Nil: plain TCP, for tests and `rackd dev --insecure`.
	Security *Security
	Logger   *slog.Logger
}

// DefaultMaxPayload is the message size limit members run with: it must
// hold one AppendEntries of raftlog.MaxAppendEntries batches of at most
// raftlog.MaxBatchBytes each.
const DefaultMaxPayload = 8 << 20

// Server is a running embedded nats-server.
type Server struct {
	srv  *server.Server
	cfg  Config
	auth *authenticator // nil without Security

	// With Security: the revocation sweep (revoke.go). opts are the
	// server's current options, which only the sweep goroutine reloads.
	opts      *server.Options
	stopHook  func()
	sweepStop chan struct{}
	sweepDone chan struct{}
	shutdown  sync.Once
}

// Start starts the server and waits until it accepts clients.
func Start(cfg Config) (*Server, error) {
	host, port, err := splitHostPort(cfg.Listen, "nats")
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:            cfg.Name,
		Host:                  host,
		Port:                  port,
		NoSigs:                true,
		NoLog:                 cfg.Logger == nil,
		MaxPayload:            cfg.MaxPayload,
		MaxControlLine:        4096,
		WriteDeadline:         10 * time.Second,
		PingInterval:          10 * time.Second,
		MaxPingsOut:           3,
		DisableShortFirstPing: true,
	}
	if cfg.ClusterListen != "" {
		chost, cport, err := splitHostPort(cfg.ClusterListen, "nats-cluster")
		if err != nil {
			return nil, err
		}
		opts.Cluster = server.ClusterOpts{Name: "racklet-" + cfg.Rack, Host: chost, Port: cport, Advertise: cfg.ClusterAdvertise}
		for _, r := range cfg.Routes {
			u, err := url.Parse(strings.TrimSpace(r))
			if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "nats-route") {
				return nil, fmt.Errorf("natsserver: invalid route %q: want nats://host:port", r)
			}
			opts.Routes = append(opts.Routes, u)
		}
	} else if len(cfg.Routes) > 0 {
		return nil, errors.New("natsserver: routes given without a cluster listen address")
	}
	var auth *authenticator
	if cfg.Security != nil {
		log := cfg.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		if auth, err = cfg.Security.apply(opts, cfg.Rack, log.With("component", "nats")); err != nil {
			return nil, err
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("creating nats server: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(&logger{l: cfg.Logger.With("component", "nats")}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats server on %s not ready after 10s", cfg.Listen)
	}
	s := &Server{srv: srv, cfg: cfg, auth: auth, opts: opts}
	if auth != nil {
		s.watchRevocations(cfg.Security.Trust)
	}
	return s, nil
}

func splitHostPort(addr, what string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("natsserver: invalid %s address %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("natsserver: invalid %s port in %q", what, addr)
	}
	if port == 0 {
		// nats-server reads 0 as "the default port" and -1 as "any free".
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.srv.ClientURL() }

// ClusterURL is the route URL other members put in their routes, or "".
func (s *Server) ClusterURL() string {
	a := s.srv.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats://" + a.String()
}

// NumRoutes is the number of routes to other members.
func (s *Server) NumRoutes() int { return s.srv.NumRoutes() }

// Connect opens a client connection to this server that reconnects
// forever (the member's own connection).
func (s *Server) Connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.InProcessServer(s.srv),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if s.cfg.Logger == nil {
				return
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			s.cfg.Logger.Warn("nats connection error", "connection", name, "subject", subject, "err", err)
		}),
	}
	if s.auth != nil {
		opts = append(opts, nats.Token(s.auth.localToken))
	}
	// In-process: no TLS (the server skips it for in-process connections),
	// so never let a tls:// URL make the client insist on it.
	url := strings.Replace(s.ClientURL(), "tls://", "nats://", 1)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to the embedded nats server: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server, dropping every client and route at once.
func (s *Server) Shutdown() {
	s.shutdown.Do(s.stopRevocations)
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// logger routes nats-server's logs to slog.
type logger struct{ l *slog.Logger }

func (g *logger) Noticef(format string, v ...any) { g.l.Info(fmt.Sprintf(format, v...)) }
func (g *logger) Warnf(format string, v ...any)   { g.l.Warn(fmt.Sprintf(format, v...)) }
func (g *logger) Fatalf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g *logger) Errorf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g *logger) Debugf(format string, v ...any)  { g.l.Debug(fmt.Sprintf(format, v...)) }
func (g *logger) Tracef(format string, v ...any)  {}
