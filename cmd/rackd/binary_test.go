package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/events"
)

// TestBinaries runs the built rackd and rackctl as a user would: three
// rackd processes on loopback, writes through rackctl against different
// members, SIGKILL of the leader, more writes through the
// survivors, then a restart of the killed member on its data dir. The
// members' event logs, as listed by `rackctl events -o json`, must agree
// and hold every acknowledged command.
func TestBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	goBin := findGo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dir := t.TempDir()
	bin := buildBinaries(ctx, t, goBin, filepath.Join(dir, "bin"))
	rk := &binRack{t: t, bin: bin, dir: dir, procs: map[string]*rackdProc{}}
	t.Cleanup(rk.cleanup)

	ports := freePorts(t, 9)
	for i, name := range []string{"m1", "m2", "m3"} {
		p := &rackdProc{
			name:    name,
			http:    ports[3*i],
			nats:    ports[3*i+1],
			cluster: ports[3*i+2],
			dataDir: filepath.Join(dir, "data", name),
		}
		p.args = []string{
			"--name", name, "--rack", "rack1", "--data-dir", p.dataDir,
			"--http", p.http, "--nats", p.nats, "--nats-cluster", p.cluster,
			"--heartbeat-timeout", "500ms", "--election-timeout", "500ms", "--log-level", "info", "--insecure",
		}
		if i == 0 {
			p.args = append(p.args, "--bootstrap")
		} else {
			p.args = append(p.args, "--join", "nats://"+rk.procs["m1"].cluster)
		}
		rk.procs[name] = p
		rk.order = append(rk.order, name)
		rk.start(ctx, p)
	}
	rk.waitReady(ctx, 90*time.Second, rk.order...)

	w := &cliWriter{rack: rk}
	const before, after = 100, 50
	for i := 0; i < before; i++ {
		if err := w.write(ctx, i, rk.order); err != nil {
			t.Fatal(err)
		}
	}

	leader := rk.leader(ctx, rk.order)
	t.Logf("leader is %s; killing it with SIGKILL", leader)
	rk.kill(leader)
	var survivors []string
	for _, n := range rk.order {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	for i := before; i < before+after; i++ {
		if err := w.write(ctx, i, survivors); err != nil {
			t.Fatal(err)
		}
	}
	acked := w.acked
	if len(acked) < (before+after)*9/10 {
		t.Fatalf("only %d of %d commands acknowledged", len(acked), before+after)
	}
	t.Logf("%d commands acknowledged, %d attempts retried, %d registrations answered conflict after a lost answer", len(acked), w.retries, w.conflicts)
	for _, e := range w.retryErrs {
		t.Logf("retried: %s", e)
	}
	ref := rk.agree(ctx, 60*time.Second, survivors, acked)
	t.Logf("survivors %v agree on %d events", survivors, len(ref))

	rk.start(ctx, rk.procs[leader])
	rk.waitReady(ctx, 90*time.Second, rk.order...)
	all := rk.agree(ctx, 60*time.Second, rk.order, acked)
	if len(all) < len(ref) {
		t.Fatalf("after the restart the log has %d events, before it %d", len(all), len(ref))
	}
	for i := range ref {
		if ref[i].ID != all[i].ID {
			t.Fatalf("event %d changed across the restart: id %s, then %s", i+1, ref[i].ID, all[i].ID)
		}
	}
	t.Logf("restarted %s caught up: all members agree on %d events", leader, len(all))

	// SIGTERM shuts a member down cleanly: exit status 0, and it comes
	// back from its data dir.
	leader = rk.leader(ctx, rk.order)
	rk.terminate(leader)
	rk.start(ctx, rk.procs[leader])
	rk.waitReady(ctx, 90*time.Second, rk.order...)
	rk.agree(ctx, 60*time.Second, rk.order, acked)
}

// terminate sends SIGTERM to a member and checks it exits cleanly.
func (r *binRack) terminate(name string) {
	r.t.Helper()
	p := r.procs[name]
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatalf("sending SIGTERM to %s: %v", name, err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		r.t.Fatalf("%s did not exit within 30s of SIGTERM", name)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		r.t.Fatalf("%s exited with status %d after SIGTERM, want 0 (%s)", name, code, cmd.ProcessState)
	}
}

// findGo returns the go command that runs this test, or the one on PATH.
func findGo(t *testing.T) string {
	t.Helper()
	exe := "go"
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	if p := filepath.Join(runtime.GOROOT(), "bin", exe); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binaries with")
	}
	return p
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// binaries are the built commands' paths.
type binaries struct{ rackd, rackctl string }

func buildBinaries(ctx context.Context, t *testing.T, goBin, dir string) binaries {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	b := binaries{rackd: filepath.Join(dir, "rackd"), rackctl: filepath.Join(dir, "rackctl")}
	for _, x := range []struct{ out, pkg string }{
		{b.rackd, "github.com/racklet/rack/cmd/rackd"},
		{b.rackctl, "github.com/racklet/rack/cmd/rackctl"},
	} {
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", x.out, x.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", x.pkg, err, out)
		}
	}
	return b
}

// freePorts returns n distinct loopback addresses that were free a moment
// ago: all are held open together, then closed.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	out := make([]string, n)
	for i := range out {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		lns = append(lns, ln)
		out[i] = ln.Addr().String()
	}
	return out
}

// rackdProc is one rackd process, restartable with the same flags.
type rackdProc struct {
	name                string
	http, nats, cluster string
	dataDir             string
	args                []string
	mu                  sync.Mutex
	cmd                 *exec.Cmd
	done                chan struct{}
	stderrPaths         []string
	starts              int
}

func (p *rackdProc) url() string { return "http://" + p.http }

// binRack is a control plane of rackd processes.
type binRack struct {
	t     *testing.T
	bin   binaries
	dir   string
	order []string
	procs map[string]*rackdProc
}

func (r *binRack) start(ctx context.Context, p *rackdProc) {
	r.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	path := filepath.Join(r.dir, fmt.Sprintf("%s.%d.stderr", p.name, p.starts))
	f, err := os.Create(path)
	if err != nil {
		r.t.Fatal(err)
	}
	p.stderrPaths = append(p.stderrPaths, path)
	// The context bounds the process's life should the test hang; cleanup
	// kills it in any case.
	cmd := exec.CommandContext(ctx, r.bin.rackd, p.args...)
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		r.t.Fatalf("starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// kill SIGKILLs p and waits until it is gone.
func (r *binRack) kill(name string) {
	r.t.Helper()
	p := r.procs[name]
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		r.t.Errorf("killing %s: %v", name, err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		r.t.Errorf("%s (pid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
	}
}

func (r *binRack) exited(name string) (bool, string) {
	p := r.procs[name]
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return true, p.cmd.ProcessState.String()
	default:
		return false, ""
	}
}

// cleanup kills every process and, if the test failed, prints their
// stderr (the tail of it).
func (r *binRack) cleanup() {
	for _, n := range r.order {
		r.kill(n)
	}
	if !r.t.Failed() {
		return
	}
	const tail = 32 << 10
	for _, n := range r.order {
		for _, path := range r.procs[n].stderrPaths {
			b, err := os.ReadFile(path)
			if err != nil {
				r.t.Logf("reading %s: %v", path, err)
				continue
			}
			cut := ""
			if len(b) > tail {
				b, cut = b[len(b)-tail:], " (last 32 KiB)"
			}
			r.t.Logf("===== %s%s =====\n%s", filepath.Base(path), cut, b)
		}
	}
}

// rackctl runs rackctl against server and returns its stdout.
func (r *binRack) rackctl(ctx context.Context, server string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	full := append([]string{"--server", server, "--timeout", "10s"}, args...)
	cmd := exec.CommandContext(ctx, r.bin.rackctl, full...)
	cmd.Env = append(os.Environ(), "RACK_SERVER=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &cliError{args: full, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}

// cliError is a failed rackctl run.
type cliError struct {
	args   []string
	err    error
	stderr string
}

func (e *cliError) Error() string {
	return fmt.Sprintf("rackctl %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}

// waitFor retries f until it succeeds or timeout (or ctx) ends.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("after %v: %v", timeout, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitReady waits until each named member answers /readyz and the
// members list shows them all as voters, with a leader.
func (r *binRack) waitReady(ctx context.Context, timeout time.Duration, names ...string) {
	r.t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	waitFor(ctx, r.t, timeout, func() error {
		for _, n := range names {
			if gone, st := r.exited(n); gone {
				return fmt.Errorf("%s exited: %s", n, st)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.procs[n].url()+"/readyz", nil)
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: /readyz answers %s", n, resp.Status)
			}
		}
		for _, n := range names {
			ms, err := r.members(ctx, n)
			if err != nil {
				return err
			}
			leaders, voters := 0, map[string]bool{}
			for _, m := range ms {
				if m.Leader {
					leaders++
				}
				if m.Voter {
					voters[m.Name] = true
				}
			}
			if leaders != 1 {
				return fmt.Errorf("%s shows %d leaders: %+v", n, leaders, ms)
			}
			for _, want := range names {
				if !voters[want] {
					return fmt.Errorf("%s does not show %s as a voter: %+v", n, want, ms)
				}
			}
		}
		return nil
	})
}

func (r *binRack) members(ctx context.Context, via string) ([]api.MemberInfo, error) {
	out, err := r.rackctl(ctx, r.procs[via].url(), "get", "members", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ms []api.MemberInfo
	if err := json.Unmarshal(out, &ms); err != nil {
		return nil, fmt.Errorf("parsing rackctl get members -o json: %w\n%s", err, out)
	}
	return ms, nil
}

// leader names the leader as `rackctl get members` on the given members
// shows it (they must agree).
func (r *binRack) leader(ctx context.Context, via []string) string {
	r.t.Helper()
	var leader string
	waitFor(ctx, r.t, 30*time.Second, func() error {
		leader = ""
		for _, v := range via {
			ms, err := r.members(ctx, v)
			if err != nil {
				return err
			}
			var l string
			for _, m := range ms {
				if m.Leader {
					l = m.Name
				}
			}
			if l == "" || (leader != "" && l != leader) {
				return fmt.Errorf("no agreed leader: %s shows %q, before %q", v, l, leader)
			}
			leader = l
		}
		if _, ok := r.procs[leader]; !ok {
			return fmt.Errorf("leader %q is not one of the processes", leader)
		}
		return nil
	})
	return leader
}

// events lists the whole log through `rackctl events -o json` on member.
func (r *binRack) events(ctx context.Context, member string) ([]events.Event, error) {
	out, err := r.rackctl(ctx, r.procs[member].url(), "events", "-o", "json", "--limit", fmt.Sprint(api.MaxEventLimit))
	if err != nil {
		return nil, err
	}
	var l api.EventList
	if err := json.Unmarshal(out, &l); err != nil {
		return nil, fmt.Errorf("parsing rackctl events -o json on %s: %w", member, err)
	}
	if len(l.Events) >= api.MaxEventLimit {
		return nil, fmt.Errorf("%s: the log outgrew one listing (%d events)", member, len(l.Events))
	}
	return l.Events, nil
}

// agree waits until the named members list the same log: contiguous
// sequences from 1, every acknowledged event at its sequence, the same
// events in the same order. It returns that log.
func (r *binRack) agree(ctx context.Context, timeout time.Duration, names []string, acked []events.Event) []events.Event {
	r.t.Helper()
	var ref []events.Event
	waitFor(ctx, r.t, timeout, func() error {
		ref = nil
		for _, n := range names {
			evs, err := r.events(ctx, n)
			if err != nil {
				return err
			}
			if err := checkLog(evs, acked); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			if ref == nil {
				ref = evs
				continue
			}
			if len(evs) != len(ref) {
				return fmt.Errorf("%s lists %d events, %s %d", n, len(evs), names[0], len(ref))
			}
			for i := range evs {
				if evs[i].ID != ref[i].ID || evs[i].Type != ref[i].Type || evs[i].Subject != ref[i].Subject {
					return fmt.Errorf("%s and %s disagree at sequence %d: %s %s/%s vs %s %s/%s", n, names[0], i+1,
						evs[i].ID, evs[i].Type, evs[i].Subject, ref[i].ID, ref[i].Type, ref[i].Subject)
				}
			}
		}
		return nil
	})
	return ref
}

// checkLog checks that evs is contiguous from sequence 1 and holds every
// acknowledged event at its acknowledged sequence.
func checkLog(evs, acked []events.Event) error {
	for i, ev := range evs {
		if ev.Sequence != uint64(i)+1 {
			return fmt.Errorf("event %d of the listing has sequence %d: a hole or a reordering", i, ev.Sequence)
		}
	}
	for _, a := range acked {
		if a.Sequence == 0 || a.Sequence > uint64(len(evs)) {
			return fmt.Errorf("acknowledged event %d (id %s, %s %s) missing: the log ends at %d", a.Sequence, a.ID, a.Type, a.Subject, len(evs))
		}
		if got := evs[a.Sequence-1]; got.ID != a.ID {
			return fmt.Errorf("acknowledged event %d is %s (%s %s), the log holds %s (%s %s) there",
				a.Sequence, a.ID, a.Type, a.Subject, got.ID, got.Type, got.Subject)
		}
	}
	return nil
}

// cliWriter performs commands through rackctl and keeps every
// acknowledged event.
type cliWriter struct {
	rack      *binRack
	acked     []events.Event
	conflicts int
	retries   int
	// retryErrs holds the first few errors that made a command retry.
	retryErrs []string
}

// write performs command i: on the first of every 5 it registers node
// n<i/5>, else it sets that node's power. It runs rackctl against
// members[i%len] first and tries the others in turn until one
// acknowledges (a member may fail while the rack elects a new leader).
func (w *cliWriter) write(ctx context.Context, i int, members []string) error {
	node := fmt.Sprintf("n%d", i/5)
	var args []string
	if i%5 == 0 {
		args = []string{"register", "node", node, "--slot", fmt.Sprint(i/5 + 1), "-o", "json"}
	} else {
		st := events.PowerOn
		if i%2 == 0 {
			st = events.PowerOff
		}
		args = []string{"power", string(st), node, "-o", "json"}
	}
	var lastErr error
	for attempt := 0; attempt < 60 && ctx.Err() == nil; attempt++ {
		m := members[(i+attempt)%len(members)]
		out, err := w.rack.rackctl(ctx, w.rack.procs[m].url(), args...)
		if err == nil {
			var resp api.CommandResponse
			if err := json.Unmarshal(out, &resp); err != nil {
				return fmt.Errorf("command %d on %s: parsing rackctl output: %w\n%s", i, m, err, out)
			}
			if resp.Sequence == 0 || resp.Sequence != resp.Event.Sequence || resp.Event.ID == "" || resp.Event.Subject != node {
				return fmt.Errorf("command %d on %s: odd answer %s", i, m, out)
			}
			w.acked = append(w.acked, resp.Event)
			return nil
		}
		var ce *cliError
		if i%5 == 0 && attempt > 0 && errors.As(err, &ce) && strings.Contains(ce.stderr, api.CodeConflict+":") {
			// An earlier attempt of this registration was committed
			// though its answer was lost.
			w.conflicts++
			return nil
		}
		lastErr = err
		w.retries++
		if len(w.retryErrs) < 5 {
			w.retryErrs = append(w.retryErrs, fmt.Sprintf("command %d on %s: %v", i, m, err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("command %d: %w", i, errors.Join(lastErr, ctx.Err()))
}
