package cli

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers"
	"github.com/racklet/rack/reconcilers/boot"
	"github.com/racklet/rack/reconcilers/power"
	"github.com/racklet/rack/sim"
	"github.com/racklet/rack/sim/imagehost"
)

// TestBootWait runs `rackctl boot … --wait` against the power and boot
// reconcilers on the simulator: a good image boots to ready, stage by
// stage; a badly signed one is refused.
func TestBootWait(t *testing.T) {
	r := newRack(t)
	quiet := slog.New(slog.DiscardHandler)
	rack, err := sim.New(sim.Config{Slots: 2, StartOn: true, Logger: quiet,
		Timings: sim.Timings{Firmware: 50 * time.Millisecond, Bootstrap: 100 * time.Millisecond, OS: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rack.Close() })
	images, err := imagehost.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(images.Close)
	pr, err := power.New(power.Config{Log: r.log, Backplane: rack.Backplane(), Rack: "rack1", Member: "m1",
		ObserveInterval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	br, err := boot.New(boot.Config{Log: r.log, Backplane: rack.Backplane(), Rack: "rack1", Member: "m1",
		Keyring: images.Keyring(), RootCAs: images.Roots(), PollInterval: 10 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := reconcilers.New(reconcilers.Config{Log: r.log, Leadership: reconcilers.NewLeaderSwitch(true), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range []reconcilers.Reconciler{pr, br} {
		if err := rt.Register(rc); err != nil {
			t.Fatal(err)
		}
	}
	r.append(t, events.NodePowerDesired, "n2", &events.PowerDesiredData{State: events.PowerOn})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runtime: %v", err)
		}
	})

	img, err := images.Publish("os/good.img", []byte("a good image"), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := r.run(t, "boot", "n2", "--image", img.URL, "--digest", img.Digest, "--key", img.KeyID, "--wait", "--wait-timeout", "30s")
	if code != 0 || !strings.Contains(out, "node n2: boot network "+img.URL+" requested") || !strings.HasSuffix(out, "node n2: stage ready\nnode n2: booted\n") {
		t.Fatalf("boot: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Stages shorter than the reconciler's poll may pass unseen; the
	// start and the end are always there.
	if !strings.Contains(out, "image verified; boot source network set, power cycle asked") {
		t.Errorf("boot did not show its progress: %q", out)
	}

	// The same image under another key id: the manifest names another key.
	out, errOut, code = r.run(t, "boot", "n2", "--image", img.URL, "--digest", img.Digest, "--key", "0123456789abcdef", "--wait", "--wait-timeout", "30s")
	if code != 1 || !strings.Contains(errOut, "refused: the manifest is signed with key "+img.KeyID) {
		t.Fatalf("refused boot: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestBootUsage(t *testing.T) {
	r := newRack(t)
	for _, tt := range []struct {
		args    []string
		code    int
		mention string
	}{
		{[]string{"boot"}, 2, "wants 1 argument"},
		{[]string{"boot", "n1"}, 2, "missing --image, --digest, --key"},
		{[]string{"boot", "n1", "--image", "https://x/y.img"}, 2, "missing --digest, --key"},
		{[]string{"boot", "n1", "--source", "usb"}, 2, `invalid --source "usb"`},
		{[]string{"boot", "n1", "--source", "local", "--image", "https://x/y.img"}, 2, "local boot needs"},
		{[]string{"boot", "n1", "--image", "http://x/y.img", "--digest", "sha256:" + strings.Repeat("a", 64), "--key", "0123456789abcdef"}, 1, "must be an https URL"},
		{[]string{"boot", "n9", "--source", "local"}, 1, `node "n9" is not registered`},
	} {
		_, errOut, code := r.run(t, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.mention) {
			t.Errorf("%v: exit %d, stderr %q; want %d mentioning %q", tt.args, code, errOut, tt.code, tt.mention)
		}
	}
	out, _, code := r.run(t, "boot", "n1", "--source", "local", "-o", "json")
	if code != 0 || !strings.Contains(out, `"io.racklet.node.boot.desired"`) {
		t.Errorf("local boot: exit %d, %s", code, out)
	}
}
