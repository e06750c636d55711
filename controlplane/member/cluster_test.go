package member

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/events"

	"github.com/racklet/rack/internal/testutil"
)

// testRack is a control plane of in-process members on loopback, each with
// its own embedded NATS server (routed into one cluster), Raft over NATS,
// real bolt files and the HTTP API; or, with the etcd store (see
// newEtcdTestRack), an embedded etcd member each instead of Raft.
type testRack struct {
	t       *testing.T
	dir     string
	tune    func(*Config)
	mu      sync.Mutex
	members map[string]*Member
	etcd    *etcdPorts // nil: the Raft store
}

func newTestRack(t *testing.T, n int, tune func(*Config)) *testRack {
	t.Helper()
	r := &testRack{t: t, dir: t.TempDir(), tune: tune, members: map[string]*Member{}}
	t.Cleanup(func() {
		for _, m := range r.running() {
			m.Kill()
		}
	})
	for i := 1; i <= n; i++ {
		r.start(fmt.Sprintf("m%d", i))
	}
	r.waitConverged(60 * time.Second)
	return r
}

func (r *testRack) start(name string) *Member {
	r.t.Helper()
	m, err := r.startErr(name)
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

// startErr starts a member; it may run in a goroutine of its own.
func (r *testRack) startErr(name string) (*Member, error) {
	cfg := Config{
		Name: name, Rack: "rack1", DataDir: filepath.Join(r.dir, name),
		HTTP: "127.0.0.1:0", NATS: "127.0.0.1:0", NATSCluster: "127.0.0.1:0", LogLevel: "info", Insecure: true,
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
	}
	if r.etcd != nil {
		r.etcd.configure(&cfg)
	} else {
		others := r.running()
		if len(others) == 0 {
			cfg.Bootstrap = true
		}
		for _, o := range others {
			cfg.Join = append(cfg.Join, o.ClusterURL())
		}
	}
	if r.tune != nil {
		r.tune(&cfg)
	}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := Start(ctx, cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	r.mu.Lock()
	r.members[name] = m
	r.mu.Unlock()
	return m, nil
}

func (r *testRack) kill(m *Member) {
	r.mu.Lock()
	delete(r.members, m.Name())
	r.mu.Unlock()
	m.Kill()
}

func (r *testRack) running() []*Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Member, 0, len(r.members))
	for i := 1; i <= 9; i++ {
		if m, ok := r.members[fmt.Sprintf("m%d", i)]; ok {
			out = append(out, m)
		}
	}
	return out
}

func (r *testRack) leader() *Member {
	for _, m := range r.running() {
		if m.IsLeader() {
			return m
		}
	}
	return nil
}

func (r *testRack) follower() *Member {
	for _, m := range r.running() {
		if !m.IsLeader() {
			return m
		}
	}
	return nil
}

// waitConverged waits for one leader whose configuration holds every
// running member, each ready.
func (r *testRack) waitConverged(timeout time.Duration) {
	r.t.Helper()
	testutil.WaitFor(r.t, timeout, r.converged)
}

// converged returns why the rack has not converged yet, or nil.
func (r *testRack) converged() error {
	l := r.leader()
	if l == nil {
		return errors.New("no leader")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ms, err := l.Members(ctx)
	if err != nil {
		return err
	}
	for _, m := range r.running() {
		found := false
		for _, mi := range ms {
			found = found || (mi.Name == m.Name() && mi.Voter)
		}
		if !found {
			return fmt.Errorf("%s is not a voter yet", m.Name())
		}
		if err := m.cluster.Ready(ctx); err != nil {
			return fmt.Errorf("%s not ready: %w", m.Name(), err)
		}
		// The log is quiescent once its own membership events are in.
		if got, want := len(m.Store().State().Members), len(r.running()); got != want {
			return fmt.Errorf("%s has %d members in its state, want %d", m.Name(), got, want)
		}
	}
	return nil
}

// writer appends through the API of whichever member answers, and keeps
// every acknowledged event.
type writer struct {
	t     *testing.T
	rack  *testRack
	mu    sync.Mutex
	acked []events.Event
	next  int
}

func (w *writer) ackedEvents() []events.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]events.Event(nil), w.acked...)
}

// write performs command i: registers node n<i/5> on the first of every 5,
// then sets its power; it tries members in turn until one acknowledges.
func (w *writer) write(ctx context.Context, i int) error {
	node := fmt.Sprintf("n%d", i/5)
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		ms := w.rack.running()
		m := ms[(i+attempt)%len(ms)]
		c, err := client.New(m.APIURL())
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var ev events.Event
		if i%5 == 0 {
			ev, err = c.RegisterNode(cctx, api.RegisterNodeRequest{Name: node, Slot: i/5 + 1})
		} else {
			st := events.PowerOn
			if i%2 == 0 {
				st = events.PowerOff
			}
			ev, err = c.SetPower(cctx, node, st, false)
		}
		cancel()
		if err == nil {
			w.mu.Lock()
			w.acked = append(w.acked, ev)
			w.mu.Unlock()
			return nil
		}
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Code == "conflict" && i%5 == 0 {
			// An earlier attempt of this registration was committed
			// though its answer was lost with its member.
			return nil
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("command %d: %w", i, lastErr)
}

func readAll(t *testing.T, m *Member) []events.Event {
	t.Helper()
	evs, err := m.EventLog().Read(context.Background(), 0, 0)
	if err != nil {
		t.Fatalf("reading %s: %v", m.Name(), err)
	}
	return evs
}

// checkLogs checks that every member holds every acknowledged event, at
// its acknowledged sequence, and that all members agree on their common
// prefix.
func checkLogs(t *testing.T, ms []*Member, acked []events.Event) {
	t.Helper()
	var ref []events.Event
	for _, m := range ms {
		evs := readAll(t, m)
		for i, ev := range evs {
			if ev.Sequence != uint64(i)+1 {
				t.Fatalf("%s: event %d has sequence %d: a hole", m.Name(), i, ev.Sequence)
			}
		}
		for _, a := range acked {
			if a.Sequence == 0 || a.Sequence > uint64(len(evs)) || evs[a.Sequence-1].ID != a.ID {
				t.Fatalf("%s: acknowledged event %d (id %s) missing", m.Name(), a.Sequence, a.ID)
			}
		}
		if ref == nil {
			ref = evs
			continue
		}
		for i := 0; i < min(len(ref), len(evs)); i++ {
			if ref[i].ID != evs[i].ID {
				t.Fatalf("%s disagrees with %s at sequence %d", m.Name(), ms[0].Name(), i+1)
			}
		}
	}
}

func TestLeaderLossMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	for _, tc := range []struct {
		name       string
		bySnapshot bool
	}{{"catch-up-by-log", false}, {"catch-up-by-snapshot", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var tune func(*Config)
			if tc.bySnapshot {
				tune = func(c *Config) {
					c.SnapshotThreshold, c.TrailingLogs, c.SnapshotInterval = 64, 16, 200*time.Millisecond
				}
			}
			rack := newTestRack(t, 3, tune)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			w := &writer{t: t, rack: rack}
			const total, killAt = 1000, 300
			for i := 0; i < killAt; i++ {
				if err := w.write(ctx, i); err != nil {
					t.Fatal(err)
				}
			}
			old := rack.leader()
			if old == nil {
				t.Fatal("no leader")
			}
			killedLast := old.Log().Raft().LastIndex()
			// Kill the leader while a second writer is mid-stream.
			var wg sync.WaitGroup
			errs := make(chan error, 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := killAt; i < total; i++ {
					if err := w.write(ctx, i); err != nil {
						errs <- err
						return
					}
				}
			}()
			testutil.WaitFor(t, 30*time.Second, func() error {
				if n := len(w.ackedEvents()); n < killAt+20 {
					return fmt.Errorf("%d acknowledged", n)
				}
				return nil
			})
			rack.kill(old)
			wg.Wait()
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			acked := w.ackedEvents()
			if len(acked) < total*4/5 {
				t.Fatalf("only %d of %d commands acknowledged", len(acked), total)
			}
			survivors := rack.running()
			lastAcked := uint64(0)
			for _, a := range acked {
				lastAcked = max(lastAcked, a.Sequence)
			}
			testutil.WaitFor(t, 30*time.Second, func() error {
				for _, m := range survivors {
					if got := m.Log().Store().LastSequence(); got < lastAcked {
						return fmt.Errorf("%s at %d, want %d", m.Name(), got, lastAcked)
					}
				}
				return nil
			})
			checkLogs(t, survivors, acked)

			if tc.bySnapshot {
				// The survivors compacted past the killed member's log:
				// it can only catch up by InstallSnapshot.
				testutil.WaitFor(t, 30*time.Second, func() error {
					for _, m := range survivors {
						first, err := m.Log().FirstIndex()
						if err != nil {
							return err
						}
						if first <= killedLast+1 {
							return fmt.Errorf("%s still has its log from %d (killed member at %d)", m.Name(), first, killedLast)
						}
					}
					return nil
				})
			}
			restarted := rack.start(old.Name())
			testutil.WaitFor(t, 60*time.Second, func() error {
				if got := restarted.Log().Store().LastSequence(); got < lastAcked {
					return fmt.Errorf("restarted %s at %d, want %d", restarted.Name(), got, lastAcked)
				}
				return nil
			})
			checkLogs(t, rack.running(), acked)
		})
	}
}

func TestNATSSubscriberOnFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	rack := newTestRack(t, 3, nil)
	f := rack.follower()
	nc, err := nats.Connect(f.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ch := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe("racklet.rack1.events.>", ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := &writer{t: t, rack: rack}
	// The first event tells when the subscription's interest has reached
	// the leader through the routes; from then on nothing may be missed.
	if err := w.write(ctx, 0); err != nil {
		t.Fatal(err)
	}
	first := w.ackedEvents()[0]
	seen := map[string]bool{}
	var prev uint64
	timeout := time.After(30 * time.Second)
	next := func() events.Event {
		t.Helper()
		select {
		case m := <-ch:
			ev, err := events.Decode(m.Data)
			if err != nil {
				t.Fatalf("invalid envelope on %s: %v", m.Subject, err)
			}
			if want := events.NATSSubject("rack1", ev); m.Subject != want {
				t.Fatalf("event %d on subject %s, want %s", ev.Sequence, m.Subject, want)
			}
			return ev
		case <-timeout:
			t.Fatalf("received up to %d", prev)
		}
		panic("unreachable")
	}
	for ev := next(); ev.ID != first.ID; ev = next() {
	}
	prev = first.Sequence
	seen[first.ID] = true
	for i := 1; i < 200; i++ {
		if err := w.write(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	for _, a := range w.ackedEvents() {
		last = max(last, a.Sequence)
	}
	for prev < last {
		ev := next()
		if ev.Sequence <= prev {
			continue // a duplicate around a failover is allowed
		}
		if ev.Sequence != prev+1 {
			t.Fatalf("got sequence %d after %d: out of order or missing", ev.Sequence, prev)
		}
		seen[ev.ID] = true
		prev = ev.Sequence
	}
	for _, a := range w.ackedEvents() {
		if !seen[a.ID] {
			t.Fatalf("acknowledged event %d never published", a.Sequence)
		}
	}
}
