// Package presence is the hot-swap reconciler: it polls each slot's
// presence pin (drivers.Backplane.Present) and keeps the rack's log in
// line with what is seated.
//
// Reconcile("slot-N") reads slot N's presence and the node the state has
// in that slot, and records the difference:
//
//   - a unit in a slot with no node: node.registered (named by
//     Config.NodeName, with the member Config.MemberOf says the unit
//     hosts), node.inserted and node.power.desired with
//     Config.DefaultPower, in one batch;
//   - a unit in the slot of a node not yet seen present (registered
//     beforehand, or by rackd dev): node.inserted;
//   - an empty slot whose node was seen present: node.removed with the
//     reason. A node registered for a slot that was never seen occupied is
//     left alone (registered ahead of its unit).
//
// A removed node that hosted a control-plane member leaves the member's
// HostGone record in the state (the quorum guard then counts the member as
// down). Once Config.MemberGrace has passed since the removal and the slot
// is still empty, the reconciler removes the member from the Raft
// configuration through Config.Members (raftlog's RemoveMember: a Raft
// configuration change, which only the leader commits); the log's
// membership sync then records member.left. A unit seated again before the
// grace period ends is registered with its member and the record clears.
//
// Every slot is read every Config.Interval. An event that hints at a
// pulled unit (node.unreachable, node.power.observed) has its node's slot
// read at once. Each read is one transaction on the rack's bus, through
// the RMC; a failed read changes nothing and is retried at the next
// interval.
//
// Outputs: node.inserted, node.registered, node.removed. The
// node.power.desired of a new node is a command, like an operator's, and
// not owned (the power reconciler reads it; the boot reconciler issues
// cycles the same way).
package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers"
)

// Name is the reconciler's name.
const Name = "presence"

// Actor is the actor of the events the reconciler appends.
const Actor = "reconciler:" + Name

// Defaults of Config.
const (
	DefaultInterval    = 2 * time.Second
	DefaultCallTimeout = 2 * time.Second
	DefaultMemberGrace = 5 * time.Minute
)

// ErrInvalid: the configuration is malformed.
var ErrInvalid = errors.New("presence: invalid config")

// Members removes control-plane members from the Raft configuration.
// raftlog.Log implements it.
type Members interface {
	RemoveMember(ctx context.Context, name string) error
}

// Config configures the presence reconciler. Log, Backplane, Rack and
// Member are required.
type Config struct {
	Log       eventlog.Log
	Backplane drivers.Backplane
	Rack      string
	Member    string

	// Members removes the member of a removed node after MemberGrace;
	// nil never removes members.
	Members     Members
	MemberGrace time.Duration

	// Interval: every slot's presence is read this often.
	Interval time.Duration
	// CallTimeout bounds each presence read.
	CallTimeout time.Duration
	// NodeName names the node of a unit inserted in a slot (default
	// "n<slot>").
	NodeName func(slot int) string
	// MemberOf names the control-plane member a unit in the slot hosts,
	// "" for none (default: none).
	MemberOf func(slot int) string
	// DefaultPower is the desired power of a newly inserted unit: on
	// (the default) or off.
	DefaultPower events.PowerState

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Log == nil:
		return c, fmt.Errorf("%w: no event log", ErrInvalid)
	case c.Backplane == nil:
		return c, fmt.Errorf("%w: no backplane", ErrInvalid)
	case !events.ValidName(c.Rack):
		return c, fmt.Errorf("%w: rack name %q: use 1 to 63 of a-z, 0-9 and -", ErrInvalid, c.Rack)
	case !events.ValidName(c.Member):
		return c, fmt.Errorf("%w: member name %q: use 1 to 63 of a-z, 0-9 and -", ErrInvalid, c.Member)
	case c.Interval < 0 || c.CallTimeout < 0 || c.MemberGrace < 0:
		return c, fmt.Errorf("%w: negative duration", ErrInvalid)
	}
	switch c.DefaultPower {
	case "":
		c.DefaultPower = events.PowerOn
	case events.PowerOn, events.PowerOff:
	default:
		return c, fmt.Errorf("%w: default power %q: use on or off", ErrInvalid, c.DefaultPower)
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.MemberGrace == 0 {
		c.MemberGrace = DefaultMemberGrace
	}
	if c.NodeName == nil {
		c.NodeName = func(slot int) string { return "n" + strconv.Itoa(slot) }
	}
	if c.MemberOf == nil {
		c.MemberOf = func(int) string { return "" }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Reconciler is the presence reconciler.
type Reconciler struct {
	cfg     Config
	source  string
	logger  *slog.Logger
	changes *prometheus.CounterVec // racklet_presence_changes_total{change}
}

var (
	_ reconcilers.Reconciler = (*Reconciler)(nil)
	_ reconcilers.Lister     = (*Reconciler)(nil)
)

// New returns a presence reconciler.
func New(cfg Config) (*Reconciler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	changes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "racklet_presence_changes_total",
		Help: "Changes the presence reconciler recorded: inserted, removed, registered (a new node) and member-removed (a member removed from the Raft configuration after its unit was pulled).",
	}, []string{"change"})
	for _, c := range []string{changeInserted, changeRemoved, changeRegistered, changeMemberRemoved} {
		changes.WithLabelValues(c)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(changes); err != nil {
			return nil, fmt.Errorf("registering presence metrics: %w", err)
		}
	}
	return &Reconciler{cfg: cfg, source: events.Source(cfg.Rack, cfg.Member), logger: cfg.Logger.With("reconciler", Name), changes: changes}, nil
}

const (
	changeInserted      = "inserted"
	changeRemoved       = "removed"
	changeRegistered    = "registered"
	changeMemberRemoved = "member-removed"
)

// SlotName is the request name of a slot: slot-<n>.
func SlotName(slot int) string { return "slot-" + strconv.Itoa(slot) }

// slotOf parses a slot name; 0 if name is not one.
func slotOf(name string) int {
	s, ok := strings.CutPrefix(name, "slot-")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || strconv.Itoa(n) != s {
		return 0
	}
	return n
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Inputs implements reconcilers.Reconciler: events that hint at a pulled
// unit wake its slot's check at once.
func (r *Reconciler) Inputs() []events.Type {
	return []events.Type{events.NodeUnreachable, events.NodePowerObserved}
}

// Outputs implements reconcilers.Reconciler.
func (r *Reconciler) Outputs() []events.Type {
	return []events.Type{events.NodeInserted, events.NodeRegistered, events.NodeRemoved}
}

// List implements reconcilers.Lister: every slot.
func (r *Reconciler) List(ctx context.Context) ([]string, error) {
	n := r.cfg.Backplane.Slots()
	names := make([]string, 0, n)
	for s := 1; s <= n; s++ {
		names = append(names, SlotName(s))
	}
	return names, nil
}

// Reconcile implements reconcilers.Reconciler. The name is a slot's
// (slot-N) or a node's, which stands for the node's slot.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcilers.Request) (reconcilers.Result, error) {
	st, err := r.cfg.Log.State(ctx)
	if err != nil {
		return reconcilers.Result{}, fmt.Errorf("reading the state: %w", err)
	}
	slot := slotOf(req.Name)
	if slot == 0 {
		if n, ok := st.Nodes[req.Name]; ok && n.Slot > 0 {
			slot = n.Slot
		}
	}
	if slot < 1 || slot > r.cfg.Backplane.Slots() {
		return reconcilers.Result{}, nil // a node of no (known) slot
	}
	next := reconcilers.Result{RequeueAfter: r.cfg.Interval}

	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	present, err := r.cfg.Backplane.Present(cctx, slot)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return reconcilers.Result{}, err
		}
		r.logger.Debug("reading presence failed; trying again later", "slot", slot, "error", err)
		return next, nil
	}

	if err := r.record(ctx, st, slot, present); err != nil {
		return reconcilers.Result{}, err
	}
	if !present && r.cfg.Members != nil {
		wait, err := r.removeMembers(ctx, st, slot)
		if err != nil {
			return reconcilers.Result{}, err
		}
		if wait > 0 && wait < next.RequeueAfter {
			next.RequeueAfter = wait
		}
	}
	return next, nil
}

// record appends what changed in slot, if anything.
func (r *Reconciler) record(ctx context.Context, st *state.State, slot int, present bool) error {
	n := st.NodeAtSlot(slot)
	var (
		evs    []events.Event
		change string
		name   string
	)
	add := func(t events.Type, subject string, p events.Payload) error {
		ev, err := events.New(r.source, t, subject, p)
		if err != nil {
			return fmt.Errorf("building %s for %s: %w", t, subject, err)
		}
		ev.Actor = Actor
		evs = append(evs, ev)
		return nil
	}
	var err error
	switch {
	case present && n == nil:
		name, change = r.cfg.NodeName(slot), changeRegistered
		if err = add(events.NodeRegistered, name, &events.NodeRegisteredData{Slot: slot, Member: r.cfg.MemberOf(slot)}); err == nil {
			if err = add(events.NodeInserted, name, &events.NodeInsertedData{Slot: slot}); err == nil {
				err = add(events.NodePowerDesired, name, &events.PowerDesiredData{State: r.cfg.DefaultPower})
			}
		}
	case present && !n.Present:
		name, change = n.Name, changeInserted
		err = add(events.NodeInserted, name, &events.NodeInsertedData{Slot: slot})
	case !present && n != nil && n.Present:
		name, change = n.Name, changeRemoved
		err = add(events.NodeRemoved, name, &events.NodeRemovedData{Reason: fmt.Sprintf("unit removed from slot %d", slot)})
	default:
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.append(ctx, evs); err != nil {
		if errors.Is(err, state.ErrNodeExists) || errors.Is(err, state.ErrUnknownNode) {
			// Someone else registered or removed it meanwhile: the next
			// look sees the new state.
			r.logger.Debug("presence change overtaken", "slot", slot, "node", name, "error", err)
			return nil
		}
		return fmt.Errorf("recording slot %d %s: %w", slot, change, err)
	}
	r.changes.WithLabelValues(change).Inc()
	if change == changeRegistered {
		r.changes.WithLabelValues(changeInserted).Inc()
	}
	r.logger.Info("slot presence changed", "slot", slot, "node", name, "change", change)
	return nil
}

// append commits evs, fenced if the log can: presence is recorded by the
// leader only, so two members' reads of the pins never race in the log.
func (r *Reconciler) append(ctx context.Context, evs []events.Event) error {
	var err error
	if f, ok := r.cfg.Log.(eventlog.Fenced); ok {
		_, err = f.AppendFenced(ctx, evs...)
	} else {
		_, err = r.cfg.Log.Append(ctx, evs...)
	}
	return err
}

// removeMembers removes the members whose host was removed from the
// (empty) slot once the grace period is over; it returns how long until
// the next one is due (0 if none waits).
func (r *Reconciler) removeMembers(ctx context.Context, st *state.State, slot int) (time.Duration, error) {
	var wait time.Duration
	for _, m := range st.MemberList() {
		g := m.HostGone
		if g == nil || g.Slot != slot || m.Name == r.cfg.Member {
			continue
		}
		if left := time.Until(g.At.Add(r.cfg.MemberGrace)); left > 0 {
			if wait == 0 || left < wait {
				wait = left
			}
			continue
		}
		err := r.cfg.Members.RemoveMember(ctx, m.Name)
		if err != nil && !errors.Is(err, state.ErrUnknownMember) {
			return 0, fmt.Errorf("removing member %s, whose node %s left slot %d: %w", m.Name, g.Node, slot, err)
		}
		if err == nil {
			r.changes.WithLabelValues(changeMemberRemoved).Inc()
			r.logger.Warn("removed a control-plane member whose unit was pulled out", "removed_member", m.Name, "node", g.Node, "slot", slot,
				"gone_since", g.At, "grace", r.cfg.MemberGrace)
		}
	}
	return wait, nil
}
