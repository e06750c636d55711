package natstransport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/internal/testutil"
)

func TestNewValidatesConfig(t *testing.T) {
	servers := startCluster(t, 1)
	nc := connect(t, servers[0])
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no connection", Config{Rack: "rack1", Addr: "m1"}},
		{"empty rack", Config{Conn: nc, Addr: "m1"}},
		{"rack with dot", Config{Conn: nc, Rack: "rack.1", Addr: "m1"}},
		{"empty addr", Config{Conn: nc, Rack: "rack1"}},
		{"addr with wildcard", Config{Conn: nc, Rack: "rack1", Addr: "m*"}},
		{"addr too long", Config{Conn: nc, Rack: "rack1", Addr: raft.ServerAddress(strings.Repeat("m", 64))}},
		{"addr upper case", Config{Conn: nc, Rack: "rack1", Addr: "M1"}},
		{"chunk above max payload", Config{Conn: nc, Rack: "rack1", Addr: "m1", ChunkSize: int(nc.MaxPayload())}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := New(tc.cfg)
			if err == nil {
				_ = tr.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestInvalidTargetAddress(t *testing.T) {
	servers := startCluster(t, 1)
	a := newNATSTransport(t, servers[0], "m1", nil)
	var resp raft.RequestVoteResponse
	for _, addr := range []raft.ServerAddress{"", "m2.>", "10.0.0.1:8300"} {
		if err := a.RequestVote("x", addr, &raft.RequestVoteRequest{Term: 1}, &resp); !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("RequestVote(%q) err = %v, want ErrInvalidAddress", addr, err)
		}
	}
}

func TestHeartbeatFastPathAvoidsBlockedConsumer(t *testing.T) {
	servers := startCluster(t, 1)
	a := newNATSTransport(t, servers[0], "m1", nil)
	b := newNATSTransport(t, servers[0], "m2", func(c *Config) { c.Timeout = 200 * time.Millisecond })
	b.SetHeartbeatHandler(answer)
	// Nobody reads b.Consumer(): an AppendEntries with entries is stuck
	// (like a slow disk write), heartbeats and votes must not be.
	stuck := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		stuck <- a.AppendEntries("m2", "m2", &raft.AppendEntriesRequest{RPCHeader: header("m1"), Term: 2, PrevLogEntry: 5, Entries: []*raft.Log{{Index: 6, Term: 2}}}, &resp)
	}()
	var resp raft.AppendEntriesResponse
	if err := a.AppendEntries("m2", "m2", &raft.AppendEntriesRequest{RPCHeader: header("m1"), Term: 2, Leader: []byte("m1")}, &resp); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if !resp.Success {
		t.Fatalf("heartbeat response %+v", resp)
	}
	// It fails by the sender's timeout or the receiver's busy reply.
	if err := <-stuck; err == nil {
		t.Fatal("AppendEntries succeeded without a consumer")
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	servers := startCluster(t, 1)
	a := newNATSTransport(t, servers[0], "m1", func(c *Config) { c.Timeout = time.Minute })
	newNATSTransport(t, servers[0], "m2", nil) // never answers: nobody reads its consumer
	errc := make(chan error, 1)
	go func() {
		var resp raft.RequestVoteResponse
		errc <- a.RequestVote("m2", "m2", &raft.RequestVoteRequest{RPCHeader: header("m1"), Term: 1}, &resp)
	}()
	// Close fails the call whether it is already waiting or not yet sent.
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending call err = %v, want ErrClosed", err)
	}
	if _, err := a.AppendEntriesPipeline("m2", "m2"); !errors.Is(err, ErrClosed) {
		t.Fatalf("AppendEntriesPipeline after Close: %v, want ErrClosed", err)
	}
}

// TestSnapshotSenderDies checks that a receiver aborts a transfer whose
// sender disappears mid-way: raft's reader fails and nothing leaks.
func TestSnapshotSenderDies(t *testing.T) {
	servers := startCluster(t, 1)
	b := newNATSTransport(t, servers[0], "m2", func(c *Config) { c.SnapshotIdleTimeout = 300 * time.Millisecond })
	readErr := make(chan error, 1)
	serveRPCs(t, b, func(rpc raft.RPC) {
		_, err := io.ReadAll(rpc.Reader)
		readErr <- err
		rpc.Respond(&raft.InstallSnapshotResponse{}, err)
	})
	// A hand-made sender that sends begin and one chunk, then dies.
	nc := connect(t, servers[0])
	subj := b.subject("m2", rpcSnapshot)
	head, err := encode(&raft.InstallSnapshotRequest{RPCHeader: header("m1"), Term: 3, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	begin := snapshotMsg(subj, "dead-sender", opBegin)
	begin.Data = head
	if reply, err := nc.RequestMsg(begin, 2*time.Second); err != nil || decodeReply(reply, nil) != nil {
		t.Fatalf("begin: %v %v", err, reply)
	}
	chunk := snapshotMsg(subj, "dead-sender", opChunk)
	chunk.Header.Set(hdrChunk, "0")
	chunk.Data = []byte("partial")
	if reply, err := nc.RequestMsg(chunk, 2*time.Second); err != nil || decodeReply(reply, nil) != nil {
		t.Fatalf("chunk: %v %v", err, reply)
	}
	if err := <-readErr; !errors.Is(err, ErrSnapshotAborted) {
		t.Fatalf("raft's read err = %v, want ErrSnapshotAborted", err)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if n := len(b.transfers); n != 0 {
			return fmt.Errorf("%d transfers left", n)
		}
		return nil
	})
	// A late chunk of the dead transfer is refused.
	chunk.Header.Set(hdrChunk, "1")
	reply, err := nc.RequestMsg(chunk, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeReply(reply, nil); err == nil || !strings.Contains(err.Error(), "unknown snapshot transfer") {
		t.Fatalf("late chunk err = %v", err)
	}
}

// TestConcurrentSnapshotsDoNotMix sends two snapshots to one receiver at once.
func TestConcurrentSnapshotsDoNotMix(t *testing.T) {
	servers := startCluster(t, 3)
	small := func(c *Config) { c.ChunkSize = 64 * 1024 }
	a := newNATSTransport(t, servers[0], "m1", small)
	c := newNATSTransport(t, servers[1], "m3", small)
	b := newNATSTransport(t, servers[2], "m2", small)
	waitInterest(t, servers, a, b, c)
	data := map[uint64][]byte{1: snapshotData(11, 1<<20+3), 2: snapshotData(22, 1<<20+5)}
	var wg sync.WaitGroup
	defer wg.Wait()
	serveRPCs(t, b, func(rpc raft.RPC) {
		req := rpc.Command.(*raft.InstallSnapshotRequest)
		wg.Add(1)
		go func() { // raft would take one at a time; this consumer reads both at once
			defer wg.Done()
			got, err := io.ReadAll(rpc.Reader)
			if err == nil && !bytes.Equal(got, data[req.LastLogIndex]) {
				err = fmt.Errorf("snapshot %d: data differs", req.LastLogIndex)
			}
			rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: err == nil}, err)
		}()
	})
	errc := make(chan error, 2)
	for i, from := range []*Transport{a, c} {
		idx := uint64(i + 1)
		go func() {
			req := &raft.InstallSnapshotRequest{RPCHeader: header(from.addr), Term: 1, LastLogIndex: idx, Size: int64(len(data[idx]))}
			var resp raft.InstallSnapshotResponse
			err := from.InstallSnapshot("m2", "m2", req, &resp, bytes.NewReader(data[idx]))
			if err == nil && !resp.Success {
				err = errors.New("not successful")
			}
			errc <- err
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatalf("InstallSnapshot: %v", err)
		}
	}
}

// TestPipelineBreaksOnOutOfOrderReply uses a fake peer that answers with
// the wrong sequence number: the pipeline must fail, not mismatch.
func TestPipelineBreaksOnOutOfOrderReply(t *testing.T) {
	servers := startCluster(t, 1)
	a := newNATSTransport(t, servers[0], "m1", nil)
	nc := connect(t, servers[0])
	sub, err := nc.Subscribe(a.subject("fake", rpcAppendEntries), func(m *nats.Msg) {
		resp, _ := encode(&raft.AppendEntriesResponse{Success: true})
		out := &nats.Msg{Header: nats.Header{}, Data: resp}
		out.Header.Set(hdrSeq, "999")
		_ = m.RespondMsg(out)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target raft.ServerAddress
	}{
		{"out of order", "fake"},
		{"no responders", "nobody"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.AppendEntriesPipeline("x", tc.target)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			f, err := p.AppendEntries(&raft.AppendEntriesRequest{RPCHeader: header("m1"), Term: 1, PrevLogEntry: 1}, new(raft.AppendEntriesResponse))
			if err != nil {
				t.Fatal(err)
			}
			got := <-p.Consumer()
			if got != f {
				t.Fatal("consumer returned another future")
			}
			if err := got.Error(); err == nil || got.Response().Success {
				t.Fatalf("future err = %v, response %+v; want failure", err, got.Response())
			}
			testutil.WaitFor(t, 5*time.Second, func() error {
				_, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 2}, new(raft.AppendEntriesResponse))
				if !errors.Is(err, ErrPipelineBroken) {
					return fmt.Errorf("AppendEntries on broken pipeline: %v", err)
				}
				return nil
			})
		})
	}
}
