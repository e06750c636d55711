// Package devrack runs a whole simulated rack in one process: the
// simulator (slots, units, BMCs, RMC), a control plane of real members
// (embedded NATS, Raft over NATS, bolt files, the HTTP API) hosted on the
// first slots, and the reconcilers on every member (they act only on the
// leader). It is what `rackd dev` starts and what chaos runs drive.
//
// Members live on the simulated units: pulling a slot's power kills the
// member on it at once (no shutdown), and it starts again from its data
// dir when its unit has booted. Member-to-member traffic goes through a
// netsim.Hub, so the network between members can be partitioned.
package devrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers/hardware"
	"github.com/racklet/rack/sim"
	"github.com/racklet/rack/sim/netsim"
)

// Config describes the rack. Zero values take the defaults.
type Config struct {
	Rack    string // default rack1
	Slots   int    // default 5
	Members int    // control-plane members, on slots 1..Members; default 3
	Seed    uint64
	// Dir holds the members' data dirs; "" makes a temporary one that
	// Close removes.
	Dir string
	// BaseHTTP and BaseNATS are the ports of member 1's API and NATS
	// listeners; member i gets base+i-1. 0 picks free ports.
	BaseHTTP, BaseNATS int
	// Timings are the units' boot stage durations (default 0.3s/0.7s/1s).
	Timings sim.Timings
	// BusLatency is the SMBus latency per BMC transaction (default 1ms).
	BusLatency time.Duration
	// ObserveInterval: how often the power reconciler reads every BMC
	// (default 500ms).
	ObserveInterval time.Duration
	// UnreachableRetry: how often the power reconciler retries a BMC it
	// marked unreachable (default 3s; a real rack's default is 30s).
	UnreachableRetry time.Duration
	// BudgetWatts is the rack power budget (0: none).
	BudgetWatts float64
	// Boot configures the boot and presence reconcilers (boot.go).
	Boot BootConfig
	// Firmware configures the firmware update reconciler (firmware.go);
	// off unless Firmware.Dir is set.
	Firmware FirmwareConfig
	// Fans configures the simulated fans and the fan reconciler (fans.go).
	Fans FansConfig
	// Secure runs the members with mutual TLS and a throwaway PKI made in
	// <Dir>/pki (pki.go); ClientFiles and ClientTLS give the admin
	// client's. Without it the members run insecure (loopback only).
	Secure bool
	// Clock is the simulator's clock (default the wall clock).
	Clock sim.Clock
	// Tune adjusts each member's configuration before it starts.
	Tune func(*member.Config)
	// WrapBackplane, if set, wraps the backplane each member's reconcilers
	// drive (checks in chaos runs: intent before action, quorum guard).
	WrapBackplane func(member string, b drivers.Backplane) drivers.Backplane
	Logger        *slog.Logger
}

func (c *Config) defaults() {
	if c.Rack == "" {
		c.Rack = "rack1"
	}
	if c.Slots == 0 {
		c.Slots = 5
	}
	if c.Members == 0 {
		c.Members = 3
	}
	if c.Timings == (sim.Timings{}) {
		c.Timings = sim.Timings{Firmware: 300 * time.Millisecond, Bootstrap: 700 * time.Millisecond, OS: time.Second}
	}
	if c.BusLatency == 0 {
		c.BusLatency = time.Millisecond
	}
	if c.ObserveInterval == 0 {
		c.ObserveInterval = 500 * time.Millisecond
	}
	if c.UnreachableRetry == 0 {
		c.UnreachableRetry = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Rack is a running simulated rack with its control plane.
type Rack struct {
	cfg    Config
	Sim    *sim.Rack
	Hub    *netsim.Hub
	log    *slog.Logger
	tmpDir string

	hosts []*host // index slot-1, for slots 1..Members
	fw    firmwarePath
	pki   *devPKI // nil unless Config.Secure

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// host is a control-plane member living on a simulated unit.
type host struct {
	name  string
	slot  int
	cfg   member.Config
	kick  chan struct{} // the unit's power changed
	edges chan struct{} // one token per power-off edge not yet handled

	mu      sync.Mutex
	m       *member.Member
	stopRec context.CancelFunc
	recDone chan struct{}
	everUp  bool
}

// Start builds the simulator, starts the members on the units of slots
// 1..Members, registers every slot's node and waits until the control
// plane is ready.
func Start(ctx context.Context, cfg Config) (*Rack, error) {
	cfg.defaults()
	if cfg.Members < 1 || cfg.Members > cfg.Slots {
		return nil, fmt.Errorf("devrack: %d members do not fit in %d slots", cfg.Members, cfg.Slots)
	}
	r := &Rack{cfg: cfg, log: cfg.Logger, Hub: netsim.New(cfg.Logger)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "racklet-dev-")
		if err != nil {
			return nil, fmt.Errorf("devrack: making a data dir: %w", err)
		}
		r.tmpDir, r.cfg.Dir = d, d
	}
	if cfg.Secure {
		if err := r.makePKI(); err != nil {
			_ = r.Close(context.Background())
			return nil, err
		}
	}
	var err error
	r.Sim, err = sim.New(sim.Config{
		Slots: cfg.Slots, Seed: cfg.Seed, BusLatency: cfg.BusLatency, Timings: cfg.Timings,
		StartOn: true, RestorePrevious: true, Network: r.Hub, Logger: cfg.Logger,
		OnPower: r.onPower, Fans: cfg.Fans.profile(), Clock: cfg.Clock,
	})
	if err != nil {
		return nil, err
	}
	for i := 1; i <= cfg.Members; i++ {
		h, err := r.newHost(i)
		if err != nil {
			_ = r.Close(context.Background())
			return nil, err
		}
		r.hosts = append(r.hosts, h)
	}
	for _, h := range r.hosts {
		if err := r.Hub.Register(h.name, h.cfg.NATSCluster); err != nil {
			_ = r.Close(context.Background())
			return nil, err
		}
	}
	for _, h := range r.hosts {
		if err := r.startMember(h); err != nil {
			_ = r.Close(context.Background())
			return nil, err
		}
		r.wg.Add(1)
		go r.follow(h)
	}
	if err := r.waitMembers(ctx); err != nil {
		_ = r.Close(context.Background())
		return nil, err
	}
	if err := r.registerNodes(ctx); err != nil {
		_ = r.Close(context.Background())
		return nil, err
	}
	if err := r.seedFanPolicy(ctx, r.hosts[0].m); err != nil {
		_ = r.Close(context.Background())
		return nil, err
	}
	return r, nil
}

func (r *Rack) newHost(slot int) (*host, error) {
	name := memberName(slot)
	port := func(base int) string {
		if base == 0 {
			return "127.0.0.1:0"
		}
		return "127.0.0.1:" + strconv.Itoa(base+slot-1)
	}
	// The route port is fixed for the rack's life, so peers (through the
	// hub) find a restarted member where it was.
	cluster, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := member.Config{
		Name: name, Rack: r.cfg.Rack, DataDir: filepath.Join(r.cfg.Dir, name),
		HTTP: port(r.cfg.BaseHTTP), NATS: port(r.cfg.BaseNATS), NATSCluster: cluster,
		NATSClusterAdvertise: r.Hub.AdvertiseAddr(), LogLevel: "info",
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
	}
	r.pki.secure(&cfg)
	if r.cfg.Tune != nil {
		r.cfg.Tune(&cfg)
	}
	return &host{name: name, slot: slot, cfg: cfg, kick: make(chan struct{}, 1), edges: make(chan struct{}, 64)}, nil
}

func memberName(slot int) string { return "m" + strconv.Itoa(slot) }

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("devrack: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// onPower is the simulator's hook: it only records and wakes the host's
// follower (it runs inside simulator calls, which may come from a
// reconciler that stopping the member would wait for).
func (r *Rack) onPower(slot int, on bool) {
	if slot < 1 || slot > len(r.hosts) {
		return
	}
	h := r.hosts[slot-1]
	if !on {
		select {
		case h.edges <- struct{}{}:
		default:
		}
	}
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// follow keeps a member's life in line with its unit: killed at every
// power-off edge, started again once the unit has booted.
func (r *Rack) follow(h *host) {
	defer r.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-h.edges:
			r.killMember(h)
			continue
		case <-h.kick:
		case <-t.C:
		}
		st, err := r.Sim.Unit(h.slot)
		if err != nil {
			continue
		}
		running := h.running()
		switch {
		case st.Power != drivers.PowerOn && running:
			r.killMember(h)
		case st.Power == drivers.PowerOn && st.Stage == drivers.StageReady && !running:
			if err := r.prepareRejoin(h); err != nil {
				r.log.Warn("preparing to rejoin", "member", h.name, "err", err)
			}
			if err := r.startMember(h); err != nil {
				r.log.Warn("restarting member", "member", h.name, "err", err)
			}
		}
	}
}

func (h *host) running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m != nil
}

// startMember starts the member on its unit with routes to every other
// member through the hub, and its reconcilers.
func (r *Rack) startMember(h *host) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m != nil {
		return nil
	}
	cfg := h.cfg
	cfg.Bootstrap = h.slot == 1 && !h.everUp
	cfg.Join = nil
	if !cfg.Bootstrap {
		for _, o := range r.hosts {
			if o == h {
				continue
			}
			u, err := r.Hub.RouteURL(h.name, o.name)
			if err != nil {
				return err
			}
			cfg.Join = append(cfg.Join, u)
		}
	}
	m, err := member.Start(r.ctx, cfg, r.log)
	if err != nil {
		return fmt.Errorf("starting %s: %w", h.name, err)
	}
	bp := r.Sim.Backplane()
	if r.cfg.WrapBackplane != nil {
		bp = r.cfg.WrapBackplane(h.name, bp)
	}
	hc, err := r.hardware(m, bp)
	if err != nil {
		m.Kill()
		return err
	}
	rt, err := hardware.New(hc)
	if err != nil {
		m.Kill()
		return err
	}
	ctx, stop := context.WithCancel(r.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rt.Run(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("reconcilers stopped", "member", h.name, "err", err)
		}
	}()
	h.m, h.stopRec, h.recDone = m, stop, done
	h.everUp = true
	return nil
}

// killMember stops the member at once, as its unit losing power does.
func (r *Rack) killMember(h *host) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		return
	}
	h.stopRec()
	h.m.Kill()
	<-h.recDone
	h.m, h.stopRec, h.recDone = nil, nil, nil
}

// waitMembers waits until every member is a voter and ready.
func (r *Rack) waitMembers(ctx context.Context) error {
	for {
		err := r.membersReady(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devrack: control plane not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *Rack) membersReady(ctx context.Context) error {
	ms := r.Members()
	if len(ms) != len(r.hosts) {
		return fmt.Errorf("%d of %d members running", len(ms), len(r.hosts))
	}
	for _, m := range ms {
		if err := m.WaitReady(ctx); err != nil {
			return err
		}
	}
	infos, err := ms[0].Log().Members(ctx)
	if err != nil {
		return err
	}
	voters := 0
	for _, mi := range infos {
		if mi.Voter {
			voters++
		}
	}
	if voters != len(r.hosts) {
		return fmt.Errorf("%d of %d members are voters", voters, len(r.hosts))
	}
	return nil
}

// registerNodes registers every slot's node (n<slot>, with its member)
// with desired power on, unless the log has it already.
func (r *Rack) registerNodes(ctx context.Context) error {
	m := r.hosts[0].m
	if err := m.WaitReady(ctx); err != nil {
		return err
	}
	st, err := m.Log().State(ctx)
	if err != nil {
		return err
	}
	var evs []events.Event
	src := events.Source(r.cfg.Rack, m.Name())
	for slot := 1; slot <= r.cfg.Slots; slot++ {
		name := NodeName(slot)
		if _, ok := st.Nodes[name]; ok {
			continue
		}
		d := &events.NodeRegisteredData{Slot: slot}
		if slot <= len(r.hosts) {
			d.Member = r.hosts[slot-1].name
		}
		reg, err := events.New(src, events.NodeRegistered, name, d)
		if err != nil {
			return err
		}
		on, err := events.New(src, events.NodePowerDesired, name, &events.PowerDesiredData{State: events.PowerOn})
		if err != nil {
			return err
		}
		reg.Actor, on.Actor = "devrack", "devrack"
		evs = append(evs, reg, on)
	}
	// Batches of 64 events stay well within a Raft entry's size limit.
	for len(evs) > 0 {
		n := min(len(evs), 64)
		_, err = m.Log().Append(ctx, evs[:n]...)
		if err != nil && !errors.Is(err, state.ErrNodeExists) {
			return fmt.Errorf("registering the rack's nodes: %w", err)
		}
		evs = evs[n:]
	}
	return nil
}

// NodeName is the name of the node in a slot.
func NodeName(slot int) string { return "n" + strconv.Itoa(slot) }

// Members returns the running members, by slot.
func (r *Rack) Members() []*member.Member {
	var out []*member.Member
	for _, h := range r.hosts {
		h.mu.Lock()
		if h.m != nil {
			out = append(out, h.m)
		}
		h.mu.Unlock()
	}
	return out
}

// Member returns the running member of that name, or nil.
func (r *Rack) Member(name string) *member.Member {
	for _, h := range r.hosts {
		if h.name == name {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.m
		}
	}
	return nil
}

// MemberNames lists every member's name, running or not.
func (r *Rack) MemberNames() []string {
	out := make([]string, len(r.hosts))
	for i, h := range r.hosts {
		out[i] = h.name
	}
	return out
}

// MemberSlot is the slot hosting the named member, or 0.
func (r *Rack) MemberSlot(name string) int {
	for _, h := range r.hosts {
		if h.name == name {
			return h.slot
		}
	}
	return 0
}

// Leader returns the running member that leads, or nil.
func (r *Rack) Leader() *member.Member {
	for _, m := range r.Members() {
		if m.Log().IsLeader() {
			return m
		}
	}
	return nil
}

// Close stops every member, the simulator and the hub, and removes a
// temporary data dir.
func (r *Rack) Close(ctx context.Context) error {
	r.cancel()
	r.wg.Wait()
	var errs []error
	for _, h := range r.hosts {
		h.mu.Lock()
		if h.m != nil {
			h.stopRec()
			if err := h.m.Close(ctx); err != nil {
				errs = append(errs, err)
			}
			<-h.recDone
			h.m = nil
		}
		h.mu.Unlock()
	}
	if r.Sim != nil {
		_ = r.Sim.Close()
	}
	if err := r.Hub.Close(); err != nil {
		errs = append(errs, err)
	}
	if r.tmpDir != "" {
		if err := os.RemoveAll(r.tmpDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Slots is the number of slots in the rack.
func (r *Rack) Slots() int { return r.cfg.Slots }

// Name is the rack's name.
func (r *Rack) Name() string { return r.cfg.Rack }

// DataDir is where the members keep their data.
func (r *Rack) DataDir() string { return r.cfg.Dir }
