package bootstrap

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/eventlog"
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
