package natstransport

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkAppendEntries measures synchronous AppendEntries round trips with
// one 128-byte entry, in memory and over NATS (one server and across routes).
func BenchmarkAppendEntries(b *testing.B) {
	run := func(b *testing.B, a, peer raft.Transport) {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case rpc := <-peer.Consumer():
					answer(rpc)
				case <-stop:
					return
				}
			}
		}()
		req := &raft.AppendEntriesRequest{
			RPCHeader: header(a.LocalAddr()), Term: 1, PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 1,
			Entries: []*raft.Log{{Index: 2, Term: 1, Type: raft.LogCommand, Data: make([]byte, 128)}},
		}
		var resp raft.AppendEntriesResponse
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := a.AppendEntries("peer", peer.LocalAddr(), req, &resp); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("inmem", func(b *testing.B) {
		aAddr, a := raft.NewInmemTransportWithTimeout("a", 5*time.Second)
		bAddr, peer := raft.NewInmemTransportWithTimeout("b", 5*time.Second)
		a.Connect(bAddr, peer)
		peer.Connect(aAddr, a)
		defer a.Close()
		defer peer.Close()
		run(b, a, peer)
	})
	b.Run("nats-one-server", func(b *testing.B) {
		servers := startCluster(b, 1)
		a := newNATSTransport(b, servers[0], "a", nil)
		peer := newNATSTransport(b, servers[0], "b", nil)
		run(b, a, peer)
	})
	b.Run("nats-across-routes", func(b *testing.B) {
		servers := startCluster(b, 2)
		a := newNATSTransport(b, servers[0], "a", nil)
		peer := newNATSTransport(b, servers[1], "b", nil)
		waitInterest(b, servers, a, peer)
		run(b, a, peer)
	})
}
