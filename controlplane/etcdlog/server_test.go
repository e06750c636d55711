package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/racklet/rack/events"

	"github.com/racklet/rack/internal/testutil"
)

// One embedded member as rackd runs it: alone by default (a one-member
// cluster), a second one joins it with Join (added as a learner, promoted
// once caught up), and a member restarts from its data dir.
func TestServerStartJoinRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	ports, err := freePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	url := func(i int) string { return "http://127.0.0.1:" + strconv.Itoa(ports[i]) }
	cfg1 := ServerConfig{Name: "m1", Dir: filepath.Join(dir, "m1"), PeerListen: url(0), ClientListen: url(1), Token: "t", ElectionMs: 200}
	s1, err := StartServer(ctx, cfg1)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Kill()
	if !s1.IsLeader() {
		t.Fatal("a one-member cluster's member is not its leader")
	}
	cfg2 := ServerConfig{Name: "m2", Dir: filepath.Join(dir, "m2"), PeerListen: url(2), ClientListen: url(3), Join: []string{s1.ClientURL()}, Token: "t", ElectionMs: 200}
	s2, err := StartServer(ctx, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	cli := plainClient(t, []string{s1.ClientURL()})
	list, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range list.Members {
		if m.IsLearner {
			t.Errorf("member %s is still a learner", m.Name)
		}
		names[m.Name] = true
	}
	if len(list.Members) != 2 || !names["m1"] || !names["m2"] {
		t.Fatalf("members %v, want voters m1 and m2", list.Members)
	}
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}

	// Joining again under a taken name is refused before anything changes.
	cfg3 := cfg2
	cfg3.Dir, cfg3.PeerListen = filepath.Join(dir, "m2bis"), "http://127.0.0.1:1"
	if _, err := StartServer(ctx, cfg3); err == nil {
		t.Fatal("a second member named m2 joined")
	}

	// m2 stops and starts again from its data dir (Join is then ignored).
	s2.Close()
	s2, err = StartServer(ctx, cfg2)
	if err != nil {
		t.Fatalf("restarting m2: %v", err)
	}
	defer s2.Kill()
	resp, err := plainClient(t, []string{s2.ClientURL()}).Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reading through the restarted member: %v, %v", resp, err)
	}
}

// A killed Log does not resign: its election key stays until its lease
// expires, and only then does another Log lead. Leader names the leader.
func TestKillKeepsLeadershipUntilLeaseExpires(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rack := newRack("kill")
	eps := shared.Endpoints()
	a, err := Open(ctx, Config{Rack: rack, Member: "m1", Endpoints: eps[0:1], Elect: true, ElectionTTL: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	testutil.WaitFor(t, 15*time.Second, func() error {
		if !a.IsLeader() {
			return errors.New("m1 does not lead")
		}
		return nil
	})
	b := openLog(t, Config{Rack: rack, Member: "m2", Endpoints: eps[1:2], Elect: true, ElectionTTL: 2})
	if name, err := b.Leader(ctx); err != nil || name != "m1" {
		t.Fatalf("Leader = %q, %v; want m1", name, err)
	}
	ch := b.LeaderCh()
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	if name, err := b.Leader(ctx); err != nil || name != "m1" {
		t.Fatalf("right after the kill Leader = %q, %v; want m1 until its lease expires", name, err)
	}
	deadline := time.After(20 * time.Second)
	for won := false; !won; {
		select {
		case won = <-ch:
		case <-deadline:
			t.Fatal("m2 did not take over after m1's lease expired")
		}
	}
	if name, err := b.Leader(ctx); err != nil || name != "m2" {
		t.Fatalf("Leader = %q, %v; want m2", name, err)
	}
}

// The leader compacts etcd's history before the oldest event of the
// retention window: no event key is lost, a watch from inside the window
// replays it, one from before is refused as compacted.
func TestLeaderCompactsHistory(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rack := newRack("cmp")
	l := openLog(t, Config{Rack: rack, Member: "m1", Elect: true, ElectionTTL: 2, Retention: 3, CompactInterval: 20 * time.Millisecond})
	testutil.WaitFor(t, 15*time.Second, func() error {
		if !l.IsLeader() {
			return errors.New("not leading")
		}
		return nil
	})
	if _, err := l.Append(ctx, registered(t, "n1", 1)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := l.Append(ctx, observed(t, "n1", i%2 == 0)); err != nil {
			t.Fatal(err)
		}
	}
	cli := plainClient(t, shared.Endpoints())
	oldest, err := cli.Get(ctx, l.EventKey(4)) // the window is 4, 5, 6
	if err != nil || len(oldest.Kvs) != 1 {
		t.Fatalf("reading event 4: %v", err)
	}
	rev := oldest.Kvs[0].ModRevision
	testutil.WaitFor(t, 15*time.Second, func() error {
		if got := l.compacted.Load(); got != rev {
			return fmt.Errorf("compacted at %d, want %d (event 4)", got, rev)
		}
		return nil
	})
	all, err := cli.Get(ctx, l.EventsPrefix(), clientv3.WithPrefix())
	if err != nil || len(all.Kvs) != 6 {
		t.Fatalf("after compaction %d event keys (%v), want 6", len(all.Kvs), err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wr := <-cli.Watch(wctx, l.EventsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev-1))
	if !errors.Is(wr.Err(), rpctypes.ErrCompacted) {
		t.Fatalf("watch from before the window: %v, want compacted", wr.Err())
	}
	var seqs []uint64
	for wr := range cli.Watch(wctx, l.EventsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if err := wr.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range wr.Events {
			e, err := events.Decode(ev.Kv.Value)
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, e.Sequence)
		}
		if len(seqs) >= 3 {
			break
		}
	}
	if fmt.Sprint(seqs) != "[4 5 6]" {
		t.Fatalf("watch from the window replayed %v, want 4 5 6", seqs)
	}
	// Nothing new to compact: no second compaction at the same revision.
	if got, err := l.compact(ctx); err != nil || got != 0 {
		t.Fatalf("compact again = %d, %v; want nothing", got, err)
	}
}
