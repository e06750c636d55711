package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// fakeCluster is a Cluster with a fixed member list.
type fakeCluster struct {
	mu      sync.Mutex
	members []MemberInfo
	ready   error
}

func (c *fakeCluster) Members(ctx context.Context) ([]MemberInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]MemberInfo(nil), c.members...), nil
}

func (c *fakeCluster) RemoveMember(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.Name == name {
			c.members = append(c.members[:i], c.members[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("%w: %s", state.ErrUnknownMember, name)
}

func (c *fakeCluster) Ready(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

var _ Cluster = (*fakeCluster)(nil)

type env struct {
	ts      *httptest.Server
	log     *eventlog.Mem
	cluster *fakeCluster
}

func newEnv(t *testing.T, mutate ...func(*Config)) *env {
	t.Helper()
	mem := eventlog.NewMem(0)
	t.Cleanup(func() { _ = mem.Close() })
	cl := &fakeCluster{members: []MemberInfo{
		{Name: "m1", RaftAddress: "10.0.0.1:7481", Voter: true, Leader: true, AppliedIndex: 3, CommitIndex: 3},
		{Name: "m2", RaftAddress: "10.0.0.2:7481", Voter: true, AppliedIndex: 3, CommitIndex: 3},
	}}
	cfg := Config{Rack: "rack1", Member: "m1", Log: mem, Cluster: cl, KeepAlive: time.Hour}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &env{ts: ts, log: mem, cluster: cl}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) errorBody(t *testing.T) ErrorBody {
	t.Helper()
	var eb ErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	return eb
}

func (e *env) do(t *testing.T, method, path, body string, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) seq(t *testing.T) uint64 {
	t.Helper()
	st, err := e.log.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Sequence
}

func (e *env) mustAppend(t *testing.T, typ events.Type, subject string, p events.Payload) events.Event {
	t.Helper()
	ev, err := events.New(events.Source("rack1", "m1"), typ, subject, p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.log.Append(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}

func TestRoutesHappyPath(t *testing.T) {
	e := newEnv(t)
	steps := []struct {
		name       string
		method     string
		path, body string
		status     int
		check      func(t *testing.T, r response)
	}{
		{"register n3", "POST", "/v1/nodes", `{"name":"n3","slot":3,"member":"m3"}`, 201, func(t *testing.T, r response) {
			var cr CommandResponse
			mustJSON(t, r.body, &cr)
			if cr.Sequence != 1 || cr.Event.Sequence != 1 || cr.Event.Type != events.NodeRegistered || cr.Event.Subject != "n3" {
				t.Errorf("got %+v", cr)
			}
			if cr.Event.Source != "/racklet/rack1/m1" || cr.Event.Actor != Actor {
				t.Errorf("source %q actor %q", cr.Event.Source, cr.Event.Actor)
			}
			if r.header.Get("Location") != "/v1/nodes/n3" {
				t.Errorf("Location %q", r.header.Get("Location"))
			}
		}},
		{"register n1 without slot", "POST", "/v1/nodes", `{"name":"n1"}`, 201, nil},
		{"list nodes", "GET", "/v1/nodes", "", 200, func(t *testing.T, r response) {
			var nl NodeList
			mustJSON(t, r.body, &nl)
			if nl.Sequence != 2 || len(nl.Nodes) != 2 || nl.Nodes[0].Name != "n1" || nl.Nodes[1].Name != "n3" || nl.Nodes[1].Slot != 3 || nl.Nodes[1].Member != "m3" {
				t.Errorf("got %s", r.body)
			}
		}},
		{"list nodes stale", "GET", "/v1/nodes?stale=1", "", 200, nil},
		{"power off", "PUT", "/v1/nodes/n3/power", `{"state":"off","force":true}`, 202, func(t *testing.T, r response) {
			var cr CommandResponse
			mustJSON(t, r.body, &cr)
			if cr.Sequence != 3 || cr.Event.Type != events.NodePowerDesired {
				t.Errorf("got %+v", cr)
			}
			p, err := cr.Event.Payload()
			if err != nil {
				t.Fatal(err)
			}
			if d := p.(*events.PowerDesiredData); d.State != events.PowerOff || !d.Force {
				t.Errorf("payload %+v", d)
			}
		}},
		{"get node", "GET", "/v1/nodes/n3", "", 200, func(t *testing.T, r response) {
			var n state.Node
			mustJSON(t, r.body, &n)
			if n.Name != "n3" || n.Desired != events.PowerOff || n.DesiredSequence != 3 || !n.Force {
				t.Errorf("got %s", r.body)
			}
		}},
		{"power cycle", "PUT", "/v1/nodes/n3/power", `{"state":"cycle"}`, 202, nil},
		{"remove n1", "DELETE", "/v1/nodes/n1?reason=decommissioned", "", 200, func(t *testing.T, r response) {
			var cr CommandResponse
			mustJSON(t, r.body, &cr)
			if cr.Event.Type != events.NodeRemoved || cr.Sequence != 5 {
				t.Errorf("got %+v", cr)
			}
		}},
		{"list events", "GET", "/v1/events", "", 200, func(t *testing.T, r response) {
			var el EventList
			mustJSON(t, r.body, &el)
			if len(el.Events) != 5 || el.Next != 6 {
				t.Errorf("got %d events, next %d", len(el.Events), el.Next)
			}
			for i, ev := range el.Events {
				if ev.Sequence != uint64(i+1) {
					t.Errorf("event %d has sequence %d", i, ev.Sequence)
				}
			}
		}},
		{"members", "GET", "/v1/members", "", 200, func(t *testing.T, r response) {
			var ml MemberList
			mustJSON(t, r.body, &ml)
			if len(ml.Members) != 2 || !ml.Members[0].Leader || ml.Members[0].RaftAddress != "10.0.0.1:7481" {
				t.Errorf("got %s", r.body)
			}
		}},
		{"remove member", "DELETE", "/v1/members/m2", "", 204, nil},
		{"members after removal", "GET", "/v1/members", "", 200, func(t *testing.T, r response) {
			var ml MemberList
			mustJSON(t, r.body, &ml)
			if len(ml.Members) != 1 {
				t.Errorf("got %s", r.body)
			}
		}},
		{"healthz", "GET", "/healthz", "", 200, nil},
		{"readyz", "GET", "/readyz", "", 200, nil},
		{"metrics", "GET", "/metrics", "", 200, func(t *testing.T, r response) {
			if !strings.Contains(string(r.body), "racklet_api_request_duration_seconds") {
				t.Errorf("metrics lack the request histogram:\n%s", r.body)
			}
		}},
	}
	for _, s := range steps {
		r := e.do(t, s.method, s.path, s.body)
		if r.status != s.status {
			t.Fatalf("%s: status %d, want %d: %s", s.name, r.status, s.status, r.body)
		}
		if s.status != http.StatusNoContent && !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") && s.path != "/metrics" {
			t.Errorf("%s: Content-Type %q", s.name, r.header.Get("Content-Type"))
		}
		if s.check != nil {
			t.Run(s.name, func(t *testing.T) { s.check(t, r) })
		}
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
}

func TestBadInputNeverReachesTheLog(t *testing.T) {
	e := newEnv(t)
	e.mustAppend(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1})
	big := `{"name":"n2","member":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code                     string
		field                    string // the message must name it
	}{
		{"register: bad JSON", "POST", "/v1/nodes", `{"name":`, nil, 400, CodeInvalid, "body"},
		{"register: not JSON", "POST", "/v1/nodes", `name=n2`, nil, 400, CodeInvalid, "body"},
		{"register: empty body", "POST", "/v1/nodes", ``, nil, 400, CodeInvalid, "body"},
		{"register: array", "POST", "/v1/nodes", `[1,2]`, nil, 400, CodeInvalid, "body"},
		{"register: trailing data", "POST", "/v1/nodes", `{"name":"n2"} {"name":"n3"}`, nil, 400, CodeInvalid, "body"},
		{"register: unknown field", "POST", "/v1/nodes", `{"name":"n2","color":"red"}`, nil, 400, CodeInvalid, "color"},
		{"register: wrong type name", "POST", "/v1/nodes", `{"name":2}`, nil, 400, CodeInvalid, "name"},
		{"register: wrong type slot", "POST", "/v1/nodes", `{"name":"n2","slot":"three"}`, nil, 400, CodeInvalid, "slot"},
		{"register: missing name", "POST", "/v1/nodes", `{"slot":2}`, nil, 400, CodeInvalid, "name"},
		{"register: invalid name", "POST", "/v1/nodes", `{"name":"N_2"}`, nil, 400, CodeInvalid, "name"},
		{"register: long name", "POST", "/v1/nodes", `{"name":"` + strings.Repeat("a", 64) + `"}`, nil, 400, CodeInvalid, "name"},
		{"register: invalid member", "POST", "/v1/nodes", `{"name":"n2","member":"M 1"}`, nil, 400, CodeInvalid, "member"},
		{"register: negative slot", "POST", "/v1/nodes", `{"name":"n2","slot":-1}`, nil, 400, CodeInvalid, "slot"},
		{"register: huge slot", "POST", "/v1/nodes", `{"name":"n2","slot":5000}`, nil, 400, CodeInvalid, "slot"},
		{"register: oversize body", "POST", "/v1/nodes", big, nil, 413, CodeTooLarge, ""},
		{"register: wrong content type", "POST", "/v1/nodes", `{"name":"n2"}`, []string{"Content-Type", "text/plain"}, 400, CodeInvalid, "Content-Type"},
		{"register: exists", "POST", "/v1/nodes", `{"name":"n1"}`, nil, 409, CodeConflict, "n1"},
		{"power: bad JSON", "PUT", "/v1/nodes/n1/power", `{"state":"on"`, nil, 400, CodeInvalid, "body"},
		{"power: unknown field", "PUT", "/v1/nodes/n1/power", `{"state":"on","now":true}`, nil, 400, CodeInvalid, "now"},
		{"power: wrong type force", "PUT", "/v1/nodes/n1/power", `{"state":"on","force":"yes"}`, nil, 400, CodeInvalid, "force"},
		{"power: wrong type state", "PUT", "/v1/nodes/n1/power", `{"state":1}`, nil, 400, CodeInvalid, "state"},
		{"power: invalid state", "PUT", "/v1/nodes/n1/power", `{"state":"sideways"}`, nil, 400, CodeInvalid, "state"},
		{"power: missing state", "PUT", "/v1/nodes/n1/power", `{}`, nil, 400, CodeInvalid, "state"},
		{"power: invalid node name", "PUT", "/v1/nodes/N1/power", `{"state":"on"}`, nil, 400, CodeInvalid, "name"},
		{"power: oversize body", "PUT", "/v1/nodes/n1/power", `{"state":"on","x":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, nil, 413, CodeTooLarge, ""},
		{"power: wrong content type", "PUT", "/v1/nodes/n1/power", `{"state":"on"}`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 400, CodeInvalid, "Content-Type"},
		{"power: unknown node", "PUT", "/v1/nodes/n9/power", `{"state":"on"}`, nil, 404, CodeNotFound, `node "n9" is not registered`},
		{"remove: invalid name", "DELETE", "/v1/nodes/n%20x", "", nil, 400, CodeInvalid, "name"},
		{"remove: bad reason", "DELETE", "/v1/nodes/n1?reason=a%00b", "", nil, 400, CodeInvalid, "reason"},
		{"remove: unknown node", "DELETE", "/v1/nodes/n9", "", nil, 404, CodeNotFound, `"n9"`},
		{"remove member: invalid name", "DELETE", "/v1/members/M1", "", nil, 400, CodeInvalid, "name"},
		{"remove member: unknown", "DELETE", "/v1/members/m9", "", nil, 404, CodeNotFound, `"m9"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.seq(t)
			r := e.do(t, c.method, c.path, c.body, c.hdr...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			eb := r.errorBody(t)
			if eb.Code != c.code {
				t.Errorf("code %q, want %q (%s)", eb.Code, c.code, eb.Message)
			}
			if !strings.Contains(eb.Message, c.field) {
				t.Errorf("message %q does not name %q", eb.Message, c.field)
			}
			if after := e.seq(t); after != before {
				t.Errorf("log moved from %d to %d", before, after)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"unknown node", "GET", "/v1/nodes/n9", 404, CodeNotFound},
		{"invalid node name", "GET", "/v1/nodes/N9", 400, CodeInvalid},
		{"bad stale", "GET", "/v1/nodes?stale=maybe", 400, CodeInvalid},
		{"bad since", "GET", "/v1/events?since=-1", 400, CodeInvalid},
		{"limit zero", "GET", "/v1/events?limit=0", 400, CodeInvalid},
		{"limit too big", "GET", "/v1/events?limit=10001", 400, CodeInvalid},
		{"bad glob", "GET", "/v1/events?type=node.%5B", 400, CodeInvalid},
		{"bad subject", "GET", "/v1/events?subject=A", 400, CodeInvalid},
		{"unknown route", "GET", "/v2/nodes", 404, CodeNotFound},
		{"method not allowed", "PATCH", "/v1/nodes/n1", 405, CodeMethodNotAllowed},
		{"method not allowed on collection", "DELETE", "/v1/nodes", 405, CodeMethodNotAllowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, c.method, c.path, "")
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if eb := r.errorBody(t); eb.Code != c.code {
				t.Errorf("code %q, want %q", eb.Code, c.code)
			}
			if c.status == 405 && r.header.Get("Allow") == "" {
				t.Errorf("405 without Allow header")
			}
		})
	}
}

// faultyLog fails Append and Sync with err; Read and State still work
// (a member without a leader still has its local copy).
type faultyLog struct {
	eventlog.Log
	err   error
	block bool // block until ctx ends instead
}

func (l *faultyLog) fail(ctx context.Context) error {
	if l.block {
		<-ctx.Done()
		return ctx.Err()
	}
	return l.err
}

func (l *faultyLog) Append(ctx context.Context, evs ...events.Event) ([]events.Event, error) {
	return nil, l.fail(ctx)
}
func (l *faultyLog) Sync(ctx context.Context) error { return l.fail(ctx) }

func TestLogErrors(t *testing.T) {
	cases := []struct {
		name       string
		log        *faultyLog
		method     string
		path, body string
		status     int
		code       string
		retryAfter bool
	}{
		{"no leader: write", &faultyLog{err: eventlog.ErrNoLeader}, "POST", "/v1/nodes", `{"name":"n2"}`, 503, CodeUnavailable, true},
		{"no leader: wrapped", &faultyLog{err: fmt.Errorf("forwarding: %w", eventlog.ErrNoLeader)}, "PUT", "/v1/nodes/n1/power", `{"state":"on"}`, 503, CodeUnavailable, true},
		{"no leader: linearizable read", &faultyLog{err: eventlog.ErrNoLeader}, "GET", "/v1/nodes", "", 503, CodeUnavailable, true},
		{"no leader: stale read works", &faultyLog{err: eventlog.ErrNoLeader}, "GET", "/v1/nodes?stale=1", "", 200, "", false},
		{"no leader: stale events work", &faultyLog{err: eventlog.ErrNoLeader}, "GET", "/v1/events?stale=true", "", 200, "", false},
		{"closed", &faultyLog{err: eventlog.ErrClosed}, "DELETE", "/v1/nodes/n1", "", 503, CodeUnavailable, true},
		{"deadline", &faultyLog{block: true}, "GET", "/v1/nodes/n1", "", 504, CodeTimeout, false},
		{"internal", &faultyLog{err: errors.New("disk on fire")}, "POST", "/v1/nodes", `{"name":"n2"}`, 500, CodeInternal, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mem *eventlog.Mem
			e := newEnv(t, func(cfg *Config) {
				mem = cfg.Log.(*eventlog.Mem)
				c.log.Log = mem
				cfg.Log = c.log
				cfg.RequestTimeout = 50 * time.Millisecond
			})
			e.mustAppend(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{})
			r := e.do(t, c.method, c.path, c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if c.code == "" {
				return
			}
			eb := r.errorBody(t)
			if eb.Code != c.code {
				t.Errorf("code %q, want %q", eb.Code, c.code)
			}
			if ra := r.header.Get("Retry-After"); c.retryAfter && ra != strconv.Itoa(RetryAfterSeconds) {
				t.Errorf("Retry-After %q", ra)
			}
			if c.retryAfter && !strings.Contains(eb.Message, "retry in") {
				t.Errorf("message %q does not say when to retry", eb.Message)
			}
			if c.code == CodeInternal && strings.Contains(eb.Message, "disk on fire") {
				t.Errorf("internal error leaked to the client: %q", eb.Message)
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	e := newEnv(t)
	e.cluster.ready = errors.New("catching up: applied 3 of 9")
	r := e.do(t, "GET", "/readyz", "")
	if r.status != 503 || r.errorBody(t).Code != CodeUnavailable || !strings.Contains(r.errorBody(t).Message, "catching up") {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	e.cluster.ready = eventlog.ErrNoLeader
	if r := e.do(t, "GET", "/readyz", ""); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/healthz", ""); r.status != 200 {
		t.Fatalf("healthz %d while not ready", r.status)
	}
}

func TestNoCluster(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Cluster = nil })
	if r := e.do(t, "GET", "/v1/members", ""); r.status != 501 || r.errorBody(t).Code != CodeNotImplemented {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/readyz", ""); r.status != 200 {
		t.Fatalf("readyz %d %s", r.status, r.body)
	}
}

func TestCompacted(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		m := eventlog.NewMem(2)
		t.Cleanup(func() { _ = m.Close() })
		c.Log = m
	})
	mem := e.ts.Config.Handler.(*Server).elog
	for _, n := range []string{"a", "b", "c"} {
		ev, _ := events.New(events.Source("rack1", "m1"), events.NodeRegistered, n, &events.NodeRegisteredData{})
		if _, err := mem.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, accept := range []string{"application/json", EventStreamType} {
		r := e.do(t, "GET", "/v1/events?since=1", "", "Accept", accept)
		if r.status != 410 || r.errorBody(t).Code != CodeCompacted {
			t.Fatalf("%s: got %d %s", accept, r.status, r.body)
		}
	}
	r := e.do(t, "GET", "/v1/events?since=2", "")
	var el EventList
	mustJSON(t, r.body, &el)
	if r.status != 200 || len(el.Events) != 2 {
		t.Fatalf("got %d %s", r.status, r.body)
	}
}

func TestEventsFilter(t *testing.T) {
	e := newEnv(t)
	e.mustAppend(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1})                  // 1
	e.mustAppend(t, events.NodeRegistered, "n2", &events.NodeRegisteredData{Slot: 2})                  // 2
	e.mustAppend(t, events.NodePowerDesired, "n1", &events.PowerDesiredData{State: events.PowerOff})   // 3
	e.mustAppend(t, events.NodePowerObserved, "n1", &events.PowerObservedData{State: events.PowerOff}) // 4
	e.mustAppend(t, events.NodePowerDesired, "n2", &events.PowerDesiredData{State: events.PowerOn})    // 5
	e.mustAppend(t, events.NodeRemoved, "n2", &events.NodeRemovedData{})                               // 6
	cases := []struct {
		query string
		want  []uint64
		next  uint64
	}{
		{"", []uint64{1, 2, 3, 4, 5, 6}, 7},
		{"?since=0", []uint64{1, 2, 3, 4, 5, 6}, 7},
		{"?since=4", []uint64{4, 5, 6}, 7},
		{"?since=7", nil, 7},
		{"?since=100", nil, 100},
		{"?limit=2", []uint64{1, 2}, 3},
		{"?since=3&limit=2", []uint64{3, 4}, 5},
		{"?type=node.power.*", []uint64{3, 4, 5}, 7},
		{"?type=io.racklet.node.power.*", []uint64{3, 4, 5}, 7},
		{"?type=node.power.desired", []uint64{3, 5}, 7},
		{"?type=io.racklet.node.re*", []uint64{1, 2, 6}, 7},
		{"?type=node.*", []uint64{1, 2, 3, 4, 5, 6}, 7},
		{"?type=action.*", nil, 7},
		{"?subject=n1", []uint64{1, 3, 4}, 7},
		{"?subject=n2&type=node.power.*", []uint64{5}, 7},
		{"?subject=n1&limit=2", []uint64{1, 3}, 4},
		{"?subject=n9", nil, 7},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			r := e.do(t, "GET", "/v1/events"+c.query, "")
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var el EventList
			mustJSON(t, r.body, &el)
			var got []uint64
			for _, ev := range el.Events {
				got = append(got, ev.Sequence)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) || el.Next != c.next {
				t.Errorf("got %v next %d, want %v next %d", got, el.Next, c.want, c.next)
			}
			if el.Events == nil {
				t.Errorf("events is null, want []")
			}
		})
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	id, event, data string
}

// sseStream opens a followed event stream.
func sseStream(t *testing.T, ctx context.Context, url string, hdr ...string) (<-chan sseEvent, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", EventStreamType)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != EventStreamType {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	ch := make(chan sseEvent, 100)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.data != "" || cur.event != "" {
					ch <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				cur.data = line[6:]
			}
		}
	}()
	return ch, resp
}

func recv(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}
}

func TestFollowEvents(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.KeepAlive = 20 * time.Millisecond })
	e.mustAppend(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{})
	e.mustAppend(t, events.NodeRegistered, "n2", &events.NodeRegisteredData{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := sseStream(t, ctx, e.ts.URL+"/v1/events?since=2&subject=n2")
	// Appended after subscribing; only n2's pass the filter.
	e.mustAppend(t, events.NodePowerDesired, "n1", &events.PowerDesiredData{State: events.PowerOff})
	e.mustAppend(t, events.NodePowerDesired, "n2", &events.PowerDesiredData{State: events.PowerOff})
	e.mustAppend(t, events.NodePowerObserved, "n2", &events.PowerObservedData{State: events.PowerOff})
	for _, want := range []struct {
		seq uint64
		typ events.Type
	}{{2, events.NodeRegistered}, {4, events.NodePowerDesired}, {5, events.NodePowerObserved}} {
		got := recv(t, ch)
		if got.id != strconv.FormatUint(want.seq, 10) || got.event != string(want.typ) {
			t.Fatalf("got id %s event %s, want %d %s", got.id, got.event, want.seq, want.typ)
		}
		ev, err := events.Decode([]byte(got.data))
		if err != nil {
			t.Fatal(err)
		}
		if ev.Sequence != want.seq || ev.Subject != "n2" {
			t.Fatalf("data %+v", ev)
		}
	}
	cancel()
	for range ch { // the stream ends when the client goes away
	}

	// Resume: Last-Event-ID wins over since.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	ch2, _ := sseStream(t, ctx2, e.ts.URL+"/v1/events?since=1&type=node.power.*", "Last-Event-ID", "3")
	e.mustAppend(t, events.NodePowerObserved, "n1", &events.PowerObservedData{State: events.PowerOff}) // 6
	for _, want := range []string{"4", "5", "6"} {
		if got := recv(t, ch2); got.id != want {
			t.Fatalf("resumed at id %s, want %s", got.id, want)
		}
	}
	cancel2()
	for range ch2 {
	}

	if r := e.do(t, "GET", "/v1/events", "", "Accept", EventStreamType, "Last-Event-ID", "x"); r.status != 400 {
		t.Fatalf("bad Last-Event-ID: %d %s", r.status, r.body)
	}
}

func TestFollowEndsWithErrorEventWhenLogCloses(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := sseStream(t, ctx, e.ts.URL+"/v1/events")
	e.mustAppend(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{})
	if got := recv(t, ch); got.id != "1" {
		t.Fatalf("got %+v", got)
	}
	_ = e.log.Close()
	got := recv(t, ch)
	if got.event != "error" || !strings.Contains(got.data, CodeUnavailable) {
		t.Fatalf("got %+v", got)
	}
	for range ch {
	}
}

// A stream must outlive the http.Server's ReadTimeout, which would
// otherwise cancel the request's context.
func TestFollowOutlivesReadTimeout(t *testing.T) {
	mem := eventlog.NewMem(0)
	defer mem.Close()
	srv, err := New(Config{Rack: "rack1", Member: "m1", Log: mem, KeepAlive: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv)
	hs := NewHTTPServer("", srv, nil)
	hs.ReadTimeout = 50 * time.Millisecond
	ts.Config = hs
	ts.Start()
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := sseStream(t, ctx, ts.URL+"/v1/events")
	time.Sleep(200 * time.Millisecond) // well past ReadTimeout
	ev, _ := events.New(events.Source("rack1", "m1"), events.NodeRegistered, "n1", &events.NodeRegisteredData{})
	if _, err := mem.Append(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ch); got.id != "1" {
		t.Fatalf("got %+v", got)
	}
}

func TestMetricsOpenMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) { c.Registry, c.Gatherer = reg, reg })
	e.do(t, "GET", "/v1/nodes/n9", "")
	e.do(t, "GET", "/v1/nodes", "")
	r := e.do(t, "GET", "/metrics", "", "Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q", ct)
	}
	body := string(r.body)
	for _, want := range []string{
		"# TYPE racklet_api_request_duration_seconds histogram",
		`racklet_api_request_duration_seconds_count{code="404",route="GET /v1/nodes/{name}"} 1`,
		`racklet_api_request_duration_seconds_count{code="200",route="GET /v1/nodes"} 1`,
		"# EOF",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "n9") {
		t.Errorf("metrics carry a raw path")
	}
	// A second server on the same registry reuses the histogram.
	if _, err := New(Config{Rack: "rack1", Member: "m1", Log: e.log, Registry: reg}); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	mem := eventlog.NewMem(0)
	defer mem.Close()
	for _, cfg := range []Config{
		{Rack: "", Member: "m1", Log: mem},
		{Rack: "rack1", Member: "M1", Log: mem},
		{Rack: "rack1", Member: "m1"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
