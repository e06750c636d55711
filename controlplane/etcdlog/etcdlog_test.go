package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/eventlog/eventlogtest"
	"github.com/racklet/rack/events"

	"github.com/racklet/rack/internal/testutil"
)

// shared is the 3-member cluster most tests use, each on a rack (key
// prefix) of its own; tests that stop members start their own cluster.
var shared *Cluster

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "etcdlog-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	shared, err = StartCluster(ctx, ClusterConfig{Dir: dir, Members: 3})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	shared.Close()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var rackSeq atomic.Int64

// newRack returns a rack name no other test uses.
func newRack(prefix string) string { return fmt.Sprintf("%s%d", prefix, rackSeq.Add(1)) }

func openLog(t *testing.T, cfg Config) *Log {
	t.Helper()
	if cfg.Endpoints == nil && cfg.Client == nil {
		cfg.Endpoints = shared.Endpoints()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	l, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func plainClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func mk(t testing.TB, typ events.Type, subject string, p events.Payload) events.Event {
	t.Helper()
	ev, err := events.New(events.Source("rack1", "m1"), typ, subject, p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func registered(t testing.TB, node string, slot int) events.Event {
	return mk(t, events.NodeRegistered, node, &events.NodeRegisteredData{Slot: slot})
}

func observed(t testing.TB, node string, on bool) events.Event {
	s := events.PowerOff
	if on {
		s = events.PowerOn
	}
	return mk(t, events.NodePowerObserved, node, &events.PowerObservedData{State: s})
}

// The conformance suite on the 3-member cluster: every subtest gets a
// rack of its own, so its log starts empty.
func TestConformance(t *testing.T) {
	eventlogtest.Run(t, func(t *testing.T) eventlog.Log {
		return openLog(t, Config{Rack: newRack("c"), Member: "m1"})
	})
}

// The keys under the prefix are the events in order, as etcdctl shows
// them: CloudEvents JSON, sequences contiguous from 1, the head the last.
func TestKeysAreTheLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rack := newRack("k")
	l := openLog(t, Config{Rack: rack})
	cli := plainClient(t, shared.Endpoints())
	pfx := "/racklet/" + rack + "/events/"
	// What `etcdctl watch --prefix /racklet/<rack>/events/` shows.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := cli.Watch(wctx, pfx, clientv3.WithPrefix())
	var acked []events.Event
	for i, batch := range [][]events.Event{
		{registered(t, "n1", 1)},
		{observed(t, "n1", true), observed(t, "n1", false), registered(t, "n2", 2)},
		{observed(t, "n2", true)},
	} {
		out, err := l.Append(ctx, batch...)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		acked = append(acked, out...)
	}
	if _, err := l.Append(ctx, observed(t, "n9", true)); err == nil {
		t.Fatal("append for an unknown node succeeded")
	}

	for i := 0; i < len(acked); {
		select {
		case wr := <-wch:
			if err := wr.Err(); err != nil {
				t.Fatal(err)
			}
			for _, wev := range wr.Events {
				ev, err := events.Decode(wev.Kv.Value)
				if err != nil {
					t.Fatalf("watched %s: %v", wev.Kv.Key, err)
				}
				if ev.ID != acked[i].ID || ev.Sequence != acked[i].Sequence {
					t.Fatalf("watched event %d = %s/%d, want %s/%d", i, ev.ID, ev.Sequence, acked[i].ID, acked[i].Sequence)
				}
				i++
			}
		case <-ctx.Done():
			t.Fatal("watching the prefix: timed out")
		}
	}
	resp, err := cli.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != len(acked) {
		t.Fatalf("%d keys under %s, want %d", len(resp.Kvs), pfx, len(acked))
	}
	var revs []int64
	for i, kv := range resp.Kvs {
		seq := uint64(i + 1)
		if want := fmt.Sprintf("%s%020d", pfx, seq); string(kv.Key) != want {
			t.Fatalf("key %d is %s, want %s", i, kv.Key, want)
		}
		ev, err := events.Decode(kv.Value)
		if err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		if ev.Sequence != seq || ev.ID != acked[i].ID || ev.Type != acked[i].Type {
			t.Fatalf("%s holds %d %s %s, want %d %s %s", kv.Key, ev.Sequence, ev.ID, ev.Type, seq, acked[i].ID, acked[i].Type)
		}
		revs = append(revs, kv.ModRevision)
	}
	// One transaction per batch, in log order.
	if revs[1] != revs[2] || revs[2] != revs[3] || !(revs[0] < revs[1] && revs[3] < revs[4]) {
		t.Fatalf("revisions %v: want one per batch, increasing", revs)
	}
	head, err := cli.Get(ctx, "/racklet/"+rack+"/head")
	if err != nil || len(head.Kvs) != 1 {
		t.Fatalf("head: %v %v", head, err)
	}
	if string(head.Kvs[0].Value) != strconv.Itoa(len(acked)) || head.Kvs[0].ModRevision != revs[4] {
		t.Fatalf("head = %s at revision %d, want %d at %d", head.Kvs[0].Value, head.Kvs[0].ModRevision, len(acked), revs[4])
	}

	// A second Log opened later rebuilds the same projection from the keys.
	l2 := openLog(t, Config{Rack: rack, Member: "m2", Endpoints: shared.Endpoints()[2:]})
	got, err := l2.Read(ctx, 0, 0)
	if err != nil || len(got) != len(acked) {
		t.Fatalf("second Log: Read = %d events, %v; want %d", len(got), err, len(acked))
	}
	for i := range got {
		if got[i].ID != acked[i].ID || got[i].Sequence != acked[i].Sequence {
			t.Fatalf("second Log: event %d = %s/%d, want %s/%d", i, got[i].ID, got[i].Sequence, acked[i].ID, acked[i].Sequence)
		}
	}
}

// Writers on two Logs, each on its own etcd member, contend for the head:
// every batch is committed exactly once and the sequences stay contiguous.
func TestConcurrentLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rack := newRack("w")
	eps := shared.Endpoints()
	logs := []*Log{
		openLog(t, Config{Rack: rack, Member: "m1", Endpoints: eps[0:1]}),
		openLog(t, Config{Rack: rack, Member: "m2", Endpoints: eps[1:2]}),
	}
	const writers, per = 6, 15
	var (
		mu    sync.Mutex
		acked []events.Event
		wg    sync.WaitGroup
		errs  = make(chan error, writers)
	)
	plan := make([][][]events.Event, writers)
	for g := range writers {
		node := fmt.Sprintf("w%d", g)
		plan[g] = append(plan[g], []events.Event{registered(t, node, g+1)})
		for i := 1; i < per; i++ {
			batch := []events.Event{observed(t, node, i%2 == 0)}
			if i%3 == 0 {
				batch = append(batch, observed(t, node, i%2 != 0))
			}
			plan[g] = append(plan[g], batch)
		}
	}
	total := 0
	for _, p := range plan {
		for _, b := range p {
			total += len(b)
		}
	}
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := logs[g%2]
			for _, batch := range plan[g] {
				out, err := l.Append(ctx, batch...)
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", g, err)
					return
				}
				for i := 1; i < len(out); i++ {
					if out[i].Sequence != out[i-1].Sequence+1 {
						errs <- fmt.Errorf("writer %d: batch got sequences %d then %d", g, out[i-1].Sequence, out[i].Sequence)
						return
					}
				}
				mu.Lock()
				acked = append(acked, out...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(acked) != total {
		t.Fatalf("%d events acknowledged, want %d", len(acked), total)
	}
	bySeq := map[uint64]string{}
	for _, ev := range acked {
		if prev, dup := bySeq[ev.Sequence]; dup {
			t.Fatalf("sequence %d acknowledged twice (%s, %s)", ev.Sequence, prev, ev.ID)
		}
		bySeq[ev.Sequence] = ev.ID
	}
	for i, l := range logs {
		t.Logf("log %d: %+v", i, l.Stats())
		if err := l.Sync(ctx); err != nil {
			t.Fatalf("log %d: Sync: %v", i, err)
		}
		got, err := l.Read(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != total {
			t.Fatalf("log %d holds %d events, want %d", i, len(got), total)
		}
		for j, ev := range got {
			if ev.Sequence != uint64(j+1) {
				t.Fatalf("log %d: event %d has sequence %d", i, j, ev.Sequence)
			}
			if bySeq[ev.Sequence] != ev.ID {
				t.Fatalf("log %d: sequence %d is %s, acknowledged as %s", i, ev.Sequence, ev.ID, bySeq[ev.Sequence])
			}
		}
	}
}

// With a member stopped (etcd's leader, the hardest one), appends and
// syncs go on through the other two; the member comes back and catches up.
func TestMemberStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c, err := StartCluster(ctx, ClusterConfig{Dir: t.TempDir(), Members: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	l := openLog(t, Config{Rack: "rack1", Endpoints: c.Endpoints()})
	if _, err := l.Append(ctx, registered(t, "n1", 1)); err != nil {
		t.Fatal(err)
	}
	stopped := -1
	testutil.WaitFor(t, 10*time.Second, func() error {
		for i, m := range c.Members() {
			if m.IsLeader() {
				stopped = i
				return nil
			}
		}
		return errors.New("no etcd leader")
	})
	c.Stop(stopped)
	for i := range 10 {
		actx, acancel := context.WithTimeout(ctx, 20*time.Second)
		out, err := l.Append(actx, observed(t, "n1", i%2 == 0))
		acancel()
		if err != nil {
			t.Fatalf("append %d with member %d stopped: %v", i, stopped, err)
		}
		if want := uint64(i + 2); out[0].Sequence != want {
			t.Fatalf("append %d got sequence %d, want %d", i, out[0].Sequence, want)
		}
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	// A Log talking only to the restarted member sees the whole log.
	l2 := openLog(t, Config{Rack: "rack1", Member: "m2", Endpoints: []string{c.Members()[stopped].ClientURL}})
	testutil.WaitFor(t, 20*time.Second, func() error {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		if err := l2.Sync(sctx); err != nil {
			return err
		}
		if got := l2.Store().LastSequence(); got != 11 {
			return fmt.Errorf("restarted member's log at %d, want 11", got)
		}
		return nil
	})
	if _, err := l2.Append(ctx, observed(t, "n1", true)); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(ctx); err != nil || l.Store().LastSequence() != 12 {
		t.Fatalf("first log at %d after Sync (%v), want 12", l.Store().LastSequence(), err)
	}
}

// Only the elected Log appends fenced; a leader whose election key is gone
// (deposed, without knowing yet) cannot commit; closing the leader hands
// the leadership over.
func TestFenced(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rack := newRack("f")
	eps := shared.Endpoints()
	a := openLog(t, Config{Rack: rack, Member: "m1", Endpoints: eps[0:1], Elect: true, ElectionTTL: 2})
	b := openLog(t, Config{Rack: rack, Member: "m2", Endpoints: eps[1:2], Elect: true, ElectionTTL: 2})
	plain := openLog(t, Config{Rack: rack, Member: "m3"})
	if _, err := plain.Append(ctx, registered(t, "n1", 1)); err != nil {
		t.Fatal(err)
	}
	leaderOf := func() (lead, other *Log, err error) {
		switch {
		case a.IsLeader() && !b.IsLeader():
			return a, b, nil
		case b.IsLeader() && !a.IsLeader():
			return b, a, nil
		}
		return nil, nil, fmt.Errorf("leaders: m1 %v, m2 %v", a.IsLeader(), b.IsLeader())
	}
	var lead, other *Log
	testutil.WaitFor(t, 15*time.Second, func() (err error) { lead, other, err = leaderOf(); return err })

	if _, err := plain.AppendFenced(ctx, observed(t, "n1", true)); !errors.Is(err, eventlog.ErrNotLeader) {
		t.Fatalf("AppendFenced without Elect = %v, want ErrNotLeader", err)
	}
	if _, err := other.AppendFenced(ctx, observed(t, "n1", true)); !errors.Is(err, eventlog.ErrNotLeader) {
		t.Fatalf("AppendFenced on the follower = %v, want ErrNotLeader", err)
	}
	out, err := lead.AppendFenced(ctx, observed(t, "n1", true))
	if err != nil || out[0].Sequence != 2 {
		t.Fatalf("AppendFenced on the leader = %v, %v; want sequence 2", out, err)
	}

	// Depose the leader behind its back: its election key is deleted,
	// its lease still alive. A transaction fenced by the old leadership
	// fails, whether or not the Log has noticed yet, and writes nothing.
	fence := lead.leader()
	st, rev := lead.projection()
	stale, err := st.Apply([]events.Event{observed(t, "n1", false)})
	if err != nil {
		t.Fatal(err)
	}
	cli := plainClient(t, eps)
	if _, err := cli.Delete(ctx, fence.key); err != nil {
		t.Fatal(err)
	}
	if res, err := lead.commit(ctx, rev, stale, fence); err != nil || res.ok || !res.fenced {
		t.Fatalf("fenced commit of a deposed leader = %+v, %v; want refused by the fence", res, err)
	}
	if _, err := lead.AppendFenced(ctx, observed(t, "n1", false)); !errors.Is(err, eventlog.ErrNotLeader) {
		t.Fatalf("AppendFenced of a deposed leader = %v, want ErrNotLeader", err)
	}
	if err := plain.Sync(ctx); err != nil || plain.Store().LastSequence() != 2 {
		t.Fatalf("log at %d (%v) after a deposed leader's append, want 2", plain.Store().LastSequence(), err)
	}
	// Someone leads again (they campaign afresh).
	testutil.WaitFor(t, 15*time.Second, func() (err error) { lead, other, err = leaderOf(); return err })

	// Closing the leader hands over at once (its lease is revoked).
	ch := other.LeaderCh()
	if err := lead.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(15 * time.Second)
	for won := false; !won; {
		select {
		case won = <-ch:
		case <-deadline:
			t.Fatal("the other Log did not take over after the leader closed")
		}
	}
	if _, err := other.AppendFenced(ctx, observed(t, "n1", false)); err != nil {
		t.Fatalf("AppendFenced on the new leader: %v", err)
	}
}

// A rejected batch never reaches etcd, with the same errors as elsewhere;
// an oversized one is refused before it is sent.
func TestRejectedBatchesWriteNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rack := newRack("r")
	l := openLog(t, Config{Rack: rack})
	if _, err := l.Append(ctx, observed(t, "n1", true)); err == nil {
		t.Fatal("append for an unknown node succeeded")
	}
	big := make([]events.Event, MaxBatchEvents+1)
	big[0] = registered(t, "n1", 1)
	for i := 1; i < len(big); i++ {
		big[i] = observed(t, "n1", i%2 == 0)
	}
	if _, err := l.Append(ctx, big...); !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("append of %d events = %v, want ErrBatchTooLarge", len(big), err)
	}
	cli := plainClient(t, shared.Endpoints())
	resp, err := cli.Get(ctx, "/racklet/"+rack+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("%d keys under the rack after rejected appends (%v), want 0", resp.Count, err)
	}
	if _, err := l.Append(ctx, big[:MaxBatchEvents]...); err != nil {
		t.Fatalf("append of %d events: %v", MaxBatchEvents, err)
	}
}

// Keys that do not continue the log make it refuse appends (ErrCorrupt)
// rather than project something else than the other members.
func TestForeignKeyIsCorruption(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rack := newRack("x")
	l := openLog(t, Config{Rack: rack})
	if _, err := l.Append(ctx, registered(t, "n1", 1)); err != nil {
		t.Fatal(err)
	}
	cli := plainClient(t, shared.Endpoints())
	if _, err := cli.Put(ctx, fmt.Sprintf("/racklet/%s/events/%020d", rack, 7), "{}"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if _, err := l.Append(ctx, observed(t, "n1", true)); !errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("Append = %v, want ErrCorrupt", err)
		}
		return nil
	})
}

// A transaction whose outcome the client cannot know (committed, then the
// reply lost; or lost before it got there) is resolved by looking the
// batch up: each batch is in the log exactly once.
func TestUnknownOutcomeExactlyOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const (
		none = iota
		replyLost
		requestLost
	)
	var fault atomic.Int32
	inject := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == "/etcdserverpb.KV/Txn" {
			switch fault.Swap(none) {
			case replyLost:
				if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
					return err
				}
				return status.Error(codes.Unavailable, "injected: reply lost")
			case requestLost:
				return status.Error(codes.Unavailable, "injected: request lost")
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: shared.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(inject)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	rack := newRack("u")
	l := openLog(t, Config{Rack: rack, Client: cli})

	if _, err := l.Append(ctx, registered(t, "n1", 1)); err != nil {
		t.Fatal(err)
	}
	for i, f := range []int32{replyLost, requestLost, replyLost} {
		fault.Store(f)
		ev := observed(t, "n1", i%2 == 0)
		out, err := l.Append(ctx, ev)
		if err != nil {
			t.Fatalf("append %d (fault %d): %v", i, f, err)
		}
		if want := uint64(i + 2); out[0].Sequence != want || out[0].ID != ev.ID {
			t.Fatalf("append %d (fault %d) = %s/%d, want %s/%d", i, f, out[0].ID, out[0].Sequence, ev.ID, want)
		}
	}
	if got := l.Stats().UnknownOutcomes; got != 3 {
		t.Fatalf("%d unknown outcomes resolved, want 3 (was the fault injected?)", got)
	}
	resp, err := plainClient(t, shared.Endpoints()).Get(ctx, "/racklet/"+rack+"/events/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 4 {
		t.Fatalf("%d events in etcd, want 4: every batch exactly once", len(resp.Kvs))
	}
	ids := map[string]bool{}
	for _, kv := range resp.Kvs {
		ev, err := events.Decode(kv.Value)
		if err != nil {
			t.Fatal(err)
		}
		if ids[ev.ID] {
			t.Fatalf("event %s stored twice", ev.ID)
		}
		ids[ev.ID] = true
	}
}

// etcd compaction drops old revisions, not keys: a watch from a compacted
// revision fails (the Log then catches up from the keys), and a Log opened
// after compaction still reads the whole log.
func TestCompaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rack := newRack("p")
	l := openLog(t, Config{Rack: rack})
	if _, err := l.Append(ctx, registered(t, "n1", 1), observed(t, "n1", true)); err != nil {
		t.Fatal(err)
	}
	cli := plainClient(t, shared.Endpoints())
	resp, err := cli.Get(ctx, "/racklet/"+rack+"/head")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if err := l.watch(0); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("watch from revision 1 after compaction at %d = %v, want ErrCompacted", resp.Header.Revision, err)
	}
	if _, err := l.catchUp(ctx); err != nil {
		t.Fatalf("catch-up after compaction: %v", err)
	}
	if _, err := l.Append(ctx, observed(t, "n1", false)); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, Config{Rack: rack, Member: "m2"})
	if got := l2.Store().LastSequence(); got != 3 {
		t.Fatalf("a Log opened after compaction is at %d, want 3", got)
	}
	if err := l.Sync(ctx); err != nil || l.Store().LastSequence() != 3 {
		t.Fatalf("Log at %d after Sync (%v), want 3", l.Store().LastSequence(), err)
	}
}
