package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/benchmarks/results"
	"github.com/racklet/rack/events"
)

// BenchmarkFanOut: commit to delivery of the rack's events to plain NATS
// subscribers of racklet.<rack>.events.>, 1, 10 and 100 of them, each on
// its own connection, spread round robin over the three members' NATS
// servers (the leader's and two routed ones). One operation appends one
// node.power.desired event on the leader (eventlog.Log.Append, no HTTP)
// and waits until every subscriber has it.
//
// The commit time is when the leader's log applies the event, taken by a
// watcher on the leader's log (Log.Watch, the mechanism the publisher
// itself follows), or when Append returns if that is earlier; delivery is
// when a subscriber's handler is called. Per delivery: the latency of
// each subscriber; "all-": until the last subscriber has it.
func BenchmarkFanOut(b *testing.B) {
	for _, subs := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			benchFanOut(b, sharedRack(b), subs)
		})
	}
}

// fanOut collects, per sequence, the commit time and the delivery times.
type fanOut struct {
	mu        sync.Mutex
	committed map[uint64]time.Time
	delivered map[uint64][]time.Time
	kick      chan struct{}
}

func (f *fanOut) commit(seq uint64, at time.Time) {
	f.mu.Lock()
	if t, ok := f.committed[seq]; !ok || at.Before(t) {
		f.committed[seq] = at
	}
	f.mu.Unlock()
}

func (f *fanOut) deliver(msg *nats.Msg) {
	now := time.Now()
	var probe struct {
		Sequence uint64 `json:"sequence"`
	}
	if json.Unmarshal(msg.Data, &probe) != nil || probe.Sequence == 0 {
		return
	}
	f.mu.Lock()
	f.delivered[probe.Sequence] = append(f.delivered[probe.Sequence], now)
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// wait waits until seq has reached n subscribers.
func (f *fanOut) wait(ctx context.Context, seq uint64, n int) error {
	for {
		f.mu.Lock()
		got := len(f.delivered[seq])
		f.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("event %d reached %d of %d subscribers: %w", seq, got, n, ctx.Err())
		case <-f.kick:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func benchFanOut(b *testing.B, r *benchRack, subs int) {
	lead := r.leader()
	if lead == nil {
		b.Fatal("no leader")
	}
	f := &fanOut{committed: map[uint64]time.Time{}, delivered: map[uint64][]time.Time{}, kick: make(chan struct{}, 1)}
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for k := range subs {
		m := r.members[k%len(r.members)]
		nc, err := nats.Connect(m.NATSURL(), nats.Name(fmt.Sprintf("bench-sub-%d", k)))
		if err != nil {
			b.Fatalf("connecting subscriber %d to %s: %v", k, m.Name(), err)
		}
		conns = append(conns, nc)
		if _, err := nc.Subscribe(events.NATSWildcard("rack1"), f.deliver); err != nil {
			b.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	// Interest must have reached every server before the first event.
	time.Sleep(200 * time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	from := lead.Log().Store().State().Sequence + 1
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		_ = lead.Log().Watch(ctx, from, func(ev events.Event) error {
			f.commit(ev.Sequence, time.Now())
			return nil
		})
	})

	var each, all latencies
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		ev, err := powerOnEvent(i)
		if err != nil {
			b.Fatal(err)
		}
		actx, acancel := context.WithTimeout(ctx, opTimeout)
		out, err := lead.Log().Append(actx, ev)
		if err == nil {
			f.commit(out[0].Sequence, time.Now())
			err = f.wait(actx, out[0].Sequence, subs)
		}
		acancel()
		if err != nil {
			b.Fatalf("event %d: %v", i, err)
		}
		seq := out[0].Sequence
		f.mu.Lock()
		at, ds := f.committed[seq], f.delivered[seq]
		last := at
		for _, d := range ds {
			each = append(each, d.Sub(at))
			if d.After(last) {
				last = d
			}
		}
		all = append(all, last.Sub(at))
		delete(f.committed, seq)
		delete(f.delivered, seq)
		f.mu.Unlock()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatency(b, each)
	b.ReportMetric(micros(all.percentile(50)), "all-p50-µs")
	b.ReportMetric(micros(all.percentile(99)), "all-p99-µs")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	writeRecord(b, results.Record{
		Name: b.Name(), Samples: len(each),
		Metrics: append(results.Latency(each),
			results.Metric{Name: "all-p50", Value: ms(all.percentile(50)), Unit: results.UnitMs},
			results.Metric{Name: "all-p99", Value: ms(all.percentile(99)), Unit: results.UnitMs},
			rate(b.N, elapsed, "events/s")),
		Notes: []string{fmt.Sprintf("%d events, one at a time, each to %d subscribers", b.N, subs)},
	})
}
