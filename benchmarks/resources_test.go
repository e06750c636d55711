package benchmarks

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/racklet/rack/benchmarks/results"
	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/pki"
	"github.com/racklet/rack/events"
)

// Phases of BenchmarkRackdResources.
const (
	resourcePhase = 20 * time.Second
	loadRate      = 1000 // events/s asked for in the load phase
	loadWorkers   = 64   // requests in flight at most
	clockTicks    = 100  // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux
)

// BenchmarkRackdResources builds rackd and runs three rackd processes on
// loopback as a rack's control plane with default settings (data dirs in
// the temporary directory, log level warn), registers five nodes (a
// "5-node rack": rackd's default --driver none runs no reconcilers, so nothing else
// happens), then measures each process's resident memory (VmRSS at the
// end, the highest VmRSS sampled every second, VmHWM: the peak since it
// started) and CPU (utime+stime over the phase, % of one core):
//
//   - idle: resourcePhase with no requests;
//   - load: resourcePhase of loadRate node.power.desired commands a second
//     through the HTTP API (client.SetPower), spread over the three
//     members, at most loadWorkers in flight; the achieved rate is reported.
//
// Also the Go runtime's view from each member's /metrics (heap in use,
// memory obtained from the OS, goroutines). Linux only (/proc). One
// operation is the whole sequence; run it with -benchtime 1x.
func BenchmarkRackdResources(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc")
	}
	for _, secure := range []bool{false, true} {
		b.Run(fmt.Sprintf("tls=%v", map[bool]string{false: "off", true: "on"}[secure]), func(b *testing.B) {
			if b.N > 1 {
				b.Skip("one operation is the whole sequence: use -benchtime 1x")
			}
			benchRackdResources(b, buildRackd(b), secure)
		})
	}
}

func buildRackd(b *testing.B) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(b.TempDir(), "rackd")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/racklet/rack/cmd/rackd").CombinedOutput(); err != nil {
		b.Fatalf("building rackd: %v\n%s", err, out)
	}
	return bin
}

func benchRackdResources(b *testing.B, bin string, secure bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := b.TempDir()
	var sec *rackdSecurity
	if secure {
		var err error
		if sec, err = newRackdSecurity(filepath.Join(dir, "pki")); err != nil {
			b.Fatalf("making the rack's certificates: %v", err)
		}
	}
	procs, err := startRackds(ctx, bin, dir, sec)
	defer stopRackds(b, procs)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: transport}
	if sec != nil {
		tr := transport.Clone()
		tr.TLSClientConfig = sec.client
		hc = &http.Client{Transport: tr}
	}
	clients := make([]*client.Client, len(procs))
	for i, p := range procs {
		if clients[i], err = client.New(p.url, client.WithHTTPClient(hc)); err != nil {
			b.Fatal(err)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	defer rcancel()
	if err := waitUntil(rctx, func() error {
		for _, p := range procs {
			select {
			case <-p.done:
				rcancel() // it will not come back
				return fmt.Errorf("%s exited: %s", p.name, p.tail())
			default:
			}
		}
		return rackdReady(rctx, clients)
	}); err != nil {
		b.Fatal(err)
	}
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	for i, n := range nodes {
		if _, err := clients[0].RegisterNode(ctx, api.RegisterNodeRequest{Name: n, Slot: i + 1}); err != nil {
			b.Fatalf("registering %s: %v", n, err)
		}
	}
	time.Sleep(2 * time.Second) // settle after start-up

	b.ResetTimer()
	idle, err := measurePhase(ctx, hc, procs, resourcePhase, nil)
	if err != nil {
		b.Fatal(err)
	}
	var (
		sent, done, failed atomic.Int64
		errs               errSample
	)
	load, err := measurePhase(ctx, hc, procs, resourcePhase, func(ctx context.Context) {
		driveLoad(ctx, clients, nodes, &sent, &done, &failed, &errs)
	})
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	achieved := float64(done.Load()) / load.wall.Seconds()
	b.ReportMetric(achieved, "events/s")
	for _, ph := range []*phaseStats{idle, load} {
		for _, p := range procs {
			s := ph.procs[p.name]
			b.ReportMetric(s.rssEnd, ph.name+"-"+p.name+"-rss-MiB")
			b.ReportMetric(s.cpuPct, ph.name+"-"+p.name+"-cpu-%")
			ms := []results.Metric{
				{Name: "rss", Value: s.rssEnd, Unit: results.UnitMiB},
				{Name: "rss-max", Value: s.rssMax, Unit: results.UnitMiB},
				{Name: "hwm", Value: s.hwm, Unit: results.UnitMiB},
				{Name: "rss-anon", Value: s.anon, Unit: results.UnitMiB},
				{Name: "rss-file", Value: s.file, Unit: results.UnitMiB},
				{Name: "cpu", Value: s.cpuPct, Unit: results.UnitPct},
			}
			ms = append(ms, s.gometrics...)
			rec := results.Record{Name: fmt.Sprintf("%s/%s/%s", b.Name(), ph.name, p.name), Samples: 1, Metrics: ms}
			if ph == load {
				rec.Metrics = append(rec.Metrics, results.Metric{Name: results.Rate, Value: achieved, Unit: "events/s"})
				rec.Notes = []string{fmt.Sprintf("asked %d events/s for %v; %d sent, %d committed, %d failed; the load generator itself used %.1f %% of a core",
					loadRate, resourcePhase, sent.Load(), done.Load(), failed.Load(), ph.selfCPU)}
			}
			writeRecord(b, rec)
		}
	}
	if testing.Verbose() {
		b.Logf("load: sent %d, committed %d, failed %d over %v; generator CPU %.1f %%", sent.Load(), done.Load(), failed.Load(), load.wall, load.selfCPU)
		for _, e := range errs.get() {
			b.Logf("failed: %v", e)
		}
	}
}

// errSample keeps the first few errors.
type errSample struct {
	mu   sync.Mutex
	errs []error
}

func (e *errSample) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) < 5 {
		e.errs = append(e.errs, err)
	}
}

func (e *errSample) get() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.errs
}

// rackdProc is one rackd process.
type rackdProc struct {
	name, url, logPath string
	cmd                *exec.Cmd
	done               chan struct{}
}

// tail is the end of the process's output.
func (p *rackdProc) tail() string {
	b, _ := os.ReadFile(p.logPath)
	return strings.TrimSpace(string(b[max(0, len(b)-2000):]))
}

// rackdSecurity is a rack CA with certificates for three members and for
// the benchmark's client (admin).
type rackdSecurity struct {
	dir    string
	client *tls.Config
}

func newRackdSecurity(dir string) (*rackdSecurity, error) {
	now := time.Now()
	ca, err := pki.NewCA("rack1", pki.ECDSAP256, 0, now)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteCA(dir, ca); err != nil {
		return nil, err
	}
	for _, name := range []string{"m1", "m2", "m3"} {
		is, err := ca.Issue(pki.Request{Kind: pki.KindMember, Name: name, Hosts: []string{"127.0.0.1", "localhost"}, Algorithm: pki.ECDSAP256}, now)
		if err != nil {
			return nil, err
		}
		if _, _, err := pki.WriteIssued(dir, is); err != nil {
			return nil, err
		}
	}
	is, err := ca.Issue(pki.Request{Kind: pki.KindClient, Name: "bench", Role: pki.RoleAdmin, Algorithm: pki.ECDSAP256}, now)
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: is.Key, Leaf: is.Cert}
	return &rackdSecurity{dir: dir, client: pki.NewTrust(ca.Cert, "rack1", nil).ClientConfig(cert)}, nil
}

func startRackds(ctx context.Context, bin, dir string, sec *rackdSecurity) ([]*rackdProc, error) {
	ports, err := loopbackPorts(9)
	if err != nil {
		return nil, err
	}
	var procs []*rackdProc
	for i, name := range []string{"m1", "m2", "m3"} {
		httpAddr, natsAddr, cluster := ports[3*i], ports[3*i+1], ports[3*i+2]
		args := []string{
			"--name", name, "--rack", "rack1", "--data-dir", filepath.Join(dir, "data", name),
			"--http", httpAddr, "--nats", natsAddr, "--nats-cluster", cluster, "--log-level", "warn",
		}
		scheme := "http://"
		if sec == nil {
			args = append(args, "--insecure")
		} else {
			scheme = "https://"
			args = append(args, "--ca", filepath.Join(sec.dir, pki.CACertFile),
				"--cert", filepath.Join(sec.dir, pki.CertFile(name)), "--key", filepath.Join(sec.dir, pki.KeyFile(name)))
		}
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", "nats://"+ports[2])
		}
		logPath := filepath.Join(dir, name+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			return procs, err
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			_ = logf.Close()
			return procs, fmt.Errorf("starting %s: %w", name, err)
		}
		p := &rackdProc{name: name, url: scheme + httpAddr, logPath: logPath, cmd: cmd, done: make(chan struct{})}
		go func() {
			_ = cmd.Wait()
			_ = logf.Close()
			close(p.done)
		}()
		procs = append(procs, p)
	}
	return procs, nil
}

func stopRackds(b *testing.B, procs []*rackdProc) {
	for _, p := range procs {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			b.Errorf("%s (pid %d) did not exit", p.name, p.cmd.Process.Pid)
		}
	}
}

// loopbackPorts returns n loopback addresses free a moment ago.
func loopbackPorts(n int) ([]string, error) {
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
			return nil, err
		}
		lns = append(lns, ln)
		out[i] = ln.Addr().String()
	}
	return out, nil
}

// rackdReady: every member ready, and the leader's member list holds the
// three as voters.
func rackdReady(ctx context.Context, clients []*client.Client) error {
	for _, c := range clients {
		if err := c.Ready(ctx); err != nil {
			return fmt.Errorf("%s: %w", c.URL(), err)
		}
	}
	ms, err := clients[0].Members(ctx)
	if err != nil {
		return err
	}
	voters := 0
	for _, m := range ms {
		if m.Voter {
			voters++
		}
	}
	if voters != len(clients) {
		return fmt.Errorf("%d of %d members are voters", voters, len(clients))
	}
	return nil
}

// driveLoad sends loadRate SetPower commands a second, paced on the wall
// clock, until ctx ends: the pacer hands them to loadWorkers workers, and
// skips (does not count as sent) what finds them all busy.
func driveLoad(ctx context.Context, clients []*client.Client, nodes []string, sent, done, failed *atomic.Int64, errs *errSample) {
	work := make(chan int)
	var wg sync.WaitGroup
	for w := range loadWorkers {
		c := clients[w%len(clients)]
		wg.Go(func() {
			for i := range work {
				// What is in flight when the phase ends completes.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
				_, err := c.SetPower(rctx, nodes[i%len(nodes)], events.PowerOn, false)
				cancel()
				if err != nil {
					failed.Add(1)
					errs.add(err)
				} else {
					done.Add(1)
				}
			}
		})
	}
	start := time.Now()
	for i := 0; ; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / loadRate)); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case work <- i:
			sent.Add(1)
		default: // every worker busy: the rate is not reached
		}
	}
	close(work)
	wg.Wait()
}

// procStats is one process's figures over a phase.
type procStats struct {
	rssEnd, rssMax, hwm float64 // MiB
	anon, file          float64 // MiB of rssEnd: anonymous memory, and file pages (the binary, bolt's mmap)
	cpuPct              float64 // of one core
	gometrics           []results.Metric
}

type phaseStats struct {
	name    string
	wall    time.Duration
	procs   map[string]*procStats
	selfCPU float64 // this process's CPU over the phase, % of one core
}

// measurePhase runs load (if any) for d while sampling the processes.
func measurePhase(ctx context.Context, hc *http.Client, procs []*rackdProc, d time.Duration, load func(context.Context)) (*phaseStats, error) {
	ph := &phaseStats{name: "idle", procs: map[string]*procStats{}}
	if load != nil {
		ph.name = "load"
	}
	ticks0 := map[string]int64{}
	for _, p := range procs {
		t, err := cpuTicks(p.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		ticks0[p.name] = t
		ph.procs[p.name] = &procStats{}
	}
	self0, err := cpuTicks(os.Getpid())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	if load != nil {
		wg.Go(func() { load(lctx) })
	}
	sample := func() error {
		for _, p := range procs {
			rss, _, err := memStatus(p.cmd.Process.Pid)
			if err != nil {
				return err
			}
			s := ph.procs[p.name]
			s.rssMax = max(s.rssMax, rss)
		}
		return nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for lctx.Err() == nil {
		if err := sample(); err != nil {
			return nil, err
		}
		select {
		case <-lctx.Done():
		case <-tick.C:
		}
	}
	wg.Wait()
	ph.wall = time.Since(start)
	for _, p := range procs {
		t, err := cpuTicks(p.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		rss, hwm, err := memStatus(p.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		s := ph.procs[p.name]
		s.cpuPct = 100 * float64(t-ticks0[p.name]) / clockTicks / ph.wall.Seconds()
		s.rssEnd, s.hwm, s.rssMax = rss, hwm, max(s.rssMax, rss)
		split, err := procStatus(p.cmd.Process.Pid, "RssAnon", "RssFile")
		if err != nil {
			return nil, err
		}
		s.anon, s.file = split[0], split[1]
		s.gometrics, err = goMetrics(ctx, hc, p.url)
		if err != nil {
			return nil, err
		}
	}
	self1, err := cpuTicks(os.Getpid())
	if err != nil {
		return nil, err
	}
	ph.selfCPU = 100 * float64(self1-self0) / clockTicks / ph.wall.Seconds()
	return ph, nil
}

// cpuTicks is utime+stime of a process, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields count from the
	// last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return u + st, nil
}

// memStatus is a process's VmRSS and VmHWM in MiB.
func memStatus(pid int) (rss, hwm float64, err error) {
	st, err := procStatus(pid, "VmRSS", "VmHWM")
	if err != nil {
		return 0, 0, err
	}
	return st[0], st[1], nil
}

// procStatus reads fields of /proc/<pid>/status in MiB.
func procStatus(pid int, fields ...string) ([]float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(fields))
	for i, f := range fields {
		v, ok := results.ProcStatusMiB(string(b), f)
		if !ok {
			return nil, fmt.Errorf("no %s in /proc/%d/status", f, pid)
		}
		out[i] = v
	}
	return out, nil
}

// goMetrics reads the Go runtime's memory figures from a member's
// Prometheus metrics.
func goMetrics(ctx context.Context, hc *http.Client, url string) ([]results.Metric, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := map[string]struct {
		name, unit string
		scale      float64
	}{
		"go_memstats_heap_inuse_bytes": {"heap-inuse", results.UnitMiB, 1.0 / (1 << 20)},
		"go_memstats_sys_bytes":        {"go-sys", results.UnitMiB, 1.0 / (1 << 20)},
		"go_goroutines":                {"goroutines", "count", 1},
	}
	var out []results.Metric
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if w, ok := want[f[0]]; ok {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				out = append(out, results.Metric{Name: w.name, Value: v * w.scale, Unit: w.unit})
			}
		}
	}
	return out, sc.Err()
}
