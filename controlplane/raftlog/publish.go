package raftlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/events"
)

// Publication of committed events to NATS.
//
// The leader publishes every committed event, in log order, on
// racklet.<rack>.events.<type without io.racklet.>.<subject>. Every member
// watches that subject space and remembers the highest sequence it has seen
// published (the watermark, also saved lazily in the data dir). A new
// leader resumes after its watermark. Its watermark can only be behind
// what was really published, never ahead, so around a failover a
// subscriber may see an event twice (deduplicate by id) but never misses
// one.

// publish runs on the leader until ctx ends.
func (l *Log) publish(ctx context.Context) {
	for ctx.Err() == nil {
		from := l.published.get() + 1
		l.log.Info("publishing events", "from", from)
		err := l.store.Watch(ctx, from, func(ev events.Event) error {
			b, err := events.Encode(ev)
			if err != nil {
				return err
			}
			for {
				err := l.nc.Publish(events.NATSSubject(l.cfg.Rack, ev), b)
				if err == nil {
					break
				}
				if errors.Is(err, nats.ErrConnectionClosed) {
					return err
				}
				// Reconnect buffer full or similar: wait and retry the
				// same event, keeping order.
				l.log.Warn("publishing event", "sequence", ev.Sequence, "err", err)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
			// The watermark advances when the event comes back through
			// the server (trackPublished), not here: an event still in
			// this client's buffer when the member dies was not published.
			l.metrics.published.Inc()
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("event publication stopped; restarting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// trackPublished follows the events any leader publishes and advances the
// watermark.
func (l *Log) trackPublished() {
	defer l.wg.Done()
	ch := make(chan *nats.Msg, 4096)
	sub, err := l.nc.ChanSubscribe(events.NATSWildcard(l.cfg.Rack), ch)
	if err != nil {
		l.log.Error("subscribing to published events", "err", err)
		return
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)
	for {
		select {
		case <-l.ctx.Done():
			return
		case m := <-ch:
			var probe struct {
				Sequence uint64 `json:"sequence"`
			}
			if json.Unmarshal(m.Data, &probe) == nil {
				l.published.advance(probe.Sequence)
			}
		}
	}
}

// watermark is the highest published sequence this member knows of,
// persisted lazily (losing an update only causes duplicates).
type watermark struct {
	path  string
	seq   atomic.Uint64
	mu    sync.Mutex
	saved uint64
}

func openWatermark(path string) (*watermark, error) {
	w := &watermark{path: path}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return w, nil
	case err != nil:
		return nil, fmt.Errorf("reading published watermark: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		// A torn write: starting from 0 only republishes.
		return w, nil
	}
	w.seq.Store(n)
	w.saved = n
	return w, nil
}

func (w *watermark) get() uint64 { return w.seq.Load() }

func (w *watermark) advance(seq uint64) {
	for {
		cur := w.seq.Load()
		if seq <= cur || w.seq.CompareAndSwap(cur, seq) {
			return
		}
	}
}

func (w *watermark) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = w.flush()
		}
	}
}

func (w *watermark) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	seq := w.seq.Load()
	if seq == w.saved {
		return nil
	}
	tmp := w.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("saving published watermark: %w", err)
	}
	if err := os.Rename(tmp, w.path); err != nil {
		return fmt.Errorf("saving published watermark: %w", err)
	}
	w.saved = seq
	return nil
}
