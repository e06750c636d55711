package bootstrap

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/pki"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
)

// TestStagesReachTheControlPlane runs the boot environment against the
// real API (in-memory log): its stage reports become node.boot.stage and
// node.boot.failed events, so the boot reconciler sees them.
func TestStagesReachTheControlPlane(t *testing.T) {
	mem := eventlog.NewMem(0)
	t.Cleanup(func() { _ = mem.Close() })
	srv, err := api.New(api.Config{Rack: "rack1", Member: "m1", Log: mem})
	if err != nil {
		t.Fatal(err)
	}
	cp := httptest.NewTLSServer(srv)
	t.Cleanup(cp.Close)
	for _, n := range []string{`{"name":"n3","slot":3}`, `{"name":"n4","slot":4}`} {
		resp, err := cp.Client().Post(cp.URL+"/v1/nodes", "application/json", strings.NewReader(n))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted {
			t.Fatalf("registering %s: %s", n, resp.Status)
		}
	}

	key := newKey(t)
	images := newTestServer(t) // shares httptest's certificate with cp
	good := sign(t, key, firmware.ComponentOS, testBootImage())
	goodURL := images.serve("/images/os.img", good)
	tamperedURL := images.serve("/images/bad.img", good)
	bad := bytes.Clone(good.image)
	bad[100] ^= 0xff
	images.put("/images/bad.img", bad)

	trust := Trust{Keys: firmware.NewKeyring(pubOf(key)), CAs: images.pool()}
	client := NewHTTPClient(trust)
	run := func(node, image string) error {
		b := &Bootstrap{
			Config: Config{Node: node, APIs: []string{cp.URL}, Image: image}, Trust: trust, Client: client,
			Booter: &recordingBooter{}, Retry: fastRetry,
			Reporter: &HTTPReporter{Client: client, APIs: []string{cp.URL}, Node: node, Retry: fastRetry},
		}
		return b.Run(context.Background())
	}
	if err := run("n3", goodURL); err != nil {
		t.Fatal(err)
	}
	if err := run("n4", tamperedURL); err == nil {
		t.Fatal("a tampered image booted")
	}

	st, err := mem.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b := st.Nodes["n3"].Boot; b == nil || b.Stage != events.BootStageImageVerified || b.ImageDigest != Digest(good.m.SHA256).String() {
		t.Errorf("n3's boot in the state: %+v, want stage image-verified with the image's digest", b)
	}
	evs, err := mem.Read(context.Background(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if !strings.HasPrefix(string(ev.Type), "io.racklet.node.boot.") {
			continue
		}
		got = append(got, ev.Subject+" "+strings.TrimPrefix(string(ev.Type), "io.racklet.node.boot."))
		if ev.Type != events.NodeBootFailed {
			continue
		}
		p, err := ev.Payload()
		if err != nil {
			t.Fatal(err)
		}
		if f, ok := p.(*events.BootFailedData); !ok || f.Stage != events.BootStageBootstrap || !strings.Contains(f.Reason, "digest mismatch") {
			t.Errorf("%s's failure: %+v, want stage bootstrap with a digest mismatch", ev.Subject, p)
		}
	}
	want := "n3 stage,n3 stage,n4 stage,n4 failed"
	if strings.Join(got, ",") != want {
		t.Errorf("boot events %v, want %s", got, want)
	}
}

// TestStagesReachASecuredControlPlane runs Main, as racklet-init does,
// against the real API with authentication on: a node with its token in
// the trust directory, one with its certificate there, one with another
// node's token on the command line and one with nothing. The first two
// get their stages recorded under their own identity; the others boot all
// the same, and nothing is recorded for them. The token never reaches
// the log.
func TestStagesReachASecuredControlPlane(t *testing.T) {
	p := newNodePKI(t)
	trust := pki.NewTrust(p.ca.Cert, "rack1", nil)
	mem := eventlog.NewMem(0)
	t.Cleanup(func() { _ = mem.Close() })
	srv, err := api.New(api.Config{Rack: "rack1", Member: "m1", Log: mem, Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	member, err := p.ca.Issue(pki.Request{Kind: pki.KindMember, Name: "m1", Hosts: []string{"127.0.0.1"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cp := httptest.NewUnstartedServer(srv)
	cp.TLS = api.ServerTLS(trust, tls.Certificate{Certificate: [][]byte{member.Cert.Raw}, PrivateKey: member.Key, Leaf: member.Cert})
	cp.StartTLS()
	t.Cleanup(cp.Close)
	admin, _, err := p.ca.IssueToken("admin", pki.RoleAdmin, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	adminClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool()}}}
	defer adminClient.CloseIdleConnections()
	for i, n := range []string{"n3", "n4", "n5", "n6"} {
		req, _ := http.NewRequest("POST", cp.URL+"/v1/nodes", strings.NewReader(fmt.Sprintf(`{"name":%q,"slot":%d}`, n, i+3)))
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := adminClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("registering %s: %s", n, resp.Status)
		}
	}
	n3tok, _, err := p.ca.IssueNodeToken("n3", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	key := newKey(t)
	images := newTestServer(t)
	image := images.serve("/images/os.img", sign(t, key, firmware.ComponentOS, testBootImage()))
	caPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Cert.Raw}), images.caPEM()...)

	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	run := func(node string, setup func(trustDir string), cmdline string) {
		t.Helper()
		dir := writeTrustDir(t, caPEM, pubOf(key))
		if setup != nil {
			setup(dir)
		}
		files := t.TempDir()
		cfgFile, cmdFile := filepath.Join(files, "bootstrap.json"), filepath.Join(files, "cmdline")
		writeFile(t, cfgFile, `{"node":"`+node+`","api":["`+cp.URL+`"],"trustDir":"`+dir+`"}`)
		writeFile(t, cmdFile, "racklet.image="+image+" "+cmdline+"\n")
		booter := &recordingBooter{}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Main(ctx, MainOptions{ConfigFile: cfgFile, CmdlineFile: cmdFile, Booter: booter, Logger: logger}); err != nil {
			t.Fatalf("%s: Main = %v", node, err)
		}
		if len(booter.booted()) != 1 {
			t.Fatalf("%s did not boot", node)
		}
	}
	run("n3", func(dir string) { writeFile(t, filepath.Join(dir, TokenFile), n3tok+"\n") }, "")
	run("n4", func(dir string) { p.writeNodeCert(t, dir, "n4") }, "")
	run("n5", nil, "racklet.token="+n3tok)
	run("n6", nil, "")

	evs, err := mem.Read(context.Background(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if strings.HasPrefix(string(ev.Type), "io.racklet.node.boot.") {
			got = append(got, ev.Subject+" "+strings.TrimPrefix(string(ev.Type), "io.racklet.node.boot.")+" by "+ev.Actor)
		}
	}
	want := "n3 stage by node/n3,n3 stage by node/n3,n4 stage by node/n4,n4 stage by node/n4"
	if strings.Join(got, ",") != want {
		t.Errorf("boot events %v, want %s", got, want)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if strings.Contains(out, n3tok) || strings.Contains(out, strings.Split(n3tok, ".")[2]) {
		t.Errorf("the token is in the log:\n%s", out)
	}
	for _, want := range []string{
		"token_from=" + `"kernel command line"`, "certificate=n4", "stage reports carry no credentials",
		"which may only POST /v1/nodes/n3/boot/stages", // n5 with n3's token: 403
		"401 Unauthorized", // n6 with nothing
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
