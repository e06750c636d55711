package natstransport

import (
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/internal/testutil"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster starts n embedded nats-servers on loopback, joined by routes,
// and waits until every server has a route to every other.
func startCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	var servers []*server.Server
	var seed []*url.URL
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("s%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			NoLog:      true,
			NoSigs:     true,
		}
		if n > 1 {
			opts.Cluster = server.ClusterOpts{Name: "racklet-test", Host: "127.0.0.1", Port: -1}
			opts.Routes = seed
		}
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("creating nats-server: %v", err)
		}
		go srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-server %d not ready", i)
		}
		t.Cleanup(func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		})
		if i == 0 && n > 1 {
			seed = server.RoutesFromStr("nats://" + srv.ClusterAddr().String())
		}
		servers = append(servers, srv)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		for i, s := range servers {
			if got := s.NumRemotes(); got < n-1 {
				return fmt.Errorf("server %d has %d remotes, want %d", i, got, n-1)
			}
		}
		return nil
	})
	return servers
}

func connect(t testing.TB, srv *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("connecting to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newNATSTransport creates a transport for addr on a fresh connection to srv.
func newNATSTransport(t testing.TB, srv *server.Server, addr raft.ServerAddress, mod func(*Config)) *Transport {
	t.Helper()
	cfg := Config{
		Conn:    connect(t, srv),
		Rack:    "rack1",
		Addr:    addr,
		Timeout: 2 * time.Second,
		Logger:  quietLogger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("creating transport %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// waitInterest waits until every server sees the subscriptions of the
// given transports, so requests routed through any server find them.
func waitInterest(t testing.TB, servers []*server.Server, trs ...*Transport) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error {
		for _, s := range servers {
			for _, tr := range trs {
				for _, rpc := range []string{rpcHeartbeat, rpcAppendEntries, rpcRequestVote, rpcPreVote, rpcTimeoutNow, rpcSnapshot} {
					subj := tr.subject(tr.addr, rpc)
					if !s.GlobalAccount().SubscriptionInterest(subj) {
						return fmt.Errorf("%s has no interest in %s", s.Name(), subj)
					}
				}
			}
		}
		return nil
	})
}
