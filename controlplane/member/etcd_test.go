package member

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/eventlog/eventlogtest"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"

	"github.com/racklet/rack/internal/testutil"
)

// etcdPorts are the loopback ports of an etcd test rack's members, picked
// before any starts (etcd members must know each other's peer URLs, and
// they start together).
type etcdPorts struct {
	n                          int
	peer, client, natsCluster  map[string]string
	initialCluster             []string
	joinExisting, joinEndpoint bool
}

func newEtcdPorts(names []string) (*etcdPorts, error) {
	p := &etcdPorts{n: len(names), peer: map[string]string{}, client: map[string]string{}, natsCluster: map[string]string{}}
	addrs, err := freeAddrsErr(3 * len(names))
	if err != nil {
		return nil, err
	}
	for i, name := range names {
		p.peer[name], p.client[name], p.natsCluster[name] = addrs[3*i], addrs[3*i+1], addrs[3*i+2]
		p.initialCluster = append(p.initialCluster, name+"=http://"+p.peer[name])
	}
	return p, nil
}

// configure sets a member's etcd store settings: the rack's initial
// cluster, and NATS routes to every other member.
func (p *etcdPorts) configure(c *Config) {
	c.Store = StoreEtcd
	c.EtcdPeer, c.EtcdClient, c.NATSCluster = p.peer[c.Name], p.client[c.Name], p.natsCluster[c.Name]
	c.EtcdInitialCluster = p.initialCluster
	for name, addr := range p.natsCluster {
		if name != c.Name {
			c.Join = append(c.Join, "nats://"+addr)
		}
	}
}

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs, err := freeAddrsErr(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// freeAddrsErr returns n distinct loopback addresses that were free a
// moment ago.
func freeAddrsErr(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	out := make([]string, n)
	for i := range out {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, ln)
		out[i] = ln.Addr().String()
	}
	return out, nil
}

// newEtcdTestRack starts n members on the etcd store and waits until they
// have converged; the test's cleanup kills them.
func newEtcdTestRack(t *testing.T, n int, tune func(*Config)) *testRack {
	t.Helper()
	r, err := startEtcdTestRack(t, t.TempDir(), n, tune)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.killAll)
	return r
}

// startEtcdTestRack starts n members on the etcd store in dir, together
// (an etcd member serves only once a quorum of its initial cluster is up),
// and waits until they have converged. It reports failure only by its
// error, so it may run in a goroutine of its own; on error it has killed
// what it started.
func startEtcdTestRack(t *testing.T, dir string, n int, tune func(*Config)) (*testRack, error) {
	for attempt := 1; ; attempt++ {
		r, err := startEtcdTestRackOnce(t, filepath.Join(dir, fmt.Sprint(attempt)), n, tune)
		// A port picked free may be taken before etcd listens on it (by
		// an outgoing connection of another rack, for one): new ports.
		if err != nil && strings.Contains(err.Error(), "address already in use") && attempt < 3 {
			continue
		}
		return r, err
	}
}

func startEtcdTestRackOnce(t *testing.T, dir string, n int, tune func(*Config)) (*testRack, error) {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("m%d", i+1)
	}
	ports, err := newEtcdPorts(names)
	if err != nil {
		return nil, err
	}
	r := &testRack{t: t, dir: dir, tune: tune, members: map[string]*Member{}, etcd: ports}
	errs := make(chan error, n)
	for _, name := range names {
		go func() { _, err := r.startErr(name); errs <- err }()
	}
	for range names {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	for deadline := time.Now().Add(60 * time.Second); err == nil; {
		cerr := r.converged()
		if cerr == nil {
			break
		}
		if time.Now().After(deadline) {
			err = cerr
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.killAll()
		return nil, fmt.Errorf("starting an etcd test rack: %w", err)
	}
	return r, nil
}

// killAll kills every running member, together: an embedded etcd member
// takes a second to stop.
func (r *testRack) killAll() {
	var wg sync.WaitGroup
	for _, m := range r.running() {
		wg.Go(m.Kill)
	}
	wg.Wait()
}

// rackPool starts etcd test racks ahead, a few at a time, for the
// conformance suite, which wants a fresh rack per subtest: a new etcd
// cluster takes about 2 s to form (mostly etcd's fixed bootstrap timeouts,
// spent waiting), and a member a second to stop, so the racks start in
// parallel and are killed in the background.
type rackPool struct {
	t     *testing.T
	ready chan *testRack
	errs  chan error
	stop  chan struct{}
	wg    sync.WaitGroup // workers and kills
}

func newRackPool(t *testing.T, workers, n int, tune func(*Config)) *rackPool {
	p := &rackPool{t: t, ready: make(chan *testRack), errs: make(chan error, workers), stop: make(chan struct{})}
	// Made before the cleanup below is registered, so removed after it
	// has killed every rack.
	root := t.TempDir()
	t.Cleanup(func() {
		close(p.stop)
		p.wg.Wait()
	})
	for range workers {
		p.wg.Go(func() {
			for {
				select {
				case <-p.stop:
					return
				default:
				}
				var r *testRack
				dir, err := os.MkdirTemp(root, "rack")
				if err == nil {
					r, err = startEtcdTestRack(t, dir, n, tune)
				}
				if err != nil {
					p.errs <- err
					return
				}
				select {
				case p.ready <- r:
				case <-p.stop:
					r.killAll()
					return
				}
			}
		})
	}
	return p
}

// get returns a converged rack for the subtest t; it is killed when t
// ends.
func (p *rackPool) get(t *testing.T) *testRack {
	t.Helper()
	select {
	case r := <-p.ready:
		r.t = t
		t.Cleanup(func() { p.wg.Go(r.killAll) })
		return r
	case err := <-p.errs:
		t.Fatal(err)
	case <-time.After(90 * time.Second):
		t.Fatal("no etcd test rack started within 90s")
	}
	return nil
}

// The event-log conformance suite on the etcd store: 3 members, each with
// its embedded etcd member and NATS server, used through a follower.
func TestConformanceEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	// Only the suite writes during a subtest: no periodic membership
	// check, which would record its made-up members as left.
	pool := newRackPool(t, 4, 3, func(c *Config) { c.MemberSyncInterval = -1 })
	eventlogtest.Run(t, func(t *testing.T) eventlog.Log { return pool.get(t).follower().EventLog() })
}

// With the etcd store, committed events reach a NATS subscriber on a
// follower in log order, published by the rack's leader; when the leader
// is killed mid-stream, another member takes the publication over from its
// watermark and the subscriber misses nothing (duplicates are allowed).
// The killed member then restarts from its data dir and catches up.
func TestEtcdPublicationAcrossLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	rack := newEtcdTestRack(t, 3, nil)
	leader := rack.leader()
	var sub *Member
	for _, m := range rack.running() {
		if m != leader {
			sub = m
			break
		}
	}
	nc, err := nats.Connect(sub.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ch := make(chan *nats.Msg, 4096)
	s, err := nc.ChanSubscribe(events.NATSWildcard("rack1"), ch)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := &writer{t: t, rack: rack}
	// The first event tells when the subscription's interest has reached
	// the leader through the routes; from then on nothing may be missed.
	if err := w.write(ctx, 0); err != nil {
		t.Fatal(err)
	}
	first := w.ackedEvents()[0]
	rx := &receiver{t: t, ch: ch}
	for ev := rx.next(); ev.ID != first.ID; ev = rx.next() {
	}
	rx.prev, rx.seen = first.Sequence, map[string]bool{first.ID: true}

	const total, killAt = 150, 60
	for i := 1; i < killAt; i++ {
		if err := w.write(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	rx.upTo(lastSequence(w.ackedEvents()))
	t.Logf("killing the leader %s after %d events", leader.Name(), rx.prev)
	rack.kill(leader)
	for i := killAt; i < total; i++ {
		if err := w.write(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	rx.upTo(lastSequence(w.ackedEvents()))
	for _, a := range w.ackedEvents() {
		if !rx.seen[a.ID] {
			t.Fatalf("acknowledged event %d never published", a.Sequence)
		}
	}
	next := rack.leader()
	if next == nil || next == leader {
		t.Fatalf("the leadership did not move from %s", leader.Name())
	}
	t.Logf("%s published after the kill; %d duplicates seen", next.Name(), rx.dups)
	checkLogs(t, rack.running(), w.ackedEvents())

	// The killed member comes back from its data dir: its etcd member
	// restarts and its log catches up.
	back := rack.start(leader.Name())
	last := lastSequence(w.ackedEvents())
	testutil.WaitFor(t, 30*time.Second, func() error {
		if got := back.Store().LastSequence(); got < last {
			return fmt.Errorf("restarted %s at %d, want %d", back.Name(), got, last)
		}
		return nil
	})
	checkLogs(t, rack.running(), w.ackedEvents())
}

func lastSequence(evs []events.Event) uint64 {
	var last uint64
	for _, ev := range evs {
		last = max(last, ev.Sequence)
	}
	return last
}

// receiver checks the events a NATS subscription receives: valid
// envelopes on their subjects, in order, each sequence once after any
// duplicates.
type receiver struct {
	t    *testing.T
	ch   <-chan *nats.Msg
	prev uint64
	seen map[string]bool
	dups int
}

func (r *receiver) next() events.Event {
	r.t.Helper()
	select {
	case m := <-r.ch:
		ev, err := events.Decode(m.Data)
		if err != nil {
			r.t.Fatalf("invalid envelope on %s: %v", m.Subject, err)
		}
		if want := events.NATSSubject("rack1", ev); m.Subject != want {
			r.t.Fatalf("event %d on subject %s, want %s", ev.Sequence, m.Subject, want)
		}
		return ev
	case <-time.After(30 * time.Second):
		r.t.Fatalf("nothing received for 30s after sequence %d", r.prev)
	}
	panic("unreachable")
}

// upTo receives until sequence last, checking the order.
func (r *receiver) upTo(last uint64) {
	r.t.Helper()
	for r.prev < last {
		ev := r.next()
		if ev.Sequence <= r.prev {
			r.dups++
			continue // a duplicate around a leader change is allowed
		}
		if ev.Sequence != r.prev+1 {
			r.t.Fatalf("got sequence %d after %d: out of order or missing", ev.Sequence, r.prev)
		}
		r.seen[ev.ID] = true
		r.prev = ev.Sequence
	}
}

// Members of the etcd store: GET /v1/members lists etcd's members with
// their URLs and the rack's leader; a member joins a running cluster with
// --etcd-join (a learner, then a voter, recorded in the log); removing it
// takes it out of etcd and records member.left.
func TestEtcdMembersJoinAndRemove(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	rack := newEtcdTestRack(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ms, err := rack.running()[0].Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, mi := range ms {
		if mi.Leader {
			leaders++
		}
		if !mi.Voter || !strings.HasPrefix(mi.RaftAddress, "http://127.0.0.1:") || mi.APIURL == "" || mi.NATSURL == "" {
			t.Errorf("member %+v: want a voter with its peer URL, API and NATS URLs", mi)
		}
	}
	if len(ms) != 3 || leaders != 1 {
		t.Fatalf("members = %+v: want 3, one the leader", ms)
	}

	// m4 joins through m2's etcd client URL.
	addrs := freeAddrs(t, 2)
	m2 := rack.members["m2"]
	rack.tune = func(c *Config) {
		if c.Name == "m4" {
			c.EtcdPeer, c.EtcdClient, c.NATSCluster = addrs[0], addrs[1], "127.0.0.1:0"
			c.EtcdInitialCluster, c.EtcdJoin = nil, []string{m2.EtcdClientURL()}
		}
	}
	m4 := rack.start("m4")
	testutil.WaitFor(t, 30*time.Second, func() error {
		mem, ok := m2.Store().State().Members["m4"]
		if !ok || !mem.Voter || mem.Address != "http://"+addrs[0] {
			return fmt.Errorf("m4 recorded as %+v, want a voter at http://%s", mem, addrs[0])
		}
		return m4.cluster.Ready(ctx)
	})
	if _, err := m4.EventLog().Append(ctx, mkEvent(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1})); err != nil {
		t.Fatalf("appending through the joined member: %v", err)
	}

	c := m2.cluster
	if err := c.RemoveMember(ctx, "nope"); !errors.Is(err, state.ErrUnknownMember) {
		t.Fatalf("removing an unknown member: %v, want ErrUnknownMember", err)
	}
	if err := c.RemoveMember(ctx, "m4"); err != nil {
		t.Fatal(err)
	}
	rack.kill(m4)
	testutil.WaitFor(t, 30*time.Second, func() error {
		for _, m := range rack.running() {
			if _, ok := m.Store().State().Members["m4"]; ok {
				return fmt.Errorf("%s still records m4", m.Name())
			}
		}
		ms, err := m2.Members(ctx)
		if err != nil {
			return err
		}
		if len(ms) != 3 {
			return fmt.Errorf("members = %v, want 3", names(ms))
		}
		return nil
	})
}

func names(ms []api.MemberInfo) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

func mkEvent(t *testing.T, typ events.Type, subject string, p events.Payload) events.Event {
	t.Helper()
	ev, err := events.New(events.Source("rack1", "test"), typ, subject, p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}
