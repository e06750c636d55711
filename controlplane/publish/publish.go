// Package publish publishes a rack's committed events to NATS, in log
// order, from whichever member leads; the part of publication that does
// not depend on the event-log backend (Raft or etcd).
//
// The leader publishes every committed event, in log order, on
// racklet.<rack>.events.<type without io.racklet.>.<subject>
// (events.NATSSubject). Every member, leader or not, subscribes to that
// subject space and remembers the highest sequence it has seen come back
// from the server (the watermark, saved lazily in a file). A new leader
// resumes after its watermark. The watermark can only be behind what was
// really published, never ahead (an event still in a dying leader's client
// buffer was not published), so around a leader change a subscriber may
// see an event twice (deduplicate by id) but never misses one.
//
// Use: every member opens a Publisher when it starts (Open: the watermark
// is tracked from then on) and calls Run while it leads, with a context
// that ends when it stops leading; Close when the member stops.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/events"
)

// Watcher is the part of eventlog.Log (or eventlog.Store) a Publisher
// reads: committed events in order from a sequence.
type Watcher interface {
	Watch(ctx context.Context, from uint64, fn func(events.Event) error) error
}

// Config configures a Publisher.
type Config struct {
	// Conn is a NATS connection to this member's server. Required.
	Conn *nats.Conn
	// Rack names the rack (the subjects' second token). Required.
	Rack string
	// Log is where the committed events come from. Required.
	Log Watcher
	// WatermarkPath is the file the watermark is saved in. Required.
	WatermarkPath string
	// Published counts the events this member published (optional).
	Published prometheus.Counter
	// RetryInterval is how long Run waits before it retries a failed
	// publication or restarts a watch that ended (default 100ms and 1s).
	RetryInterval, RestartInterval time.Duration
	Logger                         *slog.Logger
}

// Publisher publishes committed events while its member leads, and tracks
// the watermark all the time.
type Publisher struct {
	cfg Config
	log *slog.Logger
	wm  *watermark
	sub *nats.Subscription

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// Open reads the watermark and starts tracking it: it subscribes to the
// rack's event subjects and saves the watermark every second.
func Open(cfg Config) (*Publisher, error) {
	if cfg.Conn == nil || cfg.Log == nil || cfg.WatermarkPath == "" {
		return nil, errors.New("publish: Conn, Log and WatermarkPath are required")
	}
	if !events.ValidName(cfg.Rack) {
		return nil, fmt.Errorf("publish: invalid rack name %q", cfg.Rack)
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 100 * time.Millisecond
	}
	if cfg.RestartInterval <= 0 {
		cfg.RestartInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	wm, err := openWatermark(cfg.WatermarkPath)
	if err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, log: cfg.Logger, wm: wm}
	ch := make(chan *nats.Msg, 4096)
	p.sub, err = cfg.Conn.ChanSubscribe(events.NATSWildcard(cfg.Rack), ch)
	if err != nil {
		return nil, fmt.Errorf("publish: subscribing to published events: %w", err)
	}
	_ = p.sub.SetPendingLimits(-1, -1)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(2)
	go p.track(ch)
	go p.save()
	return p, nil
}

// Watermark returns the highest sequence this member has seen published.
func (p *Publisher) Watermark() uint64 { return p.wm.get() }

// Run publishes committed events after the watermark, in order, until ctx
// ends: call it on the leader only, with a context that ends when
// leadership does. It returns at once after Close.
func (p *Publisher) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	for ctx.Err() == nil {
		from := p.wm.get() + 1
		p.log.Info("publishing events", "from", from)
		err := p.cfg.Log.Watch(ctx, from, func(ev events.Event) error { return p.publish(ctx, ev) })
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("event publication stopped; restarting", "err", err)
		if !sleep(ctx, p.cfg.RestartInterval) {
			return
		}
	}
}

// publish sends one event, retrying until the client takes it.
func (p *Publisher) publish(ctx context.Context, ev events.Event) error {
	b, err := events.Encode(ev)
	if err != nil {
		return err
	}
	subject := events.NATSSubject(p.cfg.Rack, ev)
	for {
		err := p.cfg.Conn.Publish(subject, b)
		if err == nil {
			break
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return err
		}
		// Reconnect buffer full or similar: wait and retry the same
		// event, keeping order.
		p.log.Warn("publishing event", "sequence", ev.Sequence, "err", err)
		if !sleep(ctx, p.cfg.RetryInterval) {
			return ctx.Err()
		}
	}
	// The watermark advances when the event comes back through the
	// server (track), not here: an event still in this client's buffer
	// when the member dies was not published.
	if p.cfg.Published != nil {
		p.cfg.Published.Inc()
	}
	return nil
}

// track follows the events any leader publishes and advances the
// watermark.
func (p *Publisher) track(ch <-chan *nats.Msg) {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case m := <-ch:
			var probe struct {
				Sequence uint64 `json:"sequence"`
			}
			if json.Unmarshal(m.Data, &probe) == nil {
				p.wm.advance(probe.Sequence)
			}
		}
	}
}

// save writes the watermark to its file every second.
func (p *Publisher) save() {
	defer p.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			if err := p.wm.flush(); err != nil {
				p.log.Warn("saving the published watermark", "err", err)
			}
		}
	}
}

// Close stops tracking, makes a running Run return and saves the
// watermark.
func (p *Publisher) Close() error {
	p.once.Do(func() {
		_ = p.sub.Unsubscribe()
		p.cancel()
		p.wg.Wait()
		p.err = p.wm.flush()
	})
	return p.err
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
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
		return nil, fmt.Errorf("publish: reading the published watermark: %w", err)
	}
	n, ok := parseWatermark(b)
	if !ok {
		// A torn write: starting from 0 only republishes.
		return w, nil
	}
	w.seq.Store(n)
	w.saved = n
	return w, nil
}

// parseWatermark reads a watermark file: a decimal sequence and a newline.
func parseWatermark(b []byte) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
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

func (w *watermark) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	seq := w.seq.Load()
	if seq == w.saved {
		return nil
	}
	tmp := w.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("publish: saving the published watermark: %w", err)
	}
	if err := os.Rename(tmp, w.path); err != nil {
		return fmt.Errorf("publish: saving the published watermark: %w", err)
	}
	w.saved = seq
	return nil
}
