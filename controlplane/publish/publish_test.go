package publish

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/natsserver"
	"github.com/racklet/rack/events"

	"github.com/racklet/rack/internal/testutil"
)

func startNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	s, err := natsserver.Start(natsserver.Config{Name: "p1", Rack: "rack1", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t *testing.T, s *natsserver.Server) *nats.Conn {
	t.Helper()
	nc, err := s.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func appendNodes(t *testing.T, l eventlog.Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		ev, err := events.New(events.Source("rack1", "p1"), events.NodeRegistered, fmt.Sprintf("n%d", i), &events.NodeRegisteredData{Slot: i + 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// receive returns the sequences of the next n events on ch, checking
// each arrived on its subject.
func receive(t *testing.T, ch <-chan *nats.Msg, n int) []uint64 {
	t.Helper()
	var out []uint64
	for len(out) < n {
		select {
		case m := <-ch:
			ev, err := events.Decode(m.Data)
			if err != nil {
				t.Fatalf("invalid envelope on %s: %v", m.Subject, err)
			}
			if want := events.NATSSubject("rack1", ev); m.Subject != want {
				t.Fatalf("event %d on %s, want %s", ev.Sequence, m.Subject, want)
			}
			out = append(out, ev.Sequence)
		case <-time.After(10 * time.Second):
			t.Fatalf("received %v, want %d events", out, n)
		}
	}
	return out
}

// A Publisher publishes only while Run runs, in order, from after its
// watermark; the watermark follows what came back from the server, is
// saved on Close and read again on Open, so a new Run (a new leader)
// resumes where publication ended, without gaps.
func TestRunResumesAfterWatermark(t *testing.T) {
	s := startNATS(t)
	sub := connect(t, s)
	ch := make(chan *nats.Msg, 256)
	if _, err := sub.ChanSubscribe(events.NATSWildcard("rack1"), ch); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	log := eventlog.NewMem(0)
	path := filepath.Join(t.TempDir(), "published-sequence")
	open := func() *Publisher {
		p, err := Open(Config{Conn: connect(t, s), Rack: "rack1", Log: log, WatermarkPath: path})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := open()
	appendNodes(t, log, 0, 5)
	select {
	case m := <-ch:
		t.Fatalf("published %s before Run", m.Subject)
	case <-time.After(100 * time.Millisecond):
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	if got := receive(t, ch, 5); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("published %v, want 1…5 in order", got)
	}
	appendNodes(t, log, 5, 8)
	if got := receive(t, ch, 3); fmt.Sprint(got) != "[6 7 8]" {
		t.Fatalf("published %v, want 6 7 8", got)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if w := p.Watermark(); w != 8 {
			return fmt.Errorf("watermark %d, want 8", w)
		}
		return nil
	})
	cancel()
	<-done // Run ends with its context: leadership lost
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "8\n" {
		t.Fatalf("saved watermark %q (%v), want 8", b, err)
	}

	// A new leader: appended while none published, resumed after 8.
	appendNodes(t, log, 8, 10)
	p2 := open()
	defer p2.Close()
	if w := p2.Watermark(); w != 8 {
		t.Fatalf("reopened watermark %d, want 8", w)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done2 := make(chan struct{})
	go func() { defer close(done2); p2.Run(ctx2) }()
	if got := receive(t, ch, 2); fmt.Sprint(got) != "[9 10]" {
		t.Fatalf("after the restart published %v, want 9 10", got)
	}
	// Close ends a running Run.
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done2:
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running after Close")
	}
}

// The watermark advances on what any member published, not only this one:
// a follower tracks the leader's publication.
func TestWatermarkTracksOthers(t *testing.T) {
	s := startNATS(t)
	log := eventlog.NewMem(0)
	p, err := Open(Config{Conn: connect(t, s), Rack: "rack1", Log: log, WatermarkPath: filepath.Join(t.TempDir(), "w")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	leader, err := Open(Config{Conn: connect(t, s), Rack: "rack1", Log: log, WatermarkPath: filepath.Join(t.TempDir(), "w")})
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go leader.Run(ctx)
	appendNodes(t, log, 0, 3)
	testutil.WaitFor(t, 5*time.Second, func() error {
		if w := p.Watermark(); w != 3 {
			return fmt.Errorf("follower's watermark %d, want 3", w)
		}
		return nil
	})
}

func TestOpenValidates(t *testing.T) {
	s := startNATS(t)
	nc := connect(t, s)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no conn", Config{Rack: "rack1", Log: eventlog.NewMem(0), WatermarkPath: filepath.Join(dir, "w")}},
		{"no log", Config{Conn: nc, Rack: "rack1", WatermarkPath: filepath.Join(dir, "w")}},
		{"no path", Config{Conn: nc, Rack: "rack1", Log: eventlog.NewMem(0)}},
		{"bad rack", Config{Conn: nc, Rack: "Rack 1", Log: eventlog.NewMem(0), WatermarkPath: filepath.Join(dir, "w")}},
		{"unreadable watermark", Config{Conn: nc, Rack: "rack1", Log: eventlog.NewMem(0), WatermarkPath: dir}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := Open(tc.cfg); err == nil {
				p.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

// A watermark file that is not a number (a torn write) reads as 0: the
// member republishes, it never skips.
func FuzzParseWatermark(f *testing.F) {
	for _, s := range []string{"8\n", "0", "", "18446744073709551615\n", "12x", " 7 \n", "-1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := parseWatermark(b)
		if !ok && n != 0 {
			t.Fatalf("parseWatermark(%q) = %d, false", b, n)
		}
		if ok {
			if m, ok2 := parseWatermark(fmt.Appendf(nil, "%d\n", n)); !ok2 || m != n {
				t.Fatalf("round trip of %d: %d, %v", n, m, ok2)
			}
		}
	})
}
