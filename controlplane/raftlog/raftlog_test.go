package raftlog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/racklet/rack/controlplane/natsserver"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"

	"github.com/racklet/rack/internal/testutil"
)

// testCluster is a set of members sharing one NATS server and raft's
// in-memory transport. The member-level tests over the real NATS transport
// and NATS cluster live in controlplane/member.
type testCluster struct {
	t     *testing.T
	srv   *natsserver.Server
	dir   string
	mu    sync.Mutex
	logs  map[string]*Log
	trans map[string]*raft.InmemTransport
	tune  func(*Config)
}

func newTestCluster(t *testing.T, n int, tune func(*Config)) *testCluster {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Config{Name: "test", Rack: "rack1", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, srv: srv, dir: t.TempDir(), logs: map[string]*Log{}, trans: map[string]*raft.InmemTransport{}, tune: tune}
	t.Cleanup(func() {
		c.mu.Lock()
		logs := c.logs
		c.mu.Unlock()
		for _, l := range logs {
			_ = l.Kill()
		}
		srv.Shutdown()
	})
	for i := 1; i <= n; i++ {
		c.start(fmt.Sprintf("m%d", i), i == 1)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		l := c.leader()
		if l == nil {
			return errors.New("no leader")
		}
		if got := len(l.Raft().GetConfiguration().Configuration().Servers); got != n {
			return fmt.Errorf("%d servers in the configuration, want %d", got, n)
		}
		// The log is quiescent once its own membership events are in.
		for _, m := range c.running() {
			if got := len(m.Store().State().Members); got != n {
				return fmt.Errorf("%s has %d members in its state, want %d", m.Name(), got, n)
			}
		}
		return nil
	})
	return c
}

func (c *testCluster) start(name string, bootstrap bool) *Log {
	c.t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress(name))
	c.mu.Lock()
	for other, ot := range c.trans {
		if _, running := c.logs[other]; running {
			tr.Connect(raft.ServerAddress(other), ot)
			ot.Connect(raft.ServerAddress(name), tr)
		}
	}
	c.trans[name] = tr
	c.mu.Unlock()
	nc, err := c.srv.Connect(name)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	cfg := Config{
		Name: name, Rack: "rack1", DataDir: filepath.Join(c.dir, name), Transport: tr, Conn: nc, Bootstrap: bootstrap,
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 200 * time.Millisecond,
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	l, err := Open(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("opening %s: %v", name, err)
	}
	c.mu.Lock()
	c.logs[name] = l
	c.mu.Unlock()
	return l
}

// kill stops a member abruptly and cuts it off the in-memory network.
func (c *testCluster) kill(name string) {
	c.mu.Lock()
	l := c.logs[name]
	delete(c.logs, name)
	tr := c.trans[name]
	for other, ot := range c.trans {
		if other != name {
			ot.Disconnect(raft.ServerAddress(name))
		}
	}
	c.mu.Unlock()
	tr.DisconnectAll()
	if err := l.Kill(); err != nil {
		c.t.Errorf("killing %s: %v", name, err)
	}
}

func (c *testCluster) leader() *Log {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.logs {
		if l.IsLeader() {
			return l
		}
	}
	return nil
}

func (c *testCluster) follower() *Log {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.logs {
		if !l.IsLeader() {
			return l
		}
	}
	return nil
}

func (c *testCluster) running() []*Log {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []*Log{}
	for _, l := range c.logs {
		out = append(out, l)
	}
	return out
}

func register(t *testing.T, name string) events.Event {
	t.Helper()
	ev, err := events.New(events.Source("rack1", "test"), events.NodeRegistered, name, &events.NodeRegisteredData{})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestAppendThroughFollowerAndMembers(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f := c.follower()
	got, err := f.Append(ctx, register(t, "n1"))
	if err != nil {
		t.Fatalf("append through a follower: %v", err)
	}
	if got[0].Sequence == 0 {
		t.Fatalf("no sequence: %+v", got[0])
	}
	// Rejections cross the forwarding boundary intact.
	_, err = f.Append(ctx, register(t, "n1"))
	if !errors.Is(err, state.ErrNodeExists) {
		t.Fatalf("second register = %v, want ErrNodeExists", err)
	}
	// Membership events are recorded by the leader.
	testutil.WaitFor(t, 10*time.Second, func() error {
		if err := f.Sync(ctx); err != nil {
			return err
		}
		st, _ := f.State(ctx)
		if len(st.Members) != 3 {
			return fmt.Errorf("members in state: %d", len(st.Members))
		}
		return nil
	})
	ms, err := f.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, m := range ms {
		if !m.Reachable || !m.Voter {
			t.Errorf("member %+v not reachable voter", m)
		}
		if m.Leader {
			leaders++
		}
	}
	if len(ms) != 3 || leaders != 1 {
		t.Fatalf("members = %+v", ms)
	}
}

func TestLeaderKilledAppendsContinueAndRestartCatchesUp(t *testing.T) {
	for _, bySnapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", bySnapshot), func(t *testing.T) {
			var tune func(*Config)
			if bySnapshot {
				tune = func(c *Config) {
					c.SnapshotThreshold, c.TrailingLogs, c.SnapshotInterval = 50, 10, 100*time.Millisecond
				}
			}
			c := newTestCluster(t, 3, tune)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var acked []events.Event
			appendN := func(l *Log, from, n int) {
				for i := from; i < from+n; i++ {
					evs, err := l.Append(ctx, register(t, fmt.Sprintf("n%d", i)))
					if err != nil {
						t.Fatalf("append %d: %v", i, err)
					}
					acked = append(acked, evs...)
				}
			}
			appendN(c.follower(), 0, 50)
			old := c.leader()
			name := old.Name()
			c.kill(name)
			appendN(c.running()[0], 50, 300)
			restarted := c.start(name, false)
			testutil.WaitFor(t, 30*time.Second, func() error {
				if seq := restarted.Store().LastSequence(); seq < acked[len(acked)-1].Sequence {
					return fmt.Errorf("restarted member at %d, want %d", seq, acked[len(acked)-1].Sequence)
				}
				return nil
			})
			for _, l := range c.running() {
				got, err := l.Read(ctx, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				bySeq := map[uint64]events.Event{}
				for _, ev := range got {
					bySeq[ev.Sequence] = ev
				}
				for _, want := range acked {
					if g, ok := bySeq[want.Sequence]; !ok || g.ID != want.ID {
						t.Fatalf("%s: acknowledged event %d (%s) missing or different", l.Name(), want.Sequence, want.ID)
					}
				}
			}
		})
	}
}
