package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/racklet/rack/events"
)

// TestBinariesEtcd runs three `rackd --store etcd` processes on loopback,
// performs commands through rackctl against different members, and reads
// the log as an operator would with
//
//	etcdctl --endpoints http://<etcd-client> watch --prefix --rev 1 /racklet/rack1/events/
//
// (an etcd client's Watch with the same options: there is no etcdctl
// here). The keys must be the acknowledged events, in order, and the
// members' own listings must agree with them. A member stopped with SIGTERM
// exits cleanly and comes back from its data dir.
func TestBinariesEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	goBin := findGo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	bin := buildBinaries(ctx, t, goBin, filepath.Join(dir, "bin"))
	rk := &binRack{t: t, bin: bin, dir: dir, procs: map[string]*rackdProc{}}
	t.Cleanup(rk.cleanup)

	names := []string{"m1", "m2", "m3"}
	ports := freePorts(t, 5*len(names))
	peer := func(i int) string { return ports[5*i+3] }
	client := func(i int) string { return ports[5*i+4] }
	var initial []string
	for i, name := range names {
		initial = append(initial, name+"=http://"+peer(i))
	}
	for i, name := range names {
		p := &rackdProc{name: name, http: ports[5*i], nats: ports[5*i+1], cluster: ports[5*i+2], dataDir: filepath.Join(dir, "data", name)}
		p.args = []string{
			"--store", "etcd", "--name", name, "--rack", "rack1", "--data-dir", p.dataDir,
			"--http", p.http, "--nats", p.nats, "--nats-cluster", p.cluster,
			"--etcd-peer", peer(i), "--etcd-client", client(i), "--etcd-initial-cluster", strings.Join(initial, ","),
			"--election-timeout", "500ms", "--log-level", "info", "--insecure",
		}
		for j := range names {
			if j != i {
				p.args = append(p.args, "--join", "nats://"+ports[5*j+2])
			}
		}
		rk.procs[name] = p
		rk.order = append(rk.order, name)
		rk.start(ctx, p) // together: each etcd member waits for a quorum
	}
	rk.waitReady(ctx, 60*time.Second, rk.order...)

	w := &cliWriter{rack: rk}
	const commands = 30
	for i := range commands {
		if err := w.write(ctx, i, rk.order); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.acked) != commands {
		t.Fatalf("%d of %d commands acknowledged", len(w.acked), commands)
	}
	last := uint64(0)
	for _, a := range w.acked {
		last = max(last, a.Sequence)
	}

	// etcdctl watch --prefix --rev 1 /racklet/rack1/events/, on m2's
	// etcd member.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + client(1)}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	var watched []events.Event
	for wr := range cli.Watch(wctx, "/racklet/rack1/events/", clientv3.WithPrefix(), clientv3.WithRev(1)) {
		if err := wr.Err(); err != nil {
			t.Fatalf("watching the events' keys: %v", err)
		}
		for _, kv := range wr.Events {
			ev, err := events.Decode(kv.Kv.Value)
			if err != nil {
				t.Fatalf("key %s: %v", kv.Kv.Key, err)
			}
			if want := fmt.Sprintf("/racklet/rack1/events/%020d", ev.Sequence); string(kv.Kv.Key) != want {
				t.Fatalf("event %d under key %s, want %s", ev.Sequence, kv.Kv.Key, want)
			}
			watched = append(watched, ev)
		}
		if uint64(len(watched)) >= last {
			break
		}
	}
	if err := checkLog(watched, w.acked); err != nil {
		t.Fatalf("the watch on etcd: %v", err)
	}
	t.Logf("an etcd watch of the prefix from revision 1 shows the %d events in order", len(watched))
	ref := rk.agree(ctx, 30*time.Second, rk.order, w.acked)
	for i := range watched {
		if watched[i].ID != ref[i].ID {
			t.Fatalf("etcd holds %s at sequence %d, rackctl events %s", watched[i].ID, i+1, ref[i].ID)
		}
	}

	// SIGTERM: a clean exit (status 0, leadership resigned), and back
	// from the data dir.
	leader := rk.leader(ctx, rk.order)
	rk.terminate(leader)
	rk.start(ctx, rk.procs[leader])
	rk.waitReady(ctx, 60*time.Second, rk.order...)
	rk.agree(ctx, 30*time.Second, rk.order, w.acked)
}
