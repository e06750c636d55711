package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

type fakeCluster struct{}

func (fakeCluster) Members(ctx context.Context) ([]api.MemberInfo, error) {
	return []api.MemberInfo{
		{Name: "m1", RaftAddress: "10.0.0.1:7481", APIURL: "http://10.0.0.1:7480", Voter: true, Leader: true, AppliedIndex: 7, CommitIndex: 7},
		{Name: "m2", RaftAddress: "10.0.0.2:7481", Voter: true, AppliedIndex: 6, CommitIndex: 7},
	}, nil
}
func (fakeCluster) RemoveMember(ctx context.Context, name string) error { return nil }
func (fakeCluster) Ready(ctx context.Context) error                     { return nil }

// syncBuffer is a bytes.Buffer safe for a command running in a goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rack struct {
	url string
	log *eventlog.Mem
}

func newRack(t *testing.T) *rack {
	t.Helper()
	mem := eventlog.NewMem(0)
	t.Cleanup(func() { _ = mem.Close() })
	srv, err := api.New(api.Config{Rack: "rack1", Member: "m1", Log: mem, Cluster: fakeCluster{}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	r := &rack{url: ts.URL, log: mem}
	r.append(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1, Member: "m1"})
	r.append(t, events.NodeRegistered, "n2", &events.NodeRegisteredData{Slot: 2})
	r.append(t, events.NodePowerObserved, "n1", &events.PowerObservedData{State: events.PowerOn})
	return r
}

func (r *rack) append(t *testing.T, typ events.Type, subject string, p events.Payload) {
	t.Helper()
	ev, err := events.New(events.Source("rack1", "m1"), typ, subject, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.log.Append(context.Background(), ev); err != nil {
		t.Error(err)
	}
}

// run executes rackctl against the rack.
func (r *rack) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return r.runCtx(t, context.Background(), args...)
}

func (r *rack) runCtx(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	var out, errb syncBuffer
	env := map[string]string{ServerEnv: r.url}
	code := Main(ctx, args, &out, &errb, func(k string) string { return env[k] })
	return out.String(), errb.String(), code
}

func TestReadCommands(t *testing.T) {
	r := newRack(t)
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"get nodes table", []string{"get", "nodes"}, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 {
				t.Fatalf("want a header and 2 rows:\n%s", out)
			}
			if f := strings.Fields(lines[0]); strings.Join(f, " ") != "NAME SLOT MEMBER DESIRED OBSERVED LAST-ACTION SEEN" {
				t.Errorf("header %q", lines[0])
			}
			if f := strings.Fields(lines[1]); len(f) != 7 || f[0] != "n1" || f[1] != "1" || f[2] != "m1" || f[3] != "-" || f[4] != "on" {
				t.Errorf("row %q", lines[1])
			}
			if f := strings.Fields(lines[2]); len(f) != 7 || f[0] != "n2" || f[4] != "-" {
				t.Errorf("row %q", lines[2])
			}
			// Aligned: every column starts at the same offset on every line.
			if strings.Index(lines[0], "OBSERVED") != strings.Index(lines[1], "on ") {
				t.Errorf("columns not aligned:\n%s", out)
			}
		}},
		{"get nodes json", []string{"get", "nodes", "-o", "json"}, func(t *testing.T, out string) {
			var nodes []state.Node
			if err := json.Unmarshal([]byte(out), &nodes); err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			if len(nodes) != 2 || nodes[0].Name != "n1" || nodes[0].Observed != events.PowerOn {
				t.Errorf("got %+v", nodes)
			}
		}},
		{"get nodes yaml", []string{"get", "nodes", "-o", "yaml", "--stale"}, func(t *testing.T, out string) {
			var nodes []map[string]any
			if err := yaml.Unmarshal([]byte(out), &nodes); err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			if len(nodes) != 2 || nodes[0]["name"] != "n1" || nodes[0]["slot"] != 1 || nodes[0]["observed"] != "on" {
				t.Errorf("got %v", nodes)
			}
		}},
		{"get node yaml", []string{"get", "node", "n2", "-o", "yaml"}, func(t *testing.T, out string) {
			if !strings.Contains(out, "name: n2\n") || !strings.Contains(out, "registeredSequence: 2\n") {
				t.Errorf("got:\n%s", out)
			}
		}},
		{"get node table", []string{"get", "node", "n1"}, func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "\nn1 ") {
				t.Errorf("got:\n%s", out)
			}
		}},
		{"get members table", []string{"get", "members"}, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || strings.Fields(lines[1])[1] != "yes" {
				t.Errorf("got:\n%s", out)
			}
		}},
		{"get members json", []string{"get", "members", "-o", "json"}, func(t *testing.T, out string) {
			var ms []api.MemberInfo
			if err := json.Unmarshal([]byte(out), &ms); err != nil || len(ms) != 2 || !ms[0].Leader {
				t.Errorf("got %v %v:\n%s", ms, err, out)
			}
		}},
		{"events table", []string{"events", "--subject", "n1"}, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "SEQ") || strings.Fields(lines[1])[2] != "node.registered" || strings.Fields(lines[2])[0] != "3" {
				t.Errorf("got:\n%s", out)
			}
		}},
		{"events json filtered", []string{"events", "--type", "node.power.*", "-o", "json"}, func(t *testing.T, out string) {
			var el api.EventList
			if err := json.Unmarshal([]byte(out), &el); err != nil || len(el.Events) != 1 || el.Events[0].Sequence != 3 || el.Next != 4 {
				t.Errorf("got %+v %v:\n%s", el, err, out)
			}
		}},
		{"events yaml since limit", []string{"events", "--since", "2", "--limit", "1", "-o", "yaml"}, func(t *testing.T, out string) {
			var el map[string]any
			if err := yaml.Unmarshal([]byte(out), &el); err != nil {
				t.Fatal(err)
			}
			evs, _ := el["events"].([]any)
			if len(evs) != 1 || evs[0].(map[string]any)["sequence"] != 2 || el["next"] != 3 {
				t.Errorf("got:\n%s", out)
			}
		}},
		{"describe node table", []string{"describe", "node", "n1"}, func(t *testing.T, out string) {
			for _, want := range []string{"Name:", "n1", "Observed power:", "on (sequence 3", "Events:", "node.registered", "node.power.observed"} {
				if !strings.Contains(out, want) {
					t.Errorf("lacks %q:\n%s", want, out)
				}
			}
		}},
		{"describe node json", []string{"describe", "node", "n1", "-o", "json"}, func(t *testing.T, out string) {
			var d NodeDescription
			if err := json.Unmarshal([]byte(out), &d); err != nil || d.Node.Name != "n1" || len(d.Events) != 2 {
				t.Errorf("got %+v %v:\n%s", d, err, out)
			}
		}},
		{"version json", []string{"version", "-o", "json"}, func(t *testing.T, out string) {
			var v VersionInfo
			if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version != Version || v.GoVersion == "" {
				t.Errorf("got %+v %v", v, err)
			}
		}},
		{"completion", []string{"completion", "bash"}, func(t *testing.T, out string) {
			if !strings.Contains(out, "rackctl") {
				t.Errorf("no completion script")
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := r.run(t, c.args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			c.check(t, out)
		})
	}
}

func TestWriteCommands(t *testing.T) {
	r := newRack(t)
	out, errOut, code := r.run(t, "register", "node", "n3", "--slot", "3", "--member", "m3")
	if code != 0 || out != "node n3 registered (sequence 4)\n" {
		t.Fatalf("register: exit %d, %q %q", code, out, errOut)
	}
	out, _, code = r.run(t, "power", "off", "n3", "--force", "-o", "json")
	var cr api.CommandResponse
	if code != 0 || json.Unmarshal([]byte(out), &cr) != nil || cr.Sequence != 5 || cr.Event.Type != events.NodePowerDesired {
		t.Fatalf("power: exit %d, %q", code, out)
	}
	out, _, code = r.run(t, "power", "cycle", "n3", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "sequence: 6\n") || !strings.Contains(out, "state: cycle") {
		t.Fatalf("power cycle: exit %d, %q", code, out)
	}
	out, _, code = r.run(t, "remove", "node", "n3", "--reason", "repair")
	if code != 0 || out != "node n3 removed (sequence 7)\n" {
		t.Fatalf("remove: exit %d, %q", code, out)
	}
	out, _, code = r.run(t, "remove", "member", "m2")
	if code != 0 || out != "member m2 removed\n" {
		t.Fatalf("remove member: exit %d, %q", code, out)
	}
}

func TestErrors(t *testing.T) {
	r := newRack(t)
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown node", []string{"get", "node", "n9"}, 1, "rackctl: not_found: node \"n9\" is not registered\n"},
		{"power unknown node", []string{"power", "on", "n9"}, 1, "rackctl: not_found: node \"n9\" is not registered\n"},
		{"register twice", []string{"register", "node", "n1"}, 1, "rackctl: conflict: node \"n1\" is already registered\n"},
		{"invalid name", []string{"register", "node", "N_1"}, 1, "rackctl: invalid: invalid name: "},
		{"bad output", []string{"get", "nodes", "-o", "xml"}, 2, "rackctl: invalid --output \"xml\""},
		{"bad power state", []string{"power", "sideways", "n1"}, 2, "invalid power state"},
		{"missing argument", []string{"get", "node"}, 2, "wants 1 argument"},
		{"unknown flag", []string{"get", "nodes", "--colour"}, 2, "unknown flag"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"bad limit", []string{"events", "--limit", "0"}, 2, "invalid --limit"},
		{"bad server", []string{"--server", "127.0.0.1:1", "get", "nodes"}, 2, "server URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := r.run(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errOut)
			}
			if !strings.Contains(errOut, c.stderr) {
				t.Errorf("stderr %q, want %q", errOut, c.stderr)
			}
			if out != "" {
				t.Errorf("stdout %q on error", out)
			}
		})
	}
}

func TestServerFromEnvAndConnectionError(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"get", "nodes", "--timeout", "5s"}, &out, &errb, func(k string) string {
		if k == ServerEnv {
			return "http://127.0.0.1:1"
		}
		return ""
	})
	if code != 1 || !strings.HasPrefix(errb.String(), "rackctl: contacting http://127.0.0.1:1: ") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// reconciler is a stand-in power reconciler: it reports the desired power
// as observed; for a cycle it records the cycle action (the cycle is an
// instant reset: off is never observed) and then on.
func (r *rack) reconciler(t *testing.T, ctx context.Context) {
	go func() {
		_ = r.log.Watch(ctx, 1, func(ev events.Event) error {
			if ev.Type != events.NodePowerDesired {
				return nil
			}
			p, _ := ev.Payload()
			switch st := p.(*events.PowerDesiredData).State; st {
			case events.PowerCycle:
				id := events.NewID()
				r.append(t, events.ActionStarted, ev.Subject, &events.ActionStartedData{Action: id, Reconciler: "power", Operation: state.OpPowerCycle, Target: ev.Sequence})
				r.append(t, events.ActionSucceeded, ev.Subject, &events.ActionSucceededData{Action: id})
				r.append(t, events.NodePowerObserved, ev.Subject, &events.PowerObservedData{State: events.PowerOn})
			default:
				r.append(t, events.NodePowerObserved, ev.Subject, &events.PowerObservedData{State: st})
			}
			return nil
		})
	}()
}

func TestPowerWait(t *testing.T) {
	r := newRack(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.reconciler(t, ctx)
	for _, c := range []struct{ state, want string }{
		{"off", "node n2: power off done\n"},
		{"on", "node n2: power on done\n"},
		{"cycle", "node n2: power cycle done\n"},
		{"on", "node n2: power on done\n"}, // already on
	} {
		out, errOut, code := r.run(t, "power", c.state, "n2", "--wait", "--wait-timeout", "30s")
		if code != 0 || !strings.HasSuffix(out, c.want) {
			t.Fatalf("power %s: exit %d, stdout %q, stderr %q", c.state, code, out, errOut)
		}
	}
}

func TestPowerWaitRefused(t *testing.T) {
	r := newRack(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const reason = "quorum guard: n1 hosts control-plane member m1; powering it off would leave 1 of 3 members up, fewer than the quorum of 2"
	// A stand-in power reconciler that refuses every power-off.
	go func() {
		_ = r.log.Watch(ctx, 1, func(ev events.Event) error {
			if ev.Type != events.NodePowerDesired {
				return nil
			}
			p, _ := ev.Payload()
			if st := p.(*events.PowerDesiredData).State; st == events.PowerOff {
				r.append(t, events.NodePowerRefused, ev.Subject, &events.PowerRefusedData{State: st, Reason: reason + " (use force to override)", Target: ev.Sequence})
			}
			return nil
		})
	}()
	out, errOut, code := r.run(t, "power", "off", "n1", "--wait", "--wait-timeout", "30s")
	if code != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.HasPrefix(out, "node n1: power off requested") {
		t.Errorf("stdout %q", out)
	}
	if want := "rackctl: refused: " + reason + " (use --force)\n"; errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
}

func TestPowerWaitTimeout(t *testing.T) {
	r := newRack(t) // no reconciler: nothing will be observed
	out, errOut, code := r.run(t, "power", "off", "n1", "--wait", "--wait-timeout", "100ms")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(out, "node n1: power off requested") {
		t.Errorf("stdout %q", out)
	}
	if !strings.Contains(errOut, "timed out after 100ms waiting for node n1: desired power off, observed on") {
		t.Errorf("stderr %q", errOut)
	}
}

func TestEventsFollow(t *testing.T) {
	r := newRack(t)
	for _, format := range []string{"table", "json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- Main(ctx, []string{"--server", r.url, "events", "--follow", "--subject", "n2", "-o", format}, &out, &errb, nil)
			}()
			want := map[string]string{"table": "node.power.desired", "json": `"type":"io.racklet.node.power.desired"`, "yaml": "type: io.racklet.node.power.desired"}[format]
			r.append(t, events.NodePowerDesired, "n2", &events.PowerDesiredData{State: events.PowerOff})
			if err := waitFor(10*time.Second, func() error {
				if !strings.Contains(out.String(), want) {
					return errors.New("not yet")
				}
				return nil
			}); err != nil {
				t.Fatalf("never saw %q in:\n%s", want, out.String())
			}
			cancel()
			if code := <-done; code != 0 || errb.String() != "" {
				t.Fatalf("exit %d, stderr %q", code, errb.String())
			}
			if format == "json" {
				for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
					if _, err := events.Decode([]byte(line)); err != nil {
						t.Errorf("line %q: %v", line, err)
					}
				}
			}
		})
	}
}

func waitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
