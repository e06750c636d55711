package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/member"
)

// benchRack is a control plane of three in-process members on loopback, as
// in controlplane/member's cluster tests: each with its own embedded NATS
// server (routed into one cluster), Raft over NATS, bolt files that are
// fsync'd, and the HTTP API. One rack serves every benchmark of a run: it
// is started by the first benchmark that needs it and stopped by TestMain.
type benchRack struct {
	dir     string
	members []*member.Member
}

var (
	rackOnce sync.Once
	rack     *benchRack
	rackErr  error
)

// numNodes is how many nodes the rack has registered before the first
// benchmark, for power commands to address.
const numNodes = 64

func TestMain(m *testing.M) {
	code := m.Run()
	if rack != nil {
		rack.close()
	}
	os.Exit(code)
}

// sharedRack returns the run's rack, starting it on first use.
func sharedRack(b *testing.B) *benchRack {
	b.Helper()
	rackOnce.Do(func() { rack, rackErr = startRack(3) })
	if rackErr != nil {
		b.Fatalf("starting the rack: %v", rackErr)
	}
	return rack
}

func startRack(n int) (*benchRack, error) {
	dir, err := os.MkdirTemp("", "racklet-bench-")
	if err != nil {
		return nil, err
	}
	r := &benchRack{dir: dir}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("m%d", i)
		cfg := member.Config{
			Name: name, Rack: "rack1", DataDir: filepath.Join(dir, name),
			HTTP: "127.0.0.1:0", NATS: "127.0.0.1:0", NATSCluster: "127.0.0.1:0", LogLevel: "warn", Insecure: true,
		}
		if i == 1 {
			cfg.Bootstrap = true
		}
		for _, o := range r.members {
			cfg.Join = append(cfg.Join, o.ClusterURL())
		}
		m, err := member.Start(context.Background(), cfg, logger)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		r.members = append(r.members, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.waitConverged(ctx); err != nil {
		r.close()
		return nil, err
	}
	c := r.client(r.leader())
	for i := 0; i < numNodes; i++ {
		if _, err := c.RegisterNode(ctx, api.RegisterNodeRequest{Name: nodeName(i), Slot: i + 1}); err != nil {
			r.close()
			return nil, fmt.Errorf("registering %s: %w", nodeName(i), err)
		}
	}
	return r, nil
}

func nodeName(i int) string { return fmt.Sprintf("n%d", i%numNodes) }

// waitConverged waits for one leader whose configuration holds every
// member as a voter, each ready.
func (r *benchRack) waitConverged(ctx context.Context) error {
	for {
		err := r.converged(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rack did not converge: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *benchRack) converged(ctx context.Context) error {
	l := r.leader()
	if l == nil {
		return errors.New("no leader")
	}
	ms, err := l.Log().Members(ctx)
	if err != nil {
		return err
	}
	voters := map[string]bool{}
	for _, mi := range ms {
		voters[mi.Name] = mi.Voter
	}
	for _, m := range r.members {
		if !voters[m.Name()] {
			return fmt.Errorf("%s is not a voter yet", m.Name())
		}
		if err := m.Log().Ready(ctx); err != nil {
			return fmt.Errorf("%s not ready: %w", m.Name(), err)
		}
		if got := len(m.Log().Store().State().Members); got != len(r.members) {
			return fmt.Errorf("%s has %d members in its state, want %d", m.Name(), got, len(r.members))
		}
	}
	return nil
}

func (r *benchRack) leader() *member.Member {
	for _, m := range r.members {
		if m.Log().IsLeader() {
			return m
		}
	}
	return nil
}

func (r *benchRack) follower() *member.Member {
	for _, m := range r.members {
		if !m.Log().IsLeader() {
			return m
		}
	}
	return nil
}

// transport is shared by the benchmarks' clients and keeps enough idle
// connections per member for 64 concurrent clients, so that connection
// setup is not what is measured.
var transport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	return t
}()

func (r *benchRack) client(m *member.Member) *client.Client {
	c, err := client.New(m.APIURL(), client.WithHTTPClient(&http.Client{Transport: transport}))
	if err != nil {
		panic(err) // the member's own URL
	}
	return c
}

func (r *benchRack) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(r.members) - 1; i >= 0; i-- {
		_ = r.members[i].Close(ctx)
	}
	_ = os.RemoveAll(r.dir)
}
