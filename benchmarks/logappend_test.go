package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/racklet/rack/benchmarks/results"
	"github.com/racklet/rack/controlplane/etcdlog"
	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/natsserver"
	"github.com/racklet/rack/controlplane/raftlog"
	"github.com/racklet/rack/events"
)

// logCluster is one event-log backend under benchmark: three members on
// loopback, one eventlog.Log each, with numNodes nodes registered.
type logCluster struct {
	// logs holds one Log per member.
	logs []eventlog.Log
	// leader is where one client appends: the Raft leader's Log, or for
	// etcd the Log talking to etcd's leader.
	leader func() eventlog.Log
	close  func()
}

// BenchmarkLogAppend compares the event-log backends, each three members
// on loopback with fsync on, appending node.power.desired events straight
// through eventlog.Log.Append (no HTTP):
//
//   - backend=raft-nats: raftlog over controlplane/natstransport, each
//     member with its own embedded NATS server routed into one cluster
//     (controlplane/member, as the rack of the other benchmarks);
//   - backend=raft-tcp: raftlog over raft's NetworkTransport on TCP, with
//     the same FSM and bolt store; forwarded appends and joins travel over
//     one shared embedded NATS server;
//   - backend=etcd: controlplane/etcdlog on a three-member embedded etcd
//     cluster, one Log per member, each on its own member's endpoint.
//
// clients=1: one append at a time through the leader. clients=64: 64
// goroutines, each with one append in flight, spread over the three
// members (a follower's append is forwarded to the leader for Raft; for
// etcd each Log commits its own transactions). Each backend's cluster is
// started once and closed when its sub-benchmarks are done.
func BenchmarkLogAppend(b *testing.B) {
	for _, bc := range []struct {
		name  string
		start func(dir string) (*logCluster, error)
	}{
		{"raft-nats", startRaftNATSLogs},
		{"raft-tcp", startRaftTCPLogs},
		{"etcd", startEtcdLogs},
	} {
		b.Run("backend="+bc.name, func(b *testing.B) {
			measureBaselines(b)
			c, err := bc.start(b.TempDir())
			if err != nil {
				b.Fatalf("starting %s: %v", bc.name, err)
			}
			defer c.close()
			b.Run("clients=1", func(b *testing.B) {
				l := c.leader()
				if l == nil {
					b.Fatal("no leader")
				}
				appendLoad(b, []eventlog.Log{l}, 1)
			})
			b.Run(fmt.Sprintf("clients=%d", throughputClients), func(b *testing.B) {
				appendLoad(b, c.logs, throughputClients)
			})
		})
	}
}

// benchSource is the source of the benchmark's events.
var benchSource = events.Source("rack1", "bench")

// powerOnEvent asks for node n<i mod 64> on.
func powerOnEvent(i int) (events.Event, error) {
	return events.New(benchSource, events.NodePowerDesired, nodeName(i), &events.PowerDesiredData{State: events.PowerOn})
}

// appendLoad appends b.N events from the given number of goroutines,
// goroutine w on logs[w mod len(logs)], each with one append in flight,
// and reports latency, ratios and events/s.
func appendLoad(b *testing.B, logs []eventlog.Log, clients int) {
	b.Helper()
	measureBaselines(b)
	lat := make(latencies, b.N)
	via := make([]int, b.N) // which member's Log took append i
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	conflicts0 := etcdConflicts(logs)
	b.ResetTimer()
	start := time.Now()
	for w := range clients {
		l := logs[w%len(logs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				ev, err := powerOnEvent(i)
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
					t0 := time.Now()
					_, err = l.Append(ctx, ev)
					lat[i], via[i] = time.Since(t0), w%len(logs)
					cancel()
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("append %d on member %d: %w", i, w%len(logs), err) })
					next.Store(int64(b.N)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	reportLatency(b, lat)
	reportRatios(b, lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if testing.Verbose() && len(logs) > 1 {
		per := make([]latencies, len(logs))
		for i, d := range lat {
			per[via[i]] = append(per[via[i]], d)
		}
		for m, l := range per {
			b.Logf("member %d: %d appends, p50 %v, p99 %v, max %v", m, len(l), l.percentile(50), l.percentile(99), l.percentile(100))
		}
	}
	extra := []results.Metric{rate(b.N, elapsed, "events/s")}
	if n := etcdConflicts(logs); n >= 0 {
		b.ReportMetric(float64(n-conflicts0)/float64(b.N), "conflicts/event")
		extra = append(extra, results.Metric{Name: "conflicts", Value: float64(n-conflicts0) / float64(b.N), Unit: "/event"})
	}
	record(b, b.Name(), lat, extra...)
}

// etcdConflicts sums the etcd logs' failed compares (another member's
// transaction got in first); -1 for other backends.
func etcdConflicts(logs []eventlog.Log) int64 {
	n := int64(-1)
	for _, l := range logs {
		if el, ok := l.(*etcdlog.Log); ok {
			n = max(n, 0) + el.Stats().Conflicts
		}
	}
	return n
}

// startRaftNATSLogs starts a rack of three controlplane/member members
// (the rack the HTTP benchmarks use, its own instance) and benchmarks
// their logs.
func startRaftNATSLogs(string) (*logCluster, error) {
	r, err := startRack(3)
	if err != nil {
		return nil, err
	}
	c := &logCluster{close: r.close}
	for _, m := range r.members {
		c.logs = append(c.logs, m.Log())
	}
	c.leader = func() eventlog.Log {
		if m := r.leader(); m != nil {
			return m.Log()
		}
		return nil
	}
	return c, nil
}

// startRaftTCPLogs starts three raftlogs over raft's NetworkTransport on
// loopback TCP, with one embedded NATS server for what raftlog sends
// member to member outside Raft (forwarded appends, read index, joins),
// as controlplane/raftlog's tests do.
func startRaftTCPLogs(dir string) (*logCluster, error) {
	srv, err := natsserver.Start(natsserver.Config{Name: "bench", Rack: "rack1", Listen: "127.0.0.1:0", MaxPayload: natsserver.DefaultMaxPayload})
	if err != nil {
		return nil, err
	}
	var (
		rls   []*raftlog.Log
		conns []interface{ Close() }
		peers = &tcpPeers{addrs: map[raft.ServerAddress]string{}}
	)
	closeAll := func() {
		for i := len(rls) - 1; i >= 0; i-- {
			_ = rls[i].Close()
		}
		for _, nc := range conns {
			nc.Close()
		}
		srv.Shutdown()
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("m%d", i)
		tr, err := peers.transport(name)
		if err != nil {
			closeAll()
			return nil, err
		}
		nc, err := srv.Connect(name)
		if err != nil {
			_ = tr.Close()
			closeAll()
			return nil, err
		}
		conns = append(conns, nc)
		l, err := raftlog.Open(context.Background(), raftlog.Config{
			Name: name, Rack: "rack1", DataDir: filepath.Join(dir, name), Transport: tr, Conn: nc, Bootstrap: i == 1,
		})
		if err != nil {
			_ = tr.Close()
			closeAll()
			return nil, fmt.Errorf("opening %s: %w", name, err)
		}
		rls = append(rls, l)
	}
	leader := func() *raftlog.Log {
		for _, l := range rls {
			if l.IsLeader() {
				return l
			}
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitUntil(ctx, func() error { return raftConverged(ctx, leader(), rls) }); err != nil {
		closeAll()
		return nil, err
	}
	c := &logCluster{close: closeAll, leader: func() eventlog.Log {
		if l := leader(); l != nil {
			return l
		}
		return nil
	}}
	for _, l := range rls {
		c.logs = append(c.logs, l)
	}
	if err := registerNodes(ctx, leader(), c.logs); err != nil {
		closeAll()
		return nil, err
	}
	return c, nil
}

// raftConverged: one ready leader whose configuration holds every log,
// each ready and with every member in its state.
func raftConverged(ctx context.Context, leader *raftlog.Log, rls []*raftlog.Log) error {
	if leader == nil {
		return errors.New("no leader")
	}
	if got := len(leader.Raft().GetConfiguration().Configuration().Servers); got != len(rls) {
		return fmt.Errorf("%d servers in the configuration, want %d", got, len(rls))
	}
	for _, l := range rls {
		if err := l.Ready(ctx); err != nil {
			return fmt.Errorf("%s not ready: %w", l.Name(), err)
		}
		if got := len(l.Store().State().Members); got != len(rls) {
			return fmt.Errorf("%s has %d members in its state, want %d", l.Name(), got, len(rls))
		}
	}
	return nil
}

// tcpPeers gives each member a raft.NetworkTransport on a loopback TCP
// listener with a random port. raftlog uses a member's name as its Raft
// address (it bootstraps and joins with it), so the stream layer
// advertises the name and dials by looking the name's port up here: on
// the wire it is what raft.NewTCPTransport builds (NetworkTransport over
// TCP, the same pool size and timeout).
type tcpPeers struct {
	mu    sync.Mutex
	addrs map[raft.ServerAddress]string // name → 127.0.0.1:port
}

func (p *tcpPeers) transport(name string) (*raft.NetworkTransport, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for raft: %w", err)
	}
	p.mu.Lock()
	p.addrs[raft.ServerAddress(name)] = ln.Addr().String()
	p.mu.Unlock()
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &namedTCPStream{Listener: ln, name: name, peers: p},
		MaxPool: 3, Timeout: 10 * time.Second,
		Logger: hclog.NewNullLogger(),
	}), nil
}

// namedTCPStream is a raft.StreamLayer on TCP whose address is the
// member's name.
type namedTCPStream struct {
	net.Listener
	name  string
	peers *tcpPeers
}

var _ raft.StreamLayer = (*namedTCPStream)(nil)

func (s *namedTCPStream) Addr() net.Addr { return nameAddr(s.name) }

func (s *namedTCPStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	s.peers.mu.Lock()
	hostport, ok := s.peers.addrs[address]
	s.peers.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("dialling %s: unknown member", address)
	}
	return net.DialTimeout("tcp", hostport, timeout)
}

// nameAddr is a member's name as a net.Addr.
type nameAddr string

func (a nameAddr) Network() string { return "tcp" }
func (a nameAddr) String() string  { return string(a) }

// startEtcdLogs starts a three-member embedded etcd cluster (fsync on)
// and opens one etcdlog.Log per member, each on that member's endpoint.
func startEtcdLogs(dir string) (*logCluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ec, err := etcdlog.StartCluster(ctx, etcdlog.ClusterConfig{Dir: dir, Members: 3})
	if err != nil {
		return nil, err
	}
	var els []*etcdlog.Log
	closeAll := func() {
		for _, l := range els {
			_ = l.Close()
		}
		ec.Close()
	}
	for i, m := range ec.Members() {
		l, err := etcdlog.Open(ctx, etcdlog.Config{Endpoints: []string{m.ClientURL}, Rack: "rack1", Member: fmt.Sprintf("m%d", i+1)})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("opening the log on %s: %w", m.Name, err)
		}
		els = append(els, l)
	}
	c := &logCluster{close: closeAll}
	for _, l := range els {
		c.logs = append(c.logs, l)
	}
	c.leader = func() eventlog.Log {
		for i, m := range ec.Members() {
			if m.IsLeader() {
				return els[i]
			}
		}
		return els[0]
	}
	if err := registerNodes(ctx, els[0], c.logs); err != nil {
		closeAll()
		return nil, err
	}
	return c, nil
}

// registerNodes registers the nodes the appends address, in one batch
// through l, then waits until every log has applied it.
func registerNodes(ctx context.Context, l eventlog.Log, all []eventlog.Log) error {
	if l == nil {
		return errors.New("no leader")
	}
	evs := make([]events.Event, 0, numNodes)
	for i := range numNodes {
		ev, err := events.New(benchSource, events.NodeRegistered, nodeName(i), &events.NodeRegisteredData{Slot: i + 1})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	if _, err := l.Append(ctx, evs...); err != nil {
		return fmt.Errorf("registering the nodes: %w", err)
	}
	for _, o := range all {
		if err := o.Sync(ctx); err != nil {
			return fmt.Errorf("syncing: %w", err)
		}
	}
	return nil
}

// waitUntil calls f every 50 ms until it succeeds or ctx ends.
func waitUntil(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not converged: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
