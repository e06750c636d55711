// Package netsim provides the network between control-plane members that
// run in one process, with faults: a hub of TCP proxies on loopback that
// carries every NATS route connection between the members' embedded
// servers, so a partition cuts all of their traffic at once (Raft RPCs,
// forwarded requests, event fan-out), the way a real network would.
//
// Each ordered pair of members (a → b) has its own proxy; member a's route
// list names, for each b, the proxy a → b instead of b's real route
// address. Only a's server dials that proxy, and a route connection goes
// through exactly one proxy, so every connection is attributed to its pair
// of members. A member's server must advertise Hub.AdvertiseAddr as its
// route address (natsserver.Config.ClusterAdvertise): nats-server tells
// the members of the cluster about each new route (gossip) and they may
// dial the advertised address on their own, which must not bypass the hub.
// (nats-server's Cluster.NoAdvertise does not stop that: it only keeps
// client URLs from clients.)
//
// Wiring, for members m1..mN:
//
//	hub := netsim.New(logger)
//	routes, _ := hub.Routes("m1", members) // proxies m1 → every other member
//	srv, _ := natsserver.Start(natsserver.Config{Name: "m1",
//		ClusterListen: "127.0.0.1:0", ClusterAdvertise: hub.AdvertiseAddr(),
//		Routes: routes, ...})
//	_ = hub.Register("m1", srv.ClusterURL()) // after every (re)start
package netsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/racklet/rack/sim"
)

var (
	// ErrClosed is returned by a closed hub.
	ErrClosed = errors.New("netsim: hub closed")
	// ErrNotLoopback is returned for an address that is not on loopback.
	ErrNotLoopback = errors.New("netsim: not a loopback address")
)

var _ sim.Network = (*Hub)(nil)

// Hub carries the route connections between members and cuts them on
// demand. The zero value is not usable; use New.
//
// Faults: Partition splits the members into groups, Isolate cuts one
// member off from all others on top of that, Heal ends both. While two
// members are cut apart their open connections are closed (both
// directions) and new ones are closed as soon as they are accepted; NATS
// routes reconnect by themselves after Heal.
type Hub struct {
	log     *slog.Logger
	ctx     context.Context // done on Close: cancels dials
	cancel  context.CancelFunc
	deadEnd *deadEnd
	wg      sync.WaitGroup // accept loops and connection handlers

	mu       sync.Mutex
	closed   bool
	addrs    map[string]string // member → real route address, host:port
	proxies  map[pair]*proxy
	groups   map[string]int // member → group; nil: no partition
	isolated map[string]bool
}

// pair is an ordered pair of members: from dials to.
type pair struct{ from, to string }

// New returns a hub with no members and no faults. logger may be nil.
func New(logger *slog.Logger) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("component", "netsim")
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		log:     log,
		ctx:     ctx,
		cancel:  cancel,
		deadEnd: newDeadEnd(log),
		addrs:   make(map[string]string),
		proxies: make(map[pair]*proxy),
	}
}

// AdvertiseAddr is the route address (host:port) every member's server
// must advertise to the others (natsserver.Config.ClusterAdvertise).
// Nothing listens there (connections are refused), so a route that a
// server would open on its own from gossip goes nowhere, and members reach
// each other only through the routes they are given (Routes, RouteURL).
func (h *Hub) AdvertiseAddr() string { return h.deadEnd.addr }

// Register records a member's real route listen address (host:port or
// nats://host:port, on loopback). A restarted member, listening on a new
// port, registers again; proxies use the new address for new connections.
func (h *Hub) Register(member, routeAddr string) error {
	if err := checkName(member); err != nil {
		return fmt.Errorf("netsim: register: %w", err)
	}
	addr, err := loopbackHostPort(routeAddr)
	if err != nil {
		return fmt.Errorf("netsim: register %s: %w", member, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	h.addrs[member] = addr
	h.log.Info("member registered", "member", member, "addr", addr)
	return nil
}

// RouteURL returns the route URL (nats://127.0.0.1:port) that member from
// must use to reach member to, starting the proxy from → to on first use.
// to need not be registered yet: until it is, the proxy closes every
// connection it accepts, which a NATS route retries.
func (h *Hub) RouteURL(from, to string) (string, error) {
	if err := checkName(from); err != nil {
		return "", fmt.Errorf("netsim: route url: %w", err)
	}
	if err := checkName(to); err != nil {
		return "", fmt.Errorf("netsim: route url: %w", err)
	}
	if from == to {
		return "", fmt.Errorf("netsim: route url: %s to itself", from)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return "", ErrClosed
	}
	k := pair{from, to}
	if p, ok := h.proxies[k]; ok {
		return p.url, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("netsim: starting proxy %s→%s: %w", from, to, err)
	}
	p := &proxy{pair: k, ln: ln, url: "nats://" + ln.Addr().String(), links: make(map[*link]struct{})}
	h.proxies[k] = p
	h.wg.Add(1)
	go h.serve(p)
	h.log.Debug("proxy started", "from", from, "to", to, "addr", ln.Addr().String())
	return p.url, nil
}

// Routes returns the route URLs member from must use to reach every other
// member of members (from itself is skipped), in the order given.
func (h *Hub) Routes(from string, members []string) ([]string, error) {
	var out []string
	for _, m := range members {
		if m == from {
			continue
		}
		u, err := h.RouteURL(from, m)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// Partition splits the members into groups that reach only their own
// group; members named in no group (including members that register
// later) are cut off from all. It replaces any partition or isolation in
// force, and closes at once every connection across the cut.
func (h *Hub) Partition(groups ...[]string) error {
	g := make(map[string]int)
	for i, grp := range groups {
		for _, m := range grp {
			if err := checkName(m); err != nil {
				return fmt.Errorf("netsim: partition: %w", err)
			}
			if j, dup := g[m]; dup {
				return fmt.Errorf("netsim: partition: member %s in groups %d and %d", m, j+1, i+1)
			}
			g[m] = i
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	h.groups, h.isolated = g, nil
	n := h.cutLocked()
	h.log.Info("network partitioned", "groups", groups, "cut", n)
	return nil
}

// Isolate cuts one member off from all others, on top of any partition in
// force, closing its connections at once. Heal ends it.
func (h *Hub) Isolate(member string) error {
	if err := checkName(member); err != nil {
		return fmt.Errorf("netsim: isolate: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if h.isolated == nil {
		h.isolated = make(map[string]bool)
	}
	h.isolated[member] = true
	n := h.cutLocked()
	h.log.Info("member isolated", "member", member, "cut", n)
	return nil
}

// Heal ends every partition and isolation: new connections go through
// again (NATS routes reconnect by themselves).
func (h *Hub) Heal() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	h.groups, h.isolated = nil, nil
	h.log.Info("network healed")
	return nil
}

// Connected reports whether members a and b can reach each other now.
func (h *Hub) Connected(a, b string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.connectedLocked(a, b)
}

// Conns is the number of open connections through the proxy from → to
// (connections that from's server opened to to's).
func (h *Hub) Conns(from, to string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.proxies[pair{from, to}]; ok {
		return len(p.links)
	}
	return 0
}

// Close stops every proxy, closes every connection and waits for all of
// the hub's goroutines to end. Later calls do nothing.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	var errs []error
	for _, p := range h.proxies {
		if err := p.ln.Close(); err != nil {
			errs = append(errs, fmt.Errorf("netsim: closing proxy %s→%s: %w", p.from, p.to, err))
		}
		p.cutLocked()
	}
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
	if err := h.deadEnd.close(); err != nil {
		errs = append(errs, fmt.Errorf("netsim: releasing the advertise address: %w", err))
	}
	return errors.Join(errs...)
}

// connectedLocked reports whether a and b may talk under the faults in
// force.
func (h *Hub) connectedLocked(a, b string) bool {
	if h.isolated[a] || h.isolated[b] {
		return false
	}
	if h.groups == nil {
		return true
	}
	ga, oka := h.groups[a]
	gb, okb := h.groups[b]
	return oka && okb && ga == gb
}

// cutLocked closes the connections of every proxy whose pair is cut apart
// and returns how many it closed. Both proxies of a pair (a → b and
// b → a) are cut, since the relation is symmetric.
func (h *Hub) cutLocked() int {
	n := 0
	for _, p := range h.proxies {
		if !h.connectedLocked(p.from, p.to) {
			n += p.cutLocked()
		}
	}
	return n
}

// checkName rejects an empty member name or one with spaces.
func checkName(m string) error {
	if m == "" || strings.ContainsFunc(m, func(r rune) bool { return r <= ' ' }) {
		return fmt.Errorf("invalid member name %q", m)
	}
	return nil
}

// loopbackHostPort turns host:port or nats://host:port into host:port and
// checks the host is on loopback.
func loopbackHostPort(addr string) (string, error) {
	hp := strings.TrimSpace(addr)
	if strings.Contains(hp, "://") {
		u, err := url.Parse(hp)
		if err != nil {
			return "", fmt.Errorf("parsing %q: %w", addr, err)
		}
		hp = u.Host
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %w", addr, err)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("%q: no port", addr)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return "", fmt.Errorf("%q: %w", addr, ErrNotLoopback)
		}
	}
	return net.JoinHostPort(host, port), nil
}
