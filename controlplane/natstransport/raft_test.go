package natstransport

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/racklet/rack/internal/testutil"
)

// recordFSM records every applied command, in order. A command applied
// again is ignored: the test retries an Apply whose outcome a leadership
// change left unknown, so commands must be idempotent (as the rack's log
// makes its batches, by event id). Every replica decides alike.
type recordFSM struct {
	mu       sync.Mutex
	applied  [][]byte
	restores int
	restored int64 // size of the last restored snapshot
}

func (f *recordFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.applied {
		if bytes.Equal(a, l.Data) {
			return len(f.applied)
		}
	}
	f.applied = append(f.applied, bytes.Clone(l.Data))
	return len(f.applied)
}

func (f *recordFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &recordSnapshot{applied: append([][]byte(nil), f.applied...)}, nil
}

func (f *recordFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var applied [][]byte
	var n int64
	for {
		var size uint32
		if err := binary.Read(rc, binary.BigEndian, &size); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("reading entry size: %w", err)
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(rc, buf); err != nil {
			return fmt.Errorf("reading entry: %w", err)
		}
		applied = append(applied, buf)
		n += 4 + int64(size)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = applied
	f.restores++
	f.restored = n
	return nil
}

// state returns the number of applied commands and a digest of them.
func (f *recordFSM) state() (int, [32]byte, int, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := sha256.New()
	for _, d := range f.applied {
		h.Write(d)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return len(f.applied), sum, f.restores, f.restored
}

type recordSnapshot struct{ applied [][]byte }

func (s *recordSnapshot) Persist(sink raft.SnapshotSink) error {
	for _, d := range s.applied {
		if err := binary.Write(sink, binary.BigEndian, uint32(len(d))); err != nil {
			_ = sink.Cancel()
			return err
		}
		if _, err := sink.Write(d); err != nil {
			_ = sink.Cancel()
			return err
		}
	}
	return sink.Close()
}

func (s *recordSnapshot) Release() {}

type raftNode struct {
	id    raft.ServerID
	srv   *server.Server
	raft  *raft.Raft
	fsm   *recordFSM
	trans *Transport
}

func startRaftNode(t *testing.T, srv *server.Server, id string, servers []*server.Server, peers []raft.Server, bootstrap bool) *raftNode {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id)
	conf.HeartbeatTimeout = 300 * time.Millisecond
	conf.ElectionTimeout = 300 * time.Millisecond
	conf.LeaderLeaseTimeout = 200 * time.Millisecond
	conf.CommitTimeout = 10 * time.Millisecond
	conf.MaxAppendEntries = 16 // 16 × 24 KiB entries stay below the 1 MiB max payload
	conf.SnapshotThreshold = 50
	conf.SnapshotInterval = 100 * time.Millisecond
	conf.TrailingLogs = 10
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: id, Output: io.Discard})

	tr := newNATSTransport(t, srv, raft.ServerAddress(id), nil)
	waitInterest(t, servers, tr)
	fsm := &recordFSM{}
	store := raft.NewInmemStore()
	// A file snapshot store, not raft's in-memory one: InmemSnapshotStore
	// makes a new snapshot the latest while it is still being written, so
	// an Open during an install reads a buffer being written (a data race
	// the race detector reports; CI saw it).
	snaps, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("snapshot store: %v", err)
	}
	r, err := raft.NewRaft(conf, fsm, store, store, snaps, tr)
	if err != nil {
		t.Fatalf("starting raft %s: %v", id, err)
	}
	n := &raftNode{id: conf.LocalID, srv: srv, raft: r, fsm: fsm, trans: tr}
	t.Cleanup(n.stop)
	if bootstrap {
		if err := r.BootstrapCluster(raft.Configuration{Servers: peers}).Error(); err != nil {
			t.Fatalf("bootstrapping: %v", err)
		}
	}
	return n
}

func (n *raftNode) stop() {
	_ = n.raft.Shutdown().Error() // also closes the transport
}

func leaderOf(nodes []*raftNode) (*raftNode, error) {
	for _, n := range nodes {
		if n != nil && n.raft.State() == raft.Leader {
			return n, nil
		}
	}
	return nil, errors.New("no leader")
}

// TestRaftClusterOverNATS runs a 3-node Raft cluster over the transport on a
// 3-server NATS cluster, then lets a node that lost its state catch up by
// InstallSnapshot.
func TestRaftClusterOverNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	servers := startCluster(t, 3)
	var peers []raft.Server
	for i := range 3 {
		id := fmt.Sprintf("m%d", i+1)
		peers = append(peers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id), Suffrage: raft.Voter})
	}
	nodes := make([]*raftNode, 3)
	for i := range 3 {
		nodes[i] = startRaftNode(t, servers[i], string(peers[i].ID), servers, peers, i == 0)
	}

	var leader *raftNode
	testutil.WaitFor(t, 20*time.Second, func() (err error) {
		leader, err = leaderOf(nodes)
		return err
	})

	const entrySize = 24 * 1024
	apply := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			data := snapshotData(uint64(i), entrySize)
			var err error
			testutil.WaitFor(t, 20*time.Second, func() error {
				// Leadership may move; retry on whoever leads now.
				if leader, err = leaderOf(nodes); err != nil {
					return err
				}
				return leader.raft.Apply(data, 5*time.Second).Error()
			})
		}
	}
	converged := func(want int, nodes []*raftNode) func() error {
		return func() error {
			var first [32]byte
			for i, n := range nodes {
				count, sum, _, _ := n.fsm.state()
				if count != want {
					return fmt.Errorf("%s applied %d, want %d", n.id, count, want)
				}
				if i == 0 {
					first = sum
				} else if sum != first {
					return fmt.Errorf("%s applied different data", n.id)
				}
			}
			return nil
		}
	}

	apply(0, 200)
	testutil.WaitFor(t, 30*time.Second, converged(200, nodes))

	// Stop a follower, write more, compact, and bring it back empty.
	lagging := 0
	for i, n := range nodes {
		if n != leader {
			lagging = i
			break
		}
	}
	nodes[lagging].stop()
	live := []*raftNode{}
	for i, n := range nodes {
		if i != lagging {
			live = append(live, n)
		}
	}
	apply(200, 220)
	testutil.WaitFor(t, 30*time.Second, converged(220, live))
	testutil.WaitFor(t, 20*time.Second, func() error {
		l, err := leaderOf(live)
		if err != nil {
			return err
		}
		// Make sure the log the lagging node needs is gone.
		if err := l.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return err
		}
		return nil
	})

	nodes[lagging] = startRaftNode(t, servers[lagging], string(peers[lagging].ID), servers, peers, false)
	testutil.WaitFor(t, 60*time.Second, converged(220, nodes))
	_, _, restores, size := nodes[lagging].fsm.state()
	if restores == 0 {
		t.Fatal("lagging node caught up without a snapshot")
	}
	if size < 4<<20 {
		t.Fatalf("restored snapshot is %d bytes, want at least 4 MiB", size)
	}
	t.Logf("lagging node %s restored a %d byte snapshot", nodes[lagging].id, size)
}
