package fans

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers"
)

// Name is the reconciler's name, in logs, metrics and events.
const Name = "fans"

// Actor is the actor of the events the reconciler appends.
const Actor = "reconciler:" + Name

// Defaults of Config.
const (
	DefaultInterval        = time.Second
	DefaultCallTimeout     = 500 * time.Millisecond
	DefaultFailRPM         = 100
	DefaultDrivenDuty      = 10
	DefaultTripSamples     = 2
	DefaultClearHysteresis = 5.0
)

// maxParallelReads bounds the BMC reads of one sample in flight at once.
const maxParallelReads = 16

// ErrInvalid: the configuration is malformed.
var ErrInvalid = errors.New("fans: invalid config")

// Config configures the fan reconciler. Log, Backplane, Rack and Member
// are required; zero values take the defaults.
type Config struct {
	Log       eventlog.Log
	Backplane drivers.Backplane
	// Rack and Member name the event source; Rack is also the name the
	// reconciler reconciles (the subject of fanpolicy.set).
	Rack, Member string

	// Policy is run while the log holds none (default DefaultPolicy()).
	Policy events.FanPolicy
	// Interval is the sampling period.
	Interval time.Duration
	// CallTimeout bounds each driver call.
	CallTimeout time.Duration
	// FailRPM: a fan driven (at DrivenDuty or more, in this sample and
	// the last) that turns slower than this has failed.
	FailRPM    float64
	DrivenDuty float64
	// TripSamples consecutive samples over the critical temperature shut a
	// node down.
	TripSamples int
	// ClearHysteresis: a critical-temperature alarm clears once the node is
	// this far below the critical temperature.
	ClearHysteresis float64
	// Publish, if set, receives every sample (the member publishes it on
	// NATS and keeps it for the API and /metrics).
	Publish func(context.Context, telemetry.Sample) error

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
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
	case c.Interval < 0 || c.CallTimeout < 0:
		return c, fmt.Errorf("%w: negative duration", ErrInvalid)
	case c.FailRPM < 0 || c.TripSamples < 0 || c.ClearHysteresis < 0 || c.DrivenDuty < 0 || c.DrivenDuty > 100:
		return c, fmt.Errorf("%w: negative fail rpm, trip samples or hysteresis, or driven duty not in 0..100", ErrInvalid)
	}
	if c.Policy.Mode == "" {
		c.Policy = DefaultPolicy()
	}
	c.Policy = c.Policy.WithDefaults()
	if err := c.Policy.Validate(); err != nil {
		return c, fmt.Errorf("%w: default policy: %w", ErrInvalid, err)
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.FailRPM == 0 {
		c.FailRPM = DefaultFailRPM
	}
	if c.DrivenDuty == 0 {
		c.DrivenDuty = DefaultDrivenDuty
	}
	if c.TripSamples == 0 {
		c.TripSamples = DefaultTripSamples
	}
	if c.ClearHysteresis == 0 {
		c.ClearHysteresis = DefaultClearHysteresis
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Reconciler is the fan reconciler. The runtime calls it for the rack only
// (one name), never concurrently with itself.
type Reconciler struct {
	cfg     Config
	source  string
	logger  *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	last    time.Time // the previous sample (zero: none this term)
	ctl     *controller
	ctlSeq  uint64 // the policy sequence ctl runs (0: the default)
	sensors map[string]*track
	inlet   *track
	fansRd  *track          // the fans' tachometers, as one sensor
	fanDuty map[int]float64 // each fan's duty at the previous sample
}

// track is what the reconciler remembers of one sensor during a term.
type track struct {
	lastOK     time.Time // the last successful read (or the first attempt)
	lastChange time.Time // when the reading last changed
	reading    [3]float64
	have       bool    // reading holds a successful read
	changed    bool    // a change was seen this term (evidence of life)
	celsius    float64 // the last good temperature
	over       int     // consecutive fresh samples over the critical temperature
}

var (
	_ reconcilers.Reconciler = (*Reconciler)(nil)
	_ reconcilers.Lister     = (*Reconciler)(nil)
)

// New returns a fan reconciler; register it on a reconcilers.Runtime.
func New(cfg Config) (*Reconciler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Reconciler{
		cfg:     cfg,
		source:  events.Source(cfg.Rack, cfg.Member),
		logger:  cfg.Logger.With("reconciler", Name),
		metrics: m,
	}, nil
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Inputs implements reconcilers.Reconciler: a new fan policy takes effect
// at once; everything else is sampled every Interval.
func (r *Reconciler) Inputs() []events.Type { return []events.Type{events.FanPolicySet} }

// Outputs implements reconcilers.Reconciler: alarms, and the desired power
// off of a node over the critical temperature (realised by the power
// reconciler, whose input it is).
func (r *Reconciler) Outputs() []events.Type {
	return []events.Type{events.AlarmRaised, events.AlarmCleared, events.NodePowerDesired}
}

// List implements reconcilers.Lister: the rack.
func (r *Reconciler) List(context.Context) ([]string, error) { return []string{r.cfg.Rack}, nil }

// Reconcile implements reconcilers.Reconciler: one sample, one duty, the
// alarms that changed, and the shutdowns that are due. It always asks to
// run again after Interval: a failure (a driver call, an append) is logged,
// counted and retried by the next sample, which sees the world afresh.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcilers.Request) (reconcilers.Result, error) {
	next := reconcilers.Result{RequeueAfter: r.cfg.Interval}
	if req.Name != r.cfg.Rack {
		return reconcilers.Result{}, nil // not ours (a fan policy for another rack name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	st, err := r.cfg.Log.State(ctx)
	if err != nil {
		// Without the state there is no policy and no alarm list: cool.
		r.setDuty(ctx, 100)
		return next, fmt.Errorf("reading the state: %w", err)
	}
	now := r.cfg.Now()
	if r.last.IsZero() || now.Sub(r.last) > 3*r.cfg.Interval {
		// A new term (or a long stall): what was remembered is too old to
		// judge staleness by.
		r.sensors, r.inlet, r.fansRd, r.fanDuty = map[string]*track{}, nil, nil, nil
		r.last = time.Time{}
	}
	policy, policySeq := r.cfg.Policy, uint64(0)
	if th := st.Thermal; th != nil && th.Policy != nil {
		policy, policySeq = th.Policy.WithDefaults(), th.PolicySequence
	}
	if r.ctl == nil || r.ctlSeq != policySeq {
		r.ctl, r.ctlSeq = newController(policy), policySeq
	}

	rd := r.read(ctx, st)
	if ctx.Err() != nil {
		return reconcilers.Result{}, ctx.Err()
	}
	now = r.cfg.Now()
	ev := r.evaluate(st, policy, rd, now)

	duty := 100.0
	if !ev.failSafe {
		duty = r.ctl.duty(ev.source, now)
	}
	// Hardware first: the fans must not wait for the log.
	if rd.hasFans {
		r.setDuty(ctx, duty)
	}
	r.last = now
	r.fanDuty = map[int]float64{}
	for _, f := range rd.fans {
		r.fanDuty[f.Fan] = f.DutyPercent
	}

	if err := r.record(ctx, st, ev); err != nil {
		r.metrics.errors.WithLabelValues("append").Inc()
		r.logger.Warn("recording alarms; retrying at the next sample", "err", err)
	}
	if r.cfg.Publish != nil {
		if err := r.cfg.Publish(ctx, r.sample(policy, rd, ev, duty, now)); err != nil {
			r.metrics.errors.WithLabelValues("publish").Inc()
			r.logger.Debug("publishing telemetry", "err", err)
		}
	}
	return next, nil
}

// setDuty sets the fans' duty, logging a failure (the next sample tries
// again; the RMC's own watchdog covers a long silence).
func (r *Reconciler) setDuty(ctx context.Context, duty float64) {
	fc, ok := r.cfg.Backplane.RMC().(drivers.FanController)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	err := fc.SetFanDuty(cctx, duty)
	switch {
	case err == nil || ctx.Err() != nil:
	case errors.Is(err, drivers.ErrRefused):
		r.logger.Debug("setting the fan duty", "duty", duty, "err", err) // a rack without fans
	default:
		r.metrics.errors.WithLabelValues(drivers.OpFanDutySet).Inc()
		r.logger.Warn("setting the fan duty", "duty", duty, "err", err)
	}
}

// readings are one sample's raw results.
type readings struct {
	nodes    []nodeRead
	rack     drivers.RackReadings
	rackErr  error
	fans     []drivers.FanReading
	fansErr  error
	hasFans  bool
	nodeByNm map[string]*state.Node
}

type nodeRead struct {
	node *state.Node
	rd   drivers.Readings
	err  error
}

// read samples every registered node's BMC (in parallel: a hung BMC costs
// one CallTimeout, not one per node), the RMC and the fans.
func (r *Reconciler) read(ctx context.Context, st *state.State) readings {
	var rd readings
	rd.nodeByNm = map[string]*state.Node{}
	for _, n := range st.NodeList() {
		if n.Slot > 0 {
			rd.nodes = append(rd.nodes, nodeRead{node: n})
			rd.nodeByNm[n.Name] = n
		}
	}
	sem := make(chan struct{}, maxParallelReads)
	var wg sync.WaitGroup
	for i := range rd.nodes {
		nr := &rd.nodes[i]
		bmc, err := r.cfg.Backplane.BMC(nr.node.Slot)
		if err != nil {
			nr.err = err
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
			defer cancel()
			nr.rd, nr.err = bmc.ReadSensors(cctx)
		})
	}
	wg.Wait()

	rmc := r.cfg.Backplane.RMC()
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	rd.rack, rd.rackErr = rmc.ReadRack(cctx)
	cancel()
	if fc, ok := rmc.(drivers.FanController); ok {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		rd.fans, rd.fansErr = fc.Fans(cctx)
		cancel()
		rd.hasFans = !errors.Is(rd.fansErr, drivers.ErrRefused) // refused: a rack without fans
	}
	return rd
}

// condition is an alarm condition found in a sample.
type condition struct {
	kind    events.AlarmKind
	subject string
	reason  string
	value   float64
	limit   float64
}

func (c condition) key() string { return state.AlarmKey(c.kind, c.subject) }

// evaluation is what a sample means.
type evaluation struct {
	active    map[string]condition // conditions that hold (or are not yet shown gone)
	shutdowns []condition          // critical temperature on nodes to shut down now
	failSafe  bool
	reason    string
	source    float64
	stale     map[string]bool // node → readings stale
	failed    map[int]bool    // fan → failed
}

// evaluate updates the reconciler's tracks with a sample and finds the
// alarm conditions. A raised alarm stays active until the sample shows it
// gone: a sensor that changes again, a read that succeeds, a fan that
// turns, a node cooled below critical − hysteresis.
func (r *Reconciler) evaluate(st *state.State, p events.FanPolicy, rd readings, now time.Time) evaluation {
	staleAfter := p.StaleAfterDuration()
	ev := evaluation{active: map[string]condition{}, stale: map[string]bool{}, failed: map[int]bool{}}
	raised := func(kind events.AlarmKind, subject string) *state.Alarm {
		return st.Thermal.Alarm(kind, subject)
	}
	add := func(c condition) { ev.active[c.key()] = c }
	keep := func(kind events.AlarmKind, subject string) {
		if a := raised(kind, subject); a != nil {
			add(condition{kind: kind, subject: subject, reason: a.Reason, value: a.Value, limit: a.Limit})
		}
	}

	// Sensors: missing (no answer for staleAfter) or stale (no change for
	// staleAfter). fresh: the last good reading can be used.
	sensor := func(t *track, subject, what string, vals [3]float64, err error) (fresh, stale bool) {
		if err == nil {
			if !t.have || vals != t.reading {
				if t.have {
					t.changed = true
				}
				t.lastChange = now
			}
			t.reading, t.have, t.lastOK = vals, true, now
		}
		switch {
		case err != nil && now.Sub(t.lastOK) >= staleAfter:
			add(condition{kind: events.AlarmSensorMissing, subject: subject,
				reason: fmt.Sprintf("%s sensors unreadable for %v: %v", what, now.Sub(t.lastOK).Round(time.Millisecond), clipErr(err))})
		case err != nil:
			keep(events.AlarmSensorMissing, subject)
		}
		if err == nil && now.Sub(t.lastChange) >= staleAfter {
			add(condition{kind: events.AlarmSensorStale, subject: subject,
				reason: fmt.Sprintf("%s readings unchanged for %v", what, now.Sub(t.lastChange).Round(time.Millisecond))})
			return false, true
		}
		if !t.changed && raised(events.AlarmSensorStale, subject) != nil {
			// No evidence of life yet this term: the stale alarm stays.
			keep(events.AlarmSensorStale, subject)
			return false, true
		}
		return err == nil || now.Sub(t.lastOK) < staleAfter, false
	}

	maxNode, haveNode := math.Inf(-1), false
	for _, nr := range rd.nodes {
		name := nr.node.Name
		t := r.sensors[name]
		if t == nil {
			t = &track{lastOK: now, lastChange: now}
			r.sensors[name] = t
		}
		fresh, stale := sensor(t, name, "node "+name, [3]float64{nr.rd.Watts, nr.rd.Celsius, nr.rd.Joules}, nr.err)
		if nr.err == nil {
			t.celsius = nr.rd.Celsius
		}
		ev.stale[name] = stale
		if !fresh || !t.have {
			t.over = 0
			keep(events.AlarmCriticalTemperature, name)
			continue
		}
		if t.celsius > maxNode {
			maxNode = t.celsius
		}
		haveNode = true
		r.critical(&ev, p, nr.node, t, nr.err == nil, raised(events.AlarmCriticalTemperature, name))
	}

	// The rack inlet.
	if r.inlet == nil {
		r.inlet = &track{lastOK: now, lastChange: now}
	}
	inletFresh, _ := sensor(r.inlet, r.cfg.Rack, "rack inlet", [3]float64{rd.rack.InletCelsius, rd.rack.Watts, rd.rack.Joules}, rd.rackErr)
	if rd.rackErr == nil {
		r.inlet.celsius = rd.rack.InletCelsius
	}

	// Fans.
	if rd.hasFans {
		if r.fansRd == nil {
			r.fansRd = &track{lastOK: now}
		}
		switch {
		case rd.fansErr == nil:
			r.fansRd.lastOK = now
		case now.Sub(r.fansRd.lastOK) >= staleAfter:
			add(condition{kind: events.AlarmFanFailed, subject: r.cfg.Rack,
				reason: fmt.Sprintf("fans unreadable for %v: %v", now.Sub(r.fansRd.lastOK).Round(time.Millisecond), clipErr(rd.fansErr))})
		default:
			keep(events.AlarmFanFailed, r.cfg.Rack)
		}
		for _, f := range rd.fans {
			name := telemetry.FanName(f.Fan)
			prev, known := r.fanDuty[f.Fan]
			driven := f.DutyPercent >= r.cfg.DrivenDuty && (!known || prev >= r.cfg.DrivenDuty)
			switch {
			case f.RPM < r.cfg.FailRPM && driven:
				ev.failed[f.Fan] = true
				add(condition{kind: events.AlarmFanFailed, subject: name, value: f.RPM, limit: r.cfg.FailRPM,
					reason: fmt.Sprintf("fan %d turns at %.0f RPM while driven at %.0f%%", f.Fan, f.RPM, f.DutyPercent)})
			case f.RPM < r.cfg.FailRPM:
				keep(events.AlarmFanFailed, name) // not driven: no evidence either way
			}
		}
	}

	// What the policy follows.
	switch {
	case p.Source == events.SourceInlet && inletFresh:
		ev.source = r.inlet.celsius
	case p.Source == events.SourceInlet:
		ev.failSafe, ev.reason = true, "no inlet temperature"
	case haveNode:
		ev.source = maxNode
	case len(rd.nodes) == 0 && inletFresh:
		ev.source = r.inlet.celsius // no nodes: follow the inlet
	default:
		ev.failSafe, ev.reason = true, "no node temperature"
	}

	// Alarms about subjects that are gone are not kept: they clear.
	if len(ev.active) > 0 {
		keys := make([]string, 0, len(ev.active))
		for k := range ev.active {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		ev.failSafe = true
		ev.reason = strings.Join(keys, ", ")
	}
	return ev
}

// critical applies the critical temperature to a node with a fresh
// reading: TripSamples consecutive samples over it shut the node down (if
// it is not desired off already); the alarm clears ClearHysteresis below.
func (r *Reconciler) critical(ev *evaluation, p events.FanPolicy, n *state.Node, t *track, new bool, alarm *state.Alarm) {
	crit := p.CriticalCelsius
	if new && t.celsius > crit {
		t.over++
	} else if new {
		t.over = 0
	}
	c := condition{kind: events.AlarmCriticalTemperature, subject: n.Name, value: round1(t.celsius), limit: crit,
		reason: fmt.Sprintf("critical temperature %.1f °C > %v °C", t.celsius, crit)}
	switch {
	case t.over >= r.cfg.TripSamples:
		if n.Desired != events.PowerOff {
			c.reason += ": shutting " + n.Name + " down"
			ev.shutdowns = append(ev.shutdowns, c)
		}
		if alarm != nil && n.Desired == events.PowerOff {
			c.reason, c.value, c.limit = alarm.Reason, alarm.Value, alarm.Limit // raised already, nothing new
		}
		ev.active[c.key()] = c
	case alarm != nil && t.celsius >= crit-r.cfg.ClearHysteresis:
		ev.active[c.key()] = condition{kind: c.kind, subject: c.subject, reason: alarm.Reason, value: alarm.Value, limit: alarm.Limit}
	}
}

// record appends what changed: alarms raised, alarms cleared, shutdowns
// (each a forced desired power off with its alarm, in one batch).
func (r *Reconciler) record(ctx context.Context, st *state.State, ev evaluation) error {
	var evs []events.Event
	add := func(t events.Type, subject string, p events.Payload) error {
		e, err := events.New(r.source, t, subject, p)
		if err != nil {
			return fmt.Errorf("building %s for %s: %w", t, subject, err)
		}
		e.Actor = Actor
		evs = append(evs, e)
		return nil
	}
	shut := map[string]bool{}
	for _, c := range ev.shutdowns {
		shut[c.key()] = true
		// Forced: the quorum guard protects the control plane from
		// operators; a node at its critical temperature is a fire risk and
		// goes off even if it hosts a member.
		if err := add(events.AlarmRaised, c.subject, &events.AlarmRaisedData{Kind: c.kind, Reason: clipText(c.reason), Value: c.value, Limit: c.limit}); err != nil {
			return err
		}
		if err := add(events.NodePowerDesired, c.subject, &events.PowerDesiredData{State: events.PowerOff, Force: true}); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(ev.active))
	for k := range ev.active {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c := ev.active[k]
		if shut[k] || st.Thermal.Alarm(c.kind, c.subject) != nil {
			continue
		}
		if err := add(events.AlarmRaised, c.subject, &events.AlarmRaisedData{Kind: c.kind, Reason: clipText(c.reason), Value: c.value, Limit: c.limit}); err != nil {
			return err
		}
	}
	for _, a := range st.Thermal.AlarmList() {
		if _, ok := ev.active[state.AlarmKey(a.Kind, a.Subject)]; ok {
			continue
		}
		if err := add(events.AlarmCleared, a.Subject, &events.AlarmClearedData{Kind: a.Kind, Reason: "condition ended"}); err != nil {
			return err
		}
	}
	if len(evs) == 0 {
		return nil
	}
	if _, err := r.cfg.Log.Append(ctx, evs...); err != nil {
		return err
	}
	for _, e := range evs {
		switch e.Type {
		case events.AlarmRaised:
			p, _ := e.Payload()
			d := p.(*events.AlarmRaisedData)
			r.metrics.raised.WithLabelValues(string(d.Kind)).Inc()
			r.logger.Warn("alarm raised", "kind", d.Kind, "subject", e.Subject, "reason", d.Reason)
		case events.AlarmCleared:
			p, _ := e.Payload()
			r.logger.Info("alarm cleared", "kind", p.(*events.AlarmClearedData).Kind, "subject", e.Subject)
		case events.NodePowerDesired:
			r.metrics.shutdowns.Inc()
			r.logger.Error("node over its critical temperature: shutting it down", "node", e.Subject)
		}
	}
	return nil
}

// sample builds the telemetry sample.
func (r *Reconciler) sample(p events.FanPolicy, rd readings, ev evaluation, duty float64, now time.Time) telemetry.Sample {
	s := telemetry.Sample{
		Rack: r.cfg.Rack, Member: r.cfg.Member, Time: now.UTC(), IntervalSeconds: r.cfg.Interval.Seconds(),
		Duty: duty, FailSafe: ev.failSafe, FailSafeReason: clipText(ev.reason), SourceCelsius: finite(ev.source),
		Nodes: make([]telemetry.NodeSample, 0, len(rd.nodes)), Fans: make([]telemetry.FanSample, 0, len(rd.fans)),
	}
	if rd.rackErr == nil {
		s.Totals = telemetry.RackTotals{OK: true, Watts: finite(rd.rack.Watts), Joules: finite(rd.rack.Joules), InletCelsius: finite(rd.rack.InletCelsius)}
	} else {
		s.Totals.Error = clipText(rd.rackErr.Error())
	}
	for _, nr := range rd.nodes {
		ns := telemetry.NodeSample{Name: nr.node.Name, Slot: nr.node.Slot, Stale: ev.stale[nr.node.Name]}
		if nr.err == nil {
			ns.OK, ns.Watts, ns.Joules, ns.Celsius = true, finite(nr.rd.Watts), finite(nr.rd.Joules), finite(nr.rd.Celsius)
		} else {
			ns.Error = clipText(nr.err.Error())
		}
		s.Nodes = append(s.Nodes, ns)
	}
	if rd.fansErr == nil {
		for i, f := range rd.fans {
			if i >= telemetry.MaxFans {
				break
			}
			s.Fans = append(s.Fans, telemetry.FanSample{Fan: i + 1, RPM: finite(f.RPM), Duty: finite(f.DutyPercent), Failed: ev.failed[f.Fan]})
		}
	}
	return s
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func clipErr(err error) string { return clipText(err.Error()) }

// clipText makes s fit an event's text field.
func clipText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > 900 {
		s = strings.ToValidUTF8(s[:900], "") + "…"
	}
	return s
}
