package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/drivers/smbus"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/reconcilers"
	fwrec "github.com/racklet/rack/reconcilers/firmware"
	"github.com/racklet/rack/sim"
)

// TestFirmwareSetWithReconciler runs `rackctl firmware set … --wait`
// against the real firmware reconciler updating the simulator's emulated
// BMC firmware over the SMBus driver, and `rackctl get firmware`.
func TestFirmwareSetWithReconciler(t *testing.T) {
	r := newRack(t)
	quiet := slog.New(slog.DiscardHandler)
	rack, err := sim.New(sim.Config{Slots: 2, StartOn: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rack.Close() })
	bus, err := rack.FirmwareBus(sim.FirmwareConfig{})
	if err != nil {
		t.Fatal(err)
	}
	bp, err := smbus.New(smbus.Config{Bus: bus, Slots: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	dir := t.TempDir()
	image := bytes.Repeat([]byte("bmc firmware "), 40)
	m, err := firmware.Sign(image, firmware.ManifestFields{Component: firmware.ComponentBMC, Version: firmware.FirmwareVersion{Major: 1, Minor: 1}, SecurityVersion: 2}, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bmc-1.1.0.bin")
	if err := os.WriteFile(path, image, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := firmware.WriteManifest(firmware.ManifestPath(path), m); err != nil {
		t.Fatal(err)
	}
	fr, err := fwrec.New(fwrec.Config{Log: r.log, Backplane: bp, Images: firmware.Dir(dir), Trusted: firmware.NewKeyring(key.Public().(ed25519.PublicKey)),
		Rack: "rack1", Member: "m1", ObserveInterval: 50 * time.Millisecond, HealthTimeout: 5 * time.Second, PollInterval: 5 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := reconcilers.New(reconcilers.Config{Log: r.log, Leadership: reconcilers.NewLeaderSwitch(true), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Register(fr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runtime: %v", err)
		}
	})

	out, errOut, code := r.run(t, "firmware", "set", "n2-bmc", "1.1.0", "--wait", "--wait-timeout", "30s")
	if code != 0 || !strings.Contains(out, "firmware n2-bmc: write started\n") || !strings.Contains(out, "firmware n2-bmc: confirm succeeded\n") ||
		!strings.HasSuffix(out, "firmware n2-bmc: running 1.1.0\n") {
		t.Fatalf("set --wait: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	out, errOut, code = r.run(t, "get", "firmware")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
		!strings.Contains(lines[2], "n2-bmc") || !strings.Contains(lines[2], "1.1.0 (b)") || !strings.Contains(lines[2], "confirm succeeded") ||
		!strings.Contains(lines[1], "1.0.0 (a)") {
		t.Fatalf("get firmware: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// A version the repository does not have: refused, and --wait says so.
	out, errOut, code = r.run(t, "firmware", "set", "n1-bmc", "9.9.9", "--wait", "--wait-timeout", "30s")
	if code == 0 || !strings.Contains(errOut, "refused (no-image)") {
		t.Fatalf("set a missing version --wait: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = r.run(t, "get", "firmware", "-o", "json")
	if code != 0 || !strings.Contains(out, `"code": "no-image"`) {
		t.Fatalf("get firmware -o json: %s", out)
	}
}

func TestFirmwareSetUsage(t *testing.T) {
	r := newRack(t)
	for _, args := range [][]string{
		{"firmware", "set", "n1", "1.0.0"},
		{"firmware", "set", "n1-bmc", "1.0"},
		{"firmware", "set", "n1-bmc"},
		{"firmware", "set", "n1-bmc", "1.0.0", "--wait", "--wait-timeout", "0s"},
	} {
		_, errOut, code := r.run(t, args...)
		if code != 2 || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q; want a usage error", args, code, errOut)
		}
	}
	// Unknown node: the API's 404.
	_, errOut, code := r.run(t, "firmware", "set", "n9-bmc", "1.0.0")
	if code == 0 || !strings.Contains(errOut, "not_found") && !strings.Contains(errOut, "not registered") {
		t.Fatalf("unknown node: exit %d, stderr %q", code, errOut)
	}
}
