package natstransport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// pairFactory returns two connected transports: each can reach the other at
// its LocalAddr. The factory registers their cleanup.
type pairFactory func(t *testing.T) (a, b raft.Transport)

// serveRPCs answers the RPCs arriving at tr with handle until the test ends.
func serveRPCs(t *testing.T, tr raft.Transport, handle func(rpc raft.RPC)) {
	t.Helper()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-tr.Consumer():
				handle(rpc)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// answer is a well-behaved raft: it accepts everything.
func answer(rpc raft.RPC) {
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + uint64(len(req.Entries)), Success: true}, nil)
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{Term: req.Term, Granted: true}, nil)
	case *raft.RequestPreVoteRequest:
		rpc.Respond(&raft.RequestPreVoteResponse{Term: req.Term, Granted: true}, nil)
	case *raft.TimeoutNowRequest:
		rpc.Respond(&raft.TimeoutNowResponse{RPCHeader: raft.RPCHeader{ID: []byte("answered")}}, nil)
	case *raft.InstallSnapshotRequest:
		_, err := io.Copy(io.Discard, rpc.Reader)
		rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: err == nil}, err)
	default:
		rpc.Respond(nil, fmt.Errorf("unexpected command %T", rpc.Command))
	}
}

func header(addr raft.ServerAddress) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(addr), Addr: []byte(addr)}
}

func snapshotData(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	return buf
}

// testTransportConformance is the transport conformance suite. Every
// raft.Transport implementation runs it.
func testTransportConformance(t *testing.T, newPair pairFactory) {
	t.Run("AppendEntries", func(t *testing.T) {
		a, b := newPair(t)
		at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		req := &raft.AppendEntriesRequest{
			RPCHeader: header(a.LocalAddr()), Term: 7, Leader: []byte(a.LocalAddr()),
			PrevLogEntry: 10, PrevLogTerm: 6, LeaderCommitIndex: 9,
			Entries: []*raft.Log{
				{Index: 11, Term: 7, Type: raft.LogCommand, Data: []byte("power off n3"), AppendedAt: at},
				{Index: 12, Term: 7, Type: raft.LogNoop},
				{Index: 13, Term: 7, Type: raft.LogCommand, Data: []byte("fan 40%"), Extensions: []byte("ext")},
			},
		}
		got := make(chan *raft.AppendEntriesRequest, 1)
		serveRPCs(t, b, func(rpc raft.RPC) {
			if r, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				got <- r
			}
			answer(rpc)
		})
		var resp raft.AppendEntriesResponse
		if err := a.AppendEntries("b", b.LocalAddr(), req, &resp); err != nil {
			t.Fatalf("AppendEntries: %v", err)
		}
		if !resp.Success || resp.Term != 7 || resp.LastLog != 13 {
			t.Fatalf("response = %+v", resp)
		}
		r := <-got
		if r.Term != 7 || r.PrevLogEntry != 10 || r.PrevLogTerm != 6 || r.LeaderCommitIndex != 9 ||
			string(r.RPCHeader.Addr) != string(a.LocalAddr()) || len(r.Entries) != 3 {
			t.Fatalf("request arrived as %+v", r)
		}
		for i, e := range r.Entries {
			w := req.Entries[i]
			if e.Index != w.Index || e.Term != w.Term || e.Type != w.Type || !bytes.Equal(e.Data, w.Data) ||
				!bytes.Equal(e.Extensions, w.Extensions) || !e.AppendedAt.Equal(w.AppendedAt) {
				t.Errorf("entry %d = %+v, want %+v", i, e, w)
			}
		}
	})

	t.Run("Heartbeat", func(t *testing.T) {
		a, b := newPair(t)
		var fast atomic.Int32
		b.SetHeartbeatHandler(func(rpc raft.RPC) {
			fast.Add(1)
			answer(rpc)
		})
		serveRPCs(t, b, answer)
		req := &raft.AppendEntriesRequest{RPCHeader: header(a.LocalAddr()), Term: 3, Leader: []byte(a.LocalAddr())}
		for range 3 {
			var resp raft.AppendEntriesResponse
			if err := a.AppendEntries("b", b.LocalAddr(), req, &resp); err != nil {
				t.Fatalf("heartbeat: %v", err)
			}
			if !resp.Success || resp.Term != 3 {
				t.Fatalf("response = %+v", resp)
			}
		}
		t.Logf("heartbeats via fast path: %d of 3", fast.Load())
	})

	t.Run("Votes", func(t *testing.T) {
		a, b := newPair(t)
		serveRPCs(t, b, answer)
		tests := []struct {
			name string
			call func() (term uint64, ok bool, err error)
		}{
			{"RequestVote", func() (uint64, bool, error) {
				var resp raft.RequestVoteResponse
				err := a.RequestVote("b", b.LocalAddr(), &raft.RequestVoteRequest{RPCHeader: header(a.LocalAddr()), Term: 4, LastLogIndex: 9, LastLogTerm: 3}, &resp)
				return resp.Term, resp.Granted, err
			}},
			{"RequestPreVote", func() (uint64, bool, error) {
				var resp raft.RequestPreVoteResponse
				pv, ok := a.(raft.WithPreVote)
				if !ok {
					return 0, false, errors.New("transport lacks WithPreVote")
				}
				err := pv.RequestPreVote("b", b.LocalAddr(), &raft.RequestPreVoteRequest{RPCHeader: header(a.LocalAddr()), Term: 4, LastLogIndex: 9, LastLogTerm: 3}, &resp)
				return resp.Term, resp.Granted, err
			}},
			{"TimeoutNow", func() (uint64, bool, error) {
				var resp raft.TimeoutNowResponse
				err := a.TimeoutNow("b", b.LocalAddr(), &raft.TimeoutNowRequest{RPCHeader: header(a.LocalAddr())}, &resp)
				return 4, string(resp.ID) == "answered", err
			}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				term, ok, err := tc.call()
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if term != 4 || !ok {
					t.Fatalf("%s: term %d ok %v", tc.name, term, ok)
				}
			})
		}
	})

	t.Run("InstallSnapshot", func(t *testing.T) {
		tests := []struct {
			name string
			size int
		}{
			{"empty", 0},
			{"small", 1000},
			{"big", 3<<20 + 12345},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				a, b := newPair(t)
				data := snapshotData(uint64(i+1), tc.size)
				serveRPCs(t, b, func(rpc raft.RPC) {
					req, ok := rpc.Command.(*raft.InstallSnapshotRequest)
					if !ok {
						answer(rpc)
						return
					}
					got, err := io.ReadAll(rpc.Reader)
					switch {
					case err != nil:
					case int64(len(got)) != req.Size:
						err = fmt.Errorf("got %d bytes, want %d", len(got), req.Size)
					case !bytes.Equal(got, data):
						err = errors.New("snapshot data differs")
					}
					rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: err == nil}, err)
				})
				req := &raft.InstallSnapshotRequest{
					RPCHeader: header(a.LocalAddr()), SnapshotVersion: raft.SnapshotVersionMax, Term: 9,
					Leader: []byte(a.LocalAddr()), LastLogIndex: 100, LastLogTerm: 8,
					Configuration: []byte("cfg"), ConfigurationIndex: 3, Size: int64(len(data)),
				}
				var resp raft.InstallSnapshotResponse
				if err := a.InstallSnapshot("b", b.LocalAddr(), req, &resp, bytes.NewReader(data)); err != nil {
					t.Fatalf("InstallSnapshot: %v", err)
				}
				if !resp.Success || resp.Term != 9 {
					t.Fatalf("response = %+v", resp)
				}
			})
		}
	})

	t.Run("PipelineOrder", func(t *testing.T) {
		a, b := newPair(t)
		const n = 300
		var mu sync.Mutex
		var seen []uint64
		serveRPCs(t, b, func(rpc raft.RPC) {
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				mu.Lock()
				seen = append(seen, req.PrevLogEntry)
				mu.Unlock()
			}
			answer(rpc)
		})
		p, err := a.AppendEntriesPipeline("b", b.LocalAddr())
		if errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
			t.Skip("pipeline not supported")
		}
		if err != nil {
			t.Fatalf("AppendEntriesPipeline: %v", err)
		}
		defer p.Close()
		sendErr := make(chan error, 1)
		go func() {
			for i := range n {
				req := &raft.AppendEntriesRequest{
					RPCHeader: header(a.LocalAddr()), Term: 2, PrevLogEntry: uint64(i + 1), PrevLogTerm: 2,
					LeaderCommitIndex: uint64(i), Entries: []*raft.Log{{Index: uint64(i + 2), Term: 2, Data: []byte{byte(i)}}},
				}
				if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
					sendErr <- fmt.Errorf("pipelining request %d: %w", i, err)
					return
				}
			}
			sendErr <- nil
		}()
		for i := range n {
			var f raft.AppendFuture
			select {
			case f = <-p.Consumer():
			case err := <-sendErr:
				if err != nil {
					t.Fatal(err)
				}
				f = <-p.Consumer()
			}
			if err := f.Error(); err != nil {
				t.Fatalf("future %d: %v", i, err)
			}
			want := uint64(i + 1)
			if got := f.Request().PrevLogEntry; got != want {
				t.Fatalf("future %d is for request %d", i, got)
			}
			if got := f.Response().LastLog; got != want+1 || !f.Response().Success {
				t.Fatalf("future %d has response %+v", i, f.Response())
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for i, v := range seen {
			if v != uint64(i+1) {
				t.Fatalf("receiver saw request %d at position %d", v, i)
			}
		}
	})

	t.Run("RemoteError", func(t *testing.T) {
		a, b := newPair(t)
		serveRPCs(t, b, func(rpc raft.RPC) { rpc.Respond(nil, errors.New("disk on fire")) })
		var resp raft.RequestVoteResponse
		err := a.RequestVote("b", b.LocalAddr(), &raft.RequestVoteRequest{RPCHeader: header(a.LocalAddr()), Term: 1}, &resp)
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("err = %v, want the remote error", err)
		}
		var aresp raft.AppendEntriesResponse
		err = a.AppendEntries("b", b.LocalAddr(), &raft.AppendEntriesRequest{RPCHeader: header(a.LocalAddr()), Term: 1, PrevLogEntry: 1}, &aresp)
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("err = %v, want the remote error", err)
		}
	})

	t.Run("UnknownAddress", func(t *testing.T) {
		a, _ := newPair(t)
		var resp raft.RequestVoteResponse
		if err := a.RequestVote("x", "nobody-home", &raft.RequestVoteRequest{RPCHeader: header(a.LocalAddr()), Term: 1}, &resp); err == nil {
			t.Fatal("RequestVote to an unknown address succeeded")
		}
		var aresp raft.AppendEntriesResponse
		if err := a.AppendEntries("x", "nobody-home", &raft.AppendEntriesRequest{RPCHeader: header(a.LocalAddr()), Term: 1, PrevLogEntry: 1}, &aresp); err == nil {
			t.Fatal("AppendEntries to an unknown address succeeded")
		}
	})

	t.Run("Close", func(t *testing.T) {
		a, b := newPair(t)
		serveRPCs(t, b, answer)
		var resp raft.RequestVoteResponse
		if err := a.RequestVote("b", b.LocalAddr(), &raft.RequestVoteRequest{RPCHeader: header(a.LocalAddr()), Term: 1}, &resp); err != nil {
			t.Fatalf("RequestVote before close: %v", err)
		}
		closer, ok := a.(raft.WithClose)
		if !ok {
			t.Fatal("transport lacks WithClose")
		}
		if err := closer.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := closer.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := a.RequestVote("b", b.LocalAddr(), &raft.RequestVoteRequest{RPCHeader: header(a.LocalAddr()), Term: 1}, &resp); err == nil {
			t.Fatal("RequestVote after close succeeded")
		}
	})
}

func TestInmemTransportConformance(t *testing.T) {
	var n atomic.Int32
	testTransportConformance(t, func(t *testing.T) (raft.Transport, raft.Transport) {
		i := n.Add(1)
		aAddr, a := raft.NewInmemTransportWithTimeout(raft.ServerAddress(fmt.Sprintf("a%d", i)), 2*time.Second)
		bAddr, b := raft.NewInmemTransportWithTimeout(raft.ServerAddress(fmt.Sprintf("b%d", i)), 2*time.Second)
		a.Connect(bAddr, b)
		b.Connect(aAddr, a)
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		return a, b
	})
}

func TestNATSTransportConformance(t *testing.T) {
	tests := []struct {
		name    string
		servers int
	}{
		{"OneServer", 1},
		{"ThreeServerCluster", 3}, // a and b connect to different servers
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			servers := startCluster(t, tc.servers)
			var n atomic.Int32
			testTransportConformance(t, func(t *testing.T) (raft.Transport, raft.Transport) {
				i := n.Add(1)
				a := newNATSTransport(t, servers[0], raft.ServerAddress(fmt.Sprintf("a%d", i)), nil)
				b := newNATSTransport(t, servers[len(servers)-1], raft.ServerAddress(fmt.Sprintf("b%d", i)), nil)
				waitInterest(t, servers, a, b)
				return a, b
			})
		})
	}
}
