package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/events"
)

type fakeCluster struct{ ready error }

func (c *fakeCluster) Members(ctx context.Context) ([]api.MemberInfo, error) {
	return []api.MemberInfo{{Name: "m1", RaftAddress: "127.0.0.1:7481", Voter: true, Leader: true}}, nil
}
func (c *fakeCluster) RemoveMember(ctx context.Context, name string) error { return nil }
func (c *fakeCluster) Ready(ctx context.Context) error                     { return c.ready }

func newServer(t *testing.T, wrap func(http.Handler) http.Handler) (*Client, *eventlog.Mem, *fakeCluster) {
	t.Helper()
	mem := eventlog.NewMem(0)
	t.Cleanup(func() { _ = mem.Close() })
	cl := &fakeCluster{}
	srv, err := api.New(api.Config{Rack: "rack1", Member: "m1", Log: mem, Cluster: cl})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv
	if wrap != nil {
		h = wrap(srv)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	c, err := New(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	return c, mem, cl
}

func TestClientCommandsAndReads(t *testing.T) {
	c, _, cl := newServer(t, nil)
	ctx := context.Background()
	ev, err := c.RegisterNode(ctx, api.RegisterNodeRequest{Name: "n3", Slot: 3, Member: "m3"})
	if err != nil || ev.Sequence != 1 || ev.Type != events.NodeRegistered {
		t.Fatalf("RegisterNode: %+v, %v", ev, err)
	}
	if _, err := c.RegisterNode(ctx, api.RegisterNodeRequest{Name: "n1", Slot: 1}); err != nil {
		t.Fatal(err)
	}
	ev, err = c.SetPower(ctx, "n3", events.PowerOff, true)
	if err != nil || ev.Sequence != 3 || ev.Type != events.NodePowerDesired {
		t.Fatalf("SetPower: %+v, %v", ev, err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].Name != "n1" || nodes[1].Name != "n3" {
		t.Fatalf("Nodes: %v, %v", nodes, err)
	}
	if _, err := c.Nodes(ctx, Stale()); err != nil {
		t.Fatal(err)
	}
	n, err := c.Node(ctx, "n3", Stale())
	if err != nil || n.Desired != events.PowerOff || !n.Force || n.Slot != 3 {
		t.Fatalf("Node: %+v, %v", n, err)
	}
	evs, next, err := c.Events(ctx, EventQuery{Type: "node.power.*"})
	if err != nil || len(evs) != 1 || evs[0].Sequence != 3 || next != 4 {
		t.Fatalf("Events: %v next %d, %v", evs, next, err)
	}
	evs, next, err = c.Events(ctx, EventQuery{Since: 1, Subject: "n3", Limit: 1})
	if err != nil || len(evs) != 1 || evs[0].Sequence != 1 || next != 2 {
		t.Fatalf("Events: %v next %d, %v", evs, next, err)
	}
	ms, err := c.Members(ctx)
	if err != nil || len(ms) != 1 || !ms[0].Leader {
		t.Fatalf("Members: %v, %v", ms, err)
	}
	if err := c.RemoveMember(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveNode(ctx, "n1", "gone"); err != nil {
		t.Fatal(err)
	}
	if err := c.Healthy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	cl.ready = eventlog.ErrNoLeader
	var ae *APIError
	if err := c.Ready(ctx); !errors.As(err, &ae) || ae.Status != 503 || ae.Code != api.CodeUnavailable {
		t.Fatalf("Ready without leader: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	c, _, _ := newServer(t, nil)
	ctx := context.Background()
	cases := []struct {
		name   string
		call   func() error
		status int
		code   string
		msg    string
	}{
		{"unknown node", func() error { _, err := c.Node(ctx, "n9"); return err }, 404, api.CodeNotFound, `node "n9" is not registered`},
		{"power unknown node", func() error { _, err := c.SetPower(ctx, "n9", events.PowerOn, false); return err }, 404, api.CodeNotFound, `"n9"`},
		{"invalid state", func() error { _, err := c.SetPower(ctx, "n9", "sideways", false); return err }, 400, api.CodeInvalid, "state"},
		{"invalid name", func() error {
			_, err := c.RegisterNode(ctx, api.RegisterNodeRequest{Name: "Bad_Name"})
			return err
		}, 400, api.CodeInvalid, "name"},
		{"bad glob", func() error { _, _, err := c.Events(ctx, EventQuery{Type: "["}); return err }, 400, api.CodeInvalid, "type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if ae.Status != tc.status || ae.Code != tc.code || !strings.Contains(ae.Message, tc.msg) {
				t.Errorf("got %+v", ae)
			}
			if !strings.HasPrefix(err.Error(), tc.code+": ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestConnectionErrorNamesServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, err := New("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Nodes(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http://"+addr) {
		t.Fatalf("error %v does not name the server", err)
	}
	err = c.FollowEvents(context.Background(), EventQuery{}, func(events.Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "http://"+addr) {
		t.Fatalf("follow error %v does not name the server", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Nodes(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:7480", "ftp://x", "http://"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
}

func TestNonJSONErrorAnswer(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer ts.Close()
	c, _ := New(ts.URL)
	_, err := c.Nodes(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "http_502" || ae.Message != "bad gateway" {
		t.Fatalf("got %v", err)
	}
}

// dropper cuts the first event stream after it has written `after` events.
type dropper struct {
	h       http.Handler
	after   int
	streams atomic.Int32
	mu      sync.Mutex
	lastIDs []string // Last-Event-ID of each stream request
}

func (d *dropper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Accept") != api.EventStreamType {
		d.h.ServeHTTP(w, r)
		return
	}
	d.mu.Lock()
	d.lastIDs = append(d.lastIDs, r.Header.Get("Last-Event-ID"))
	d.mu.Unlock()
	if d.streams.Add(1) == 1 {
		w = &cutWriter{ResponseWriter: w, left: d.after}
	}
	d.h.ServeHTTP(w, r)
}

type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if strings.HasPrefix(string(b), "id: ") {
		if c.left == 0 {
			panic(http.ErrAbortHandler) // drop the connection mid-stream
		}
		c.left--
	}
	return c.ResponseWriter.Write(b)
}

func (c *cutWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func TestFollowEventsResumesAfterDrop(t *testing.T) {
	var d *dropper
	c, mem, _ := newServer(t, func(h http.Handler) http.Handler {
		d = &dropper{h: h, after: 2}
		return d
	})
	appendNode := func(name string) {
		ev, _ := events.New(events.Source("rack1", "m1"), events.NodeRegistered, name, &events.NodeRegisteredData{})
		if _, err := mem.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	appendNode("n1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []uint64
	done := errors.New("done")
	errc := make(chan error, 1)
	go func() {
		errc <- c.FollowEvents(ctx, EventQuery{Type: "node.*"}, func(ev events.Event) error {
			got = append(got, ev.Sequence)
			if len(got) == 1 {
				// Appended after subscribing.
				for _, n := range []string{"n2", "n3", "n4", "n5"} {
					appendNode(n)
				}
			}
			if len(got) == 5 {
				return done
			}
			return nil
		})
	}()
	if err := <-errc; err != done {
		t.Fatalf("FollowEvents: %v (got %v)", err, got)
	}
	if want := "[1 2 3 4 5]"; fmt.Sprint(got) != want {
		t.Fatalf("got %s, want %s", fmt.Sprint(got), want)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.lastIDs) < 2 || d.lastIDs[0] != "" || d.lastIDs[1] != "2" {
		t.Fatalf("stream requests carried Last-Event-ID %q, want [\"\" \"2\" …]", d.lastIDs)
	}
}

func TestFollowEventsStopsOnContext(t *testing.T) {
	c, _, _ := newServer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.FollowEvents(ctx, EventQuery{}, func(events.Event) error { return nil }) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestFollowEventsRejectedQuery(t *testing.T) {
	c, _, _ := newServer(t, nil)
	err := c.FollowEvents(context.Background(), EventQuery{Subject: "Not Valid"}, func(events.Event) error { return nil })
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != api.CodeInvalid {
		t.Fatalf("got %v", err)
	}
}
