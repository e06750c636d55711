package benchmarks

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/events"
)

// opTimeout bounds one command; a benchmark that hits it fails.
const opTimeout = 30 * time.Second

// command is one kind of append through the API; i numbers it in the run.
type command func(ctx context.Context, c *client.Client, i int) error

// powerOn asks for node n<i mod 64> on: a plain append.
func powerOn(ctx context.Context, c *client.Client, i int) error {
	_, err := c.SetPower(ctx, nodeName(i), events.PowerOn, false)
	return err
}

// powerOff asks for node n<i mod 64> off. The API first checks the quorum
// guard on linearizable state (a read index through the leader, then
// waiting until the member asked has applied it), then appends.
func powerOff(ctx context.Context, c *client.Client, i int) error {
	_, err := c.SetPower(ctx, nodeName(i), events.PowerOff, false)
	return err
}

// registered numbers the nodes registerNode creates, unique in the run.
var registered atomic.Int64

// registerNode registers a node never seen before.
func registerNode(ctx context.Context, c *client.Client, _ int) error {
	_, err := c.RegisterNode(ctx, api.RegisterNodeRequest{Name: fmt.Sprintf("b%d", registered.Add(1))})
	return err
}

// BenchmarkAppendLatency: one client, one command at a time, each
// acknowledged once committed by a majority (fsync'd) and applied. Through
// the leader's API, and through a follower's (which forwards the append
// to the leader over NATS). Power-off first checks the quorum guard on
// the member's applied state, then appends.
func BenchmarkAppendLatency(b *testing.B) {
	for _, bc := range []struct {
		name string
		via  func(*benchRack) *member.Member
		cmd  command
	}{
		{"power-on/via=leader", (*benchRack).leader, powerOn},
		{"power-on/via=follower", (*benchRack).follower, powerOn},
		{"power-off/via=leader", (*benchRack).leader, powerOff},
		{"power-off/via=follower", (*benchRack).follower, powerOff},
		{"register-node/via=leader", (*benchRack).leader, registerNode},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := sharedRack(b)
			measureBaselines(b)
			m := bc.via(r)
			if m == nil {
				b.Fatal("no such member: no leader?")
			}
			c := r.client(m)
			lat := make(latencies, 0, b.N)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				err := bc.cmd(ctx, c, i)
				cancel()
				if err != nil {
					b.Fatalf("command %d via %s: %v", i, m.Name(), err)
				}
				lat = append(lat, time.Since(t0))
			}
			elapsed := time.Since(start)
			b.StopTimer()
			reportLatency(b, lat)
			reportRatios(b, lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			record(b, b.Name(), lat, rate(b.N, elapsed, "events/s"))
		})
	}
}

// throughputClients is how many clients append at once.
const throughputClients = 64

// BenchmarkAppendThroughput: 64 clients, each with one command in flight
// at a time, b.N power-on commands in all; through the leader's API, and
// spread over the three members' APIs. The log batches what arrives
// together, so events/s is the figure to read; ns/op is wall time over b.N.
func BenchmarkAppendThroughput(b *testing.B) {
	for _, bc := range []struct {
		name string
		via  func(*benchRack) []*member.Member
	}{
		{"via=leader", func(r *benchRack) []*member.Member { return []*member.Member{r.leader()} }},
		{"via=all", func(r *benchRack) []*member.Member { return r.members }},
	} {
		b.Run(fmt.Sprintf("power-on/clients=%d/%s", throughputClients, bc.name), func(b *testing.B) {
			r := sharedRack(b)
			measureBaselines(b)
			ms := bc.via(r)
			if ms[0] == nil {
				b.Fatal("no leader")
			}
			clients := make([]*client.Client, throughputClients)
			for w := range clients {
				clients[w] = r.client(ms[w%len(ms)])
			}
			throughput(b, clients, powerOn)
		})
	}
}

// throughput runs b.N commands on the clients, each client one at a time.
func throughput(b *testing.B, clients []*client.Client, cmd command) {
	b.Helper()
	lat := make(latencies, b.N)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	b.ResetTimer()
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				err := cmd(ctx, c, i)
				cancel()
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("command %d via %s: %w", i, c.URL(), err) })
					next.Store(int64(b.N)) // stop the others
					return
				}
				lat[i] = time.Since(t0)
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
	record(b, b.Name(), lat, rate(b.N, elapsed, "events/s"))
}
