package reconcilers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/events"

	"github.com/racklet/rack/internal/testutil"
)

const testTimeout = 10 * time.Second

// fakeRec is a Reconciler that records its calls.
type fakeRec struct {
	name    string
	inputs  []events.Type
	outputs []events.Type
	fn      func(ctx context.Context, req Request, call int) (Result, error)

	mu            sync.Mutex
	calls         map[string]int
	running       map[string]int
	maxConcurrent int // most concurrent calls of one name ever seen
	order         []string
}

func newFake(name string, fn func(context.Context, Request, int) (Result, error), inputs ...events.Type) *fakeRec {
	return &fakeRec{name: name, inputs: inputs, fn: fn, calls: map[string]int{}, running: map[string]int{}}
}

func (f *fakeRec) Name() string           { return f.name }
func (f *fakeRec) Inputs() []events.Type  { return f.inputs }
func (f *fakeRec) Outputs() []events.Type { return f.outputs }

func (f *fakeRec) Reconcile(ctx context.Context, req Request) (Result, error) {
	f.mu.Lock()
	f.calls[req.Name]++
	call := f.calls[req.Name]
	f.running[req.Name]++
	f.maxConcurrent = max(f.maxConcurrent, f.running[req.Name])
	f.order = append(f.order, req.Name)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running[req.Name]--
		f.mu.Unlock()
	}()
	if f.fn == nil {
		return Result{}, nil
	}
	return f.fn(ctx, req, call)
}

func (f *fakeRec) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeRec) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ns []string
	for n := range f.calls {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

func (f *fakeRec) waitCount(t *testing.T, name string, n int) {
	t.Helper()
	testutil.WaitFor(t, testTimeout, func() error {
		if got := f.count(name); got < n {
			return fmt.Errorf("%s: %d calls for %s, want %d", f.name, got, name, n)
		}
		return nil
	})
}

// listingRec adds Lister: the names of the members in the state.
type listingRec struct {
	*fakeRec
	log eventlog.Log
}

func (l *listingRec) List(ctx context.Context) ([]string, error) {
	st, err := l.log.State(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for n := range st.Members {
		names = append(names, n)
	}
	return names, nil
}

var _ Lister = (*listingRec)(nil)

func newLog(t *testing.T) *eventlog.Mem {
	t.Helper()
	l := eventlog.NewMem(0)
	t.Cleanup(func() { l.Close() })
	return l
}

// appendEvent commits one event of type typ about subject.
func appendEvent(t *testing.T, l eventlog.Log, typ events.Type, subject string) uint64 {
	t.Helper()
	var p events.Payload
	switch typ {
	case events.MemberJoined:
		p = &events.MemberJoinedData{Address: "10.0.0.1:7000", Voter: true}
	case events.NodeRegistered:
		p = &events.NodeRegisteredData{}
	case events.NodeRemoved:
		p = &events.NodeRemovedData{}
	default:
		t.Fatalf("appendEvent: no payload for %s", typ)
	}
	ev, err := events.New(events.Source("rack1", "m1"), typ, subject, p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := l.Append(context.Background(), ev)
	if err != nil {
		t.Fatalf("appending %s %s: %v", typ, subject, err)
	}
	return out[0].Sequence
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// attrs returns the values of attribute key of the records with message msg.
func (h *logRecorder) attrs(msg, key string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		if r.Message != msg {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				out = append(out, a.Value.String())
			}
			return true
		})
	}
	return out
}

type harness struct {
	rt    *Runtime
	log   *eventlog.Mem
	reg   *prometheus.Registry
	lead  *LeaderSwitch
	logs  *logRecorder
	probe *fakeRec     // woken by node registrations, see started
	stop  func() error // cancels Run and returns its error
}

type harnessOpts struct {
	leading bool
	backoff Backoff
	workers map[string]int
}

// start builds a runtime over a fresh Mem log, registers recs and runs it
// until the test ends (or stop is called).
func start(t *testing.T, o harnessOpts, recs ...func(eventlog.Log) Reconciler) *harness {
	t.Helper()
	h := &harness{log: newLog(t), reg: prometheus.NewRegistry(), lead: NewLeaderSwitch(o.leading), logs: &logRecorder{}}
	if o.backoff == (Backoff{}) {
		o.backoff = Backoff{Base: 5 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.2}
	}
	rt, err := New(Config{Log: h.log, Leadership: h.lead, Registerer: h.reg, Logger: slog.New(h.logs), Backoff: o.backoff})
	if err != nil {
		t.Fatal(err)
	}
	h.rt = rt
	h.probe = newFake("probe", nil, events.NodeRegistered)
	if err := rt.Register(h.probe); err != nil {
		t.Fatal(err)
	}
	for _, mk := range recs {
		r := mk(h.log)
		if err := rt.Register(r, Workers(max(1, o.workers[r.Name()]))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	var once sync.Once
	var runErr error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(testTimeout):
				runErr = errors.New("Run did not return after its context ended")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func plain(r Reconciler) func(eventlog.Log) Reconciler {
	return func(eventlog.Log) Reconciler { return r }
}

func listing(f *fakeRec) func(eventlog.Log) Reconciler {
	return func(l eventlog.Log) Reconciler { return &listingRec{fakeRec: f, log: l} }
}

func TestWakesWithInputSubjects(t *testing.T) {
	type ev struct {
		typ     events.Type
		subject string
	}
	tests := []struct {
		name   string
		inputs []events.Type
		events []ev
		want   []string
	}{
		{
			name:   "member events only",
			inputs: []events.Type{events.MemberJoined},
			events: []ev{{events.MemberJoined, "m1"}, {events.NodeRegistered, "n1"}, {events.MemberJoined, "m2"}},
			want:   []string{"m1", "m2"},
		},
		{
			name:   "node events only",
			inputs: []events.Type{events.NodeRegistered, events.NodeRemoved},
			events: []ev{{events.NodeRegistered, "n1"}, {events.MemberJoined, "m1"}, {events.NodeRegistered, "n2"}, {events.NodeRemoved, "n1"}},
			want:   []string{"n1", "n2"},
		},
		{
			name:   "both",
			inputs: []events.Type{events.NodeRegistered, events.MemberJoined},
			events: []ev{{events.NodeRegistered, "n1"}, {events.MemberJoined, "m1"}},
			want:   []string{"m1", "n1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake("watcher", nil, tt.inputs...)
			// A second reconciler that sees every type in the same
			// dispatch tells when all events were delivered.
			fence := newFake("fence", nil, events.MemberJoined)
			h := start(t, harnessOpts{leading: true}, plain(f), plain(fence))
			h.started(t)
			for _, e := range tt.events {
				appendEvent(t, h.log, e.typ, e.subject)
			}
			appendEvent(t, h.log, events.MemberJoined, "fence")
			fence.waitCount(t, "fence", 1)
			for _, n := range tt.want {
				f.waitCount(t, n, 1)
			}
			got := slices.DeleteFunc(f.names(), func(s string) bool { return s == "fence" || strings.HasPrefix(s, "probe-") })
			if !slices.Equal(got, tt.want) {
				t.Fatalf("reconciled %v, want %v", got, tt.want)
			}
		})
	}
}

// started waits until the runtime leads and watches the log: it appends
// probe nodes until the probe reconciler is woken by one, so events
// appended afterwards are seen by every reconciler.
func (h *harness) started(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for i := 0; ; i++ {
		name := fmt.Sprintf("probe-%d", i)
		appendEvent(t, h.log, events.NodeRegistered, name)
		for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
			if h.probe.count(name) > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: the runtime does not watch the log", testTimeout)
		}
	}
}

func TestCoalesces(t *testing.T) {
	release := make(chan struct{})
	f := newFake("slow", func(ctx context.Context, req Request, call int) (Result, error) {
		if req.Name == "m1" && call == 1 {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return Result{}, nil
	}, events.MemberJoined)
	fence := newFake("fence", nil, events.MemberJoined)
	h := start(t, harnessOpts{leading: true}, plain(f), plain(fence))
	h.started(t)

	appendEvent(t, h.log, events.MemberJoined, "m1")
	f.waitCount(t, "m1", 1) // blocked in its first call
	for range 20 {
		appendEvent(t, h.log, events.MemberJoined, "m1")
	}
	appendEvent(t, h.log, events.MemberJoined, "fence1")
	fence.waitCount(t, "fence1", 1) // every m1 event was dispatched
	close(release)
	f.waitCount(t, "m1", 2)
	// One worker, FIFO: anything still queued for m1 runs before fence2.
	appendEvent(t, h.log, events.MemberJoined, "fence2")
	f.waitCount(t, "fence2", 1)
	if got := f.count("m1"); got != 2 {
		t.Fatalf("m1 reconciled %d times, want 2 (one extra for 20 events during the first)", got)
	}
	f.mu.Lock()
	mc := f.maxConcurrent
	f.mu.Unlock()
	if mc != 1 {
		t.Fatalf("up to %d concurrent reconciles of one name, want 1", mc)
	}
}

// TestNeverConcurrentPerName hammers a few names with many workers and
// checks that one name never runs twice at once and that each name's last
// reconcile saw its last event (level-triggered).
func TestNeverConcurrentPerName(t *testing.T) {
	var seenMu sync.Mutex
	seen := map[string]uint64{} // member -> sequence its last reconcile saw
	var log eventlog.Log
	f := newFake("busy", func(ctx context.Context, req Request, _ int) (Result, error) {
		time.Sleep(time.Millisecond)
		st, err := log.State(ctx)
		if err != nil {
			return Result{}, err
		}
		if m := st.Members[req.Name]; m != nil {
			seenMu.Lock()
			seen[req.Name] = m.Sequence
			seenMu.Unlock()
		}
		return Result{}, nil
	}, events.MemberJoined)
	h := start(t, harnessOpts{leading: true, workers: map[string]int{"busy": 4}}, func(l eventlog.Log) Reconciler { log = l; return f })
	h.started(t)

	names := []string{"a", "b", "c"}
	last := map[string]uint64{}
	for i := range 150 {
		n := names[i%len(names)]
		last[n] = appendEvent(t, h.log, events.MemberJoined, n)
	}
	testutil.WaitFor(t, testTimeout, func() error {
		seenMu.Lock()
		defer seenMu.Unlock()
		for _, n := range names {
			if seen[n] != last[n] {
				return fmt.Errorf("%s: last reconcile saw sequence %d, want %d", n, seen[n], last[n])
			}
		}
		return nil
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxConcurrent != 1 {
		t.Fatalf("up to %d concurrent reconciles of one name, want 1", f.maxConcurrent)
	}
}

func TestRequeueAfter(t *testing.T) {
	f := newFake("poller", func(_ context.Context, req Request, call int) (Result, error) {
		if req.Name == "m1" && call < 4 {
			return Result{RequeueAfter: time.Millisecond}, nil
		}
		return Result{}, nil
	}, events.MemberJoined)
	h := start(t, harnessOpts{leading: true}, plain(f))
	h.started(t)
	appendEvent(t, h.log, events.MemberJoined, "m1")
	f.waitCount(t, "m1", 4)
	// Nothing is scheduled after the fourth call returned a zero Result
	// (its start cancelled the pending requeue). Give a stray timer time
	// to fire, then use a fence.
	time.Sleep(50 * time.Millisecond)
	appendEvent(t, h.log, events.MemberJoined, "fence")
	f.waitCount(t, "fence", 1)
	if got := f.count("m1"); got != 4 {
		t.Fatalf("m1 reconciled %d times, want 4", got)
	}
	if got := metricValue(t, h.reg, "racklet_reconcile_total", map[string]string{"reconciler": "poller", "result": "requeue"}); got != 3 {
		t.Fatalf("requeue results = %v, want 3", got)
	}
}

func TestErrorsBackOff(t *testing.T) {
	var mu sync.Mutex
	var starts, ends []time.Time
	f := newFake("failing", func(_ context.Context, req Request, _ int) (Result, error) {
		mu.Lock()
		defer mu.Unlock()
		starts = append(starts, time.Now())
		ends = append(ends, time.Now())
		return Result{}, errors.New("bmc unreachable")
	}, events.MemberJoined)
	backoff := Backoff{Base: 10 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.2}
	h := start(t, harnessOpts{leading: true, backoff: backoff}, plain(f))
	h.started(t)
	t0 := time.Now()
	appendEvent(t, h.log, events.MemberJoined, "m1")

	// Attempts in a bounded window: a tight loop would make thousands;
	// backoff (10, 20, 40, 80, 160ms ± 20%) allows at most six in 300ms.
	// A loaded machine only lowers the count.
	time.Sleep(300*time.Millisecond - time.Since(t0))
	if n := f.count("m1"); n > 7 {
		t.Fatalf("%d attempts in 300ms with a 10ms backoff base, want at most 7", n)
	}
	const attempts = 8
	f.waitCount(t, "m1", attempts)

	mu.Lock()
	var gaps []time.Duration
	for i := 1; i < attempts; i++ {
		gaps = append(gaps, starts[i].Sub(ends[i-1]))
	}
	mu.Unlock()
	// Scheduling delays only lengthen gaps (by hundreds of milliseconds
	// on a loaded machine), so these are what can be asserted: each gap
	// is at least the shortest backoff for its attempt, which doubles, and
	// the last gap (at least 512ms) is longer than the first.
	for i, g := range gaps {
		if lo := backoff.delay(i+1, 0); g < lo {
			t.Errorf("gap %d is %s, shorter than the backoff's lowest %s: %v", i, g, lo, gaps)
		}
	}
	if gaps[len(gaps)-1] <= gaps[0] {
		t.Errorf("gaps did not grow: %v", gaps)
	}
	if attempts := h.logs.attrs("reconcile failed; retrying", "attempt"); !slices.Equal(attempts[:6], []string{"1", "2", "3", "4", "5", "6"}) {
		t.Errorf("logged attempts %v, want 1, 2, 3, …", attempts)
	}
}

func TestBackoffResetsOnSuccess(t *testing.T) {
	f := newFake("flaky", func(_ context.Context, req Request, call int) (Result, error) {
		if req.Name == "m1" && call != 3 && call < 5 {
			return Result{}, errors.New("flaky")
		}
		return Result{}, nil
	}, events.MemberJoined)
	h := start(t, harnessOpts{leading: true}, plain(f))
	h.started(t)
	appendEvent(t, h.log, events.MemberJoined, "m1")
	f.waitCount(t, "m1", 3) // fail, fail, succeed
	appendEvent(t, h.log, events.MemberJoined, "m1")
	f.waitCount(t, "m1", 5) // fail, succeed
	got := h.logs.attrs("reconcile failed; retrying", "attempt")
	if want := []string{"1", "2", "1"}; !slices.Equal(got, want) {
		t.Fatalf("logged attempts %v, want %v (reset after a success)", got, want)
	}
}

func TestTerminalNotRetried(t *testing.T) {
	f := newFake("strict", func(_ context.Context, req Request, _ int) (Result, error) {
		if req.Name == "fence" {
			return Result{}, nil
		}
		return Result{}, Terminal(fmt.Errorf("desired state %q: %w", req.Name, errors.New("invalid")))
	}, events.MemberJoined)
	h := start(t, harnessOpts{leading: true}, plain(f))
	h.started(t)
	appendEvent(t, h.log, events.MemberJoined, "m1")
	f.waitCount(t, "m1", 1)
	// 20 backoff bases: a retry would have happened by now.
	time.Sleep(100 * time.Millisecond)
	appendEvent(t, h.log, events.MemberJoined, "fence")
	f.waitCount(t, "fence", 1)
	if got := f.count("m1"); got != 1 {
		t.Fatalf("terminal error retried: %d calls", got)
	}
	appendEvent(t, h.log, events.MemberJoined, "m1") // a new input event
	f.waitCount(t, "m1", 2)
	testutil.WaitFor(t, testTimeout, func() error {
		if got := metricValue(t, h.reg, "racklet_reconcile_errors_total", map[string]string{"reconciler": "strict", "kind": "terminal"}); got != 2 {
			return fmt.Errorf("terminal errors = %v, want 2", got)
		}
		return nil
	})
	if got := metricValue(t, h.reg, "racklet_reconcile_errors_total", map[string]string{"reconciler": "strict", "kind": "retry"}); got != 0 {
		t.Fatalf("retry errors = %v, want 0", got)
	}
}

func TestTerminal(t *testing.T) {
	base := errors.New("boom")
	if Terminal(nil) != nil {
		t.Error("Terminal(nil) != nil")
	}
	err := fmt.Errorf("reconciling n3: %w", Terminal(base))
	if !IsTerminal(err) || !errors.Is(err, base) {
		t.Errorf("wrapped terminal error: IsTerminal=%v Is(base)=%v", IsTerminal(err), errors.Is(err, base))
	}
	if IsTerminal(base) {
		t.Error("plain error reported terminal")
	}
}

// rec is a minimal Reconciler for registration tests.
type rec struct {
	name            string
	inputs, outputs []events.Type
}

func (r rec) Name() string                                       { return r.name }
func (r rec) Inputs() []events.Type                              { return r.inputs }
func (r rec) Outputs() []events.Type                             { return r.outputs }
func (r rec) Reconcile(context.Context, Request) (Result, error) { return Result{}, nil }

func TestRegister(t *testing.T) {
	in := []events.Type{events.NodePowerDesired}
	power := rec{"power", in, []events.Type{events.NodePowerObserved, events.ActionStarted}}
	tests := []struct {
		name    string
		first   []Reconciler
		r       Reconciler
		opts    []Option
		wantErr error
	}{
		{name: "ok", r: power},
		{name: "two owners of one output", first: []Reconciler{power}, r: rec{"other", in, []events.Type{events.NodePowerObserved}}, wantErr: ErrOutputOwned},
		{name: "shared action outputs", first: []Reconciler{power}, r: rec{"boot", in, []events.Type{events.ActionStarted, events.ActionFailed}}},
		{name: "same name twice", first: []Reconciler{power}, r: rec{"power", in, nil}, wantErr: ErrDuplicate},
		{name: "bad name", r: rec{"Power!", in, nil}, wantErr: ErrInvalid},
		{name: "empty name", r: rec{"", in, nil}, wantErr: ErrInvalid},
		{name: "no inputs", r: rec{"idle", nil, nil}, wantErr: ErrInvalid},
		{name: "unknown input", r: rec{"x", []events.Type{"io.racklet.nope"}, nil}, wantErr: ErrInvalid},
		{name: "unknown output", r: rec{"x", in, []events.Type{"io.racklet.nope"}}, wantErr: ErrInvalid},
		{name: "reads its own output", r: rec{"loop", in, in}, wantErr: ErrInvalid},
		{name: "zero workers", r: power, opts: []Option{Workers(0)}, wantErr: ErrInvalid},
		{name: "workers", r: power, opts: []Option{Workers(3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := New(Config{Log: newLog(t), Leadership: NewLeaderSwitch(false)})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tt.first {
				if err := rt.Register(r); err != nil {
					t.Fatal(err)
				}
			}
			err = rt.Register(tt.r, tt.opts...)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Register = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestNewAndRunErrors(t *testing.T) {
	l := newLog(t)
	for _, cfg := range []Config{
		{Leadership: NewLeaderSwitch(true)},
		{Log: l},
		{Log: l, Leadership: NewLeaderSwitch(true), Backoff: Backoff{Base: time.Second, Max: time.Millisecond}},
		{Log: l, Leadership: NewLeaderSwitch(true), Backoff: Backoff{Base: time.Second, Max: time.Minute, Jitter: 1}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Log: l, Leadership: NewLeaderSwitch(true), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Log: l, Leadership: NewLeaderSwitch(true), Registerer: reg}); err == nil {
		t.Error("second runtime on one registry: no error")
	}

	t.Run("register after run", func(t *testing.T) {
		h := start(t, harnessOpts{})
		testutil.WaitFor(t, testTimeout, func() error {
			if err := h.rt.Register(rec{"late", []events.Type{events.MemberJoined}, nil}); !errors.Is(err, ErrStarted) {
				return fmt.Errorf("Register after Run = %v, want ErrStarted", err)
			}
			return nil
		})
		if err := h.rt.Run(context.Background()); !errors.Is(err, ErrStarted) {
			t.Errorf("second Run = %v, want ErrStarted", err)
		}
	})

	t.Run("leadership closed", func(t *testing.T) {
		ch := make(chan bool)
		rt, err := New(Config{Log: newLog(t), Leadership: chanLeader(ch)})
		if err != nil {
			t.Fatal(err)
		}
		close(ch)
		if err := rt.Run(context.Background()); !errors.Is(err, ErrLeadershipClosed) {
			t.Errorf("Run = %v, want ErrLeadershipClosed", err)
		}
	})

	t.Run("log closed", func(t *testing.T) {
		l := eventlog.NewMem(0)
		rt, err := New(Config{Log: l, Leadership: NewLeaderSwitch(true), Logger: slog.New(&logRecorder{})})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Register(newFake("x", nil, events.MemberJoined)); err != nil {
			t.Fatal(err)
		}
		l.Close()
		if err := rt.Run(context.Background()); !errors.Is(err, eventlog.ErrClosed) {
			t.Errorf("Run = %v, want eventlog.ErrClosed", err)
		}
		if rt.Leading() {
			t.Error("still leading after Run returned")
		}
	})
}

type chanLeader chan bool

func (c chanLeader) LeaderCh() <-chan bool { return c }

func TestLeadership(t *testing.T) {
	var mu sync.Mutex
	cancelled := 0
	f := newFake("leader-only", func(ctx context.Context, req Request, _ int) (Result, error) {
		if req.Name == "slow" {
			<-ctx.Done() // blocks until leadership is lost
			mu.Lock()
			cancelled++
			mu.Unlock()
			return Result{}, ctx.Err()
		}
		return Result{}, nil
	}, events.MemberJoined)
	// Two workers: "slow" blocks one until leadership is lost.
	h := start(t, harnessOpts{leading: false, workers: map[string]int{"leader-only": 2}}, listing(f))

	// Not leading: nothing runs, whatever is appended.
	appendEvent(t, h.log, events.MemberJoined, "m1")
	time.Sleep(50 * time.Millisecond)
	if names := f.names(); len(names) != 0 || h.rt.Leading() {
		t.Fatalf("before leadership: reconciled %v, leading %v", names, h.rt.Leading())
	}

	// Leading: m1, appended before, is found by the resync.
	h.lead.Set(true)
	f.waitCount(t, "m1", 1)

	// An in-flight Reconcile sees its context cancelled when leadership
	// is lost, and the runtime waits for it.
	appendEvent(t, h.log, events.MemberJoined, "slow")
	f.waitCount(t, "slow", 1)
	h.lead.Set(false)
	testutil.WaitFor(t, testTimeout, func() error {
		if h.rt.Leading() {
			return errors.New("still leading")
		}
		return nil
	})
	mu.Lock()
	if cancelled != 1 {
		t.Fatalf("stopped with %d cancelled reconciles, want 1", cancelled)
	}
	mu.Unlock()

	// Not leading again: new events wake nothing.
	appendEvent(t, h.log, events.MemberJoined, "m2")
	time.Sleep(50 * time.Millisecond)
	if got := f.count("m2"); got != 0 {
		t.Fatalf("m2 reconciled %d times while not leading", got)
	}

	// Regained: the resync covers what was missed, and what ran before.
	h.lead.Set(true)
	f.waitCount(t, "m2", 1)
	f.waitCount(t, "m1", 2)
	f.waitCount(t, "slow", 2)

	// Run's context ends: Run returns only after the in-flight call did.
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if cancelled != 2 {
		t.Fatalf("after Run returned, %d cancelled reconciles returned, want 2", cancelled)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running["slow"] != 0 {
		t.Fatal("a Reconcile still running after Run returned")
	}
}

// TestLeaderRestartOnCoalescedTrue: a true while leading (a loss and a
// regain coalesced by the channel) starts a new term with a resync.
func TestLeaderRestartOnCoalescedTrue(t *testing.T) {
	f := newFake("resync", nil, events.NodeRegistered)
	ch := make(chan bool, 1)
	l := newLog(t)
	rt, err := New(Config{Log: l, Leadership: chanLeader(ch), Logger: slog.New(&logRecorder{})})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Register(&listingRec{fakeRec: f, log: l}); err != nil {
		t.Fatal(err)
	}
	appendEvent(t, l, events.MemberJoined, "m1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	ch <- true
	f.waitCount(t, "m1", 1)
	ch <- true
	f.waitCount(t, "m1", 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMetrics(t *testing.T) {
	f := newFake("metered", func(_ context.Context, req Request, call int) (Result, error) {
		switch {
		case req.Name == "bad":
			return Result{}, Terminal(errors.New("bad"))
		case req.Name == "panicky" && call == 1:
			panic("driver bug")
		case req.Name == "flaky" && call == 1:
			return Result{}, errors.New("flaky")
		}
		return Result{}, nil
	}, events.MemberJoined)
	h := start(t, harnessOpts{leading: true}, plain(f))
	h.started(t)
	for _, n := range []string{"ok", "bad", "flaky", "panicky"} {
		appendEvent(t, h.log, events.MemberJoined, n)
	}
	f.waitCount(t, "flaky", 2)
	f.waitCount(t, "panicky", 2)
	f.waitCount(t, "bad", 1)
	f.waitCount(t, "ok", 1)

	testutil.WaitFor(t, testTimeout, func() error {
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"racklet_reconcile_total", map[string]string{"reconciler": "metered", "result": "success"}, 3},
			{"racklet_reconcile_total", map[string]string{"reconciler": "metered", "result": "retry"}, 2},
			{"racklet_reconcile_total", map[string]string{"reconciler": "metered", "result": "terminal"}, 1},
			{"racklet_reconcile_errors_total", map[string]string{"reconciler": "metered", "kind": "retry"}, 2},
			{"racklet_reconcile_errors_total", map[string]string{"reconciler": "metered", "kind": "terminal"}, 1},
			{"racklet_reconcile_duration_seconds", map[string]string{"reconciler": "metered"}, 6},
			{"racklet_reconcile_queue_depth", map[string]string{"reconciler": "metered"}, 0},
			{"racklet_reconcile_leading", nil, 1},
		} {
			if got := metricValue(t, h.reg, c.name, c.labels); got != c.want {
				return fmt.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		return nil
	})
	if got := h.logs.attrs("reconcile panicked", "name"); !slices.Equal(got, []string{"panicky"}) {
		t.Errorf("panic logs for %v, want [panicky]", got)
	}
}

// metricValue returns the value of the metric with exactly these labels
// (a histogram's sample count); it fails the test if there is none.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func labelsMatch(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}
