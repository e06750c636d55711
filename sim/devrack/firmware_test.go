package devrack

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/internal/testutil"
)

// The leader updates the BMC of its own node: the update's reboot kills
// the leader with its unit; the next leader finds the new image on trial,
// resumes the update (health check, confirm), and the old leader's member
// comes back on the updated node.
func TestDevRackFirmwareUpdateOfTheLeadersNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole rack")
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize))
	dir := t.TempDir()
	image := bytes.Repeat([]byte("new bmc firmware "), 60)
	m, err := firmware.Sign(image, firmware.ManifestFields{Component: firmware.ComponentBMC, Version: firmware.FirmwareVersion{Major: 2}, SecurityVersion: 2}, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bmc-2.0.0.bin")
	if err := os.WriteFile(path, image, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := firmware.WriteManifest(firmware.ManifestPath(path), m); err != nil {
		t.Fatal(err)
	}

	level := slog.LevelWarn + 4
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	sctx, scancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer scancel()
	r, err := Start(sctx, Config{
		Dir: t.TempDir(), Seed: 1, Slots: 4, ObserveInterval: 100 * time.Millisecond, Timings: fastBoot,
		Firmware: FirmwareConfig{Dir: dir, Trusted: firmware.NewKeyring(key.Public().(ed25519.PublicKey)), ObserveInterval: 200 * time.Millisecond, HealthTimeout: 10 * time.Second},
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("closing the rack: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var leader string
	testutil.WaitFor(t, 30*time.Second, func() error {
		if l := r.Leader(); l != nil {
			leader = l.Name()
			return nil
		}
		return fmt.Errorf("no leader")
	})
	node := NodeName(r.MemberSlot(leader))
	name := node + "-bmc"
	var urls []string
	for _, mm := range r.Members() {
		urls = append(urls, mm.APIURL())
	}
	c, err := client.New(urls[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddEndpoints(urls[1:]...); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		f, err := c.Firmware(ctx, name)
		if err != nil {
			return err
		}
		if f.Observed == nil || f.Observed.Version != "1.0.0" {
			return fmt.Errorf("%s not observed yet: %+v", name, f.Observed)
		}
		return nil
	})
	ev, err := c.SetFirmware(ctx, name, "2.0.0")
	if err != nil {
		t.Fatal(err)
	}

	testutil.WaitFor(t, 60*time.Second, func() error {
		f, err := c.Firmware(ctx, name)
		if err != nil {
			return err
		}
		if f.Refusal != nil {
			return fmt.Errorf("refused: %+v", f.Refusal) // quorum is retried; others end the test by timeout with this message
		}
		if !f.Done() {
			return fmt.Errorf("%s: running %+v, last step %+v", name, f.Observed, f.LastStep)
		}
		return nil
	})
	// Truth: the BMC runs the image from slot B.
	if got := r.FirmwareBus().Image(r.MemberSlot(leader), firmware.SlotB); !bytes.Equal(got, image) {
		t.Fatal("slot B does not hold the new image")
	}
	// The old leader's member is back.
	testutil.WaitFor(t, 30*time.Second, func() error {
		if r.Member(leader) == nil {
			return fmt.Errorf("member %s not running", leader)
		}
		return r.Member(leader).WaitReady(ctx)
	})
	evs, _, err := c.Events(ctx, client.EventQuery{Since: ev.Sequence, Subject: name, Type: "firmware.step", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var confirmed, reboots int
	for _, e := range evs {
		p, err := e.Payload()
		if err != nil {
			t.Fatal(err)
		}
		d := p.(*events.FirmwareStepData)
		if d.Step == "confirm" && d.Status == events.StepSucceeded {
			confirmed++
		}
		if d.Step == "reboot" && d.Status == events.StepStarted {
			reboots++
		}
	}
	if confirmed != 1 || reboots < 1 {
		t.Fatalf("%d confirms, %d reboots in %d steps", confirmed, reboots, len(evs))
	}
	t.Logf("leader %s updated its own node's BMC in %d step events; leader now %v", leader, len(evs), r.Leader().Name())
}
