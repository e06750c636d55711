package chaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"
)

// defaultDuration is the fault phase of a run without
// RACKLET_CHAOS_DURATION (make test, CI): short, so that the whole test
// stays well within a few minutes under -race.
const defaultDuration = 60 * time.Second

// watchdogSlack is how long a run may take beyond its fault phase before
// the watchdog calls it hung: the rack's start, the final heal's
// convergence (Config.ConvergeTimeout, 60 s by default) and the checks,
// with room for a slow, shared machine. A healthy 60 s run takes about
// 70 s in all under -race.
const watchdogSlack = 4 * time.Minute

// TestChaos runs one seeded chaos scenario. make chaos sets
// RACKLET_CHAOS_DURATION and RACKLET_CHAOS_SEED (0 or unset: pick one from
// the clock); the seed is printed first, with the command that replays its
// schedule.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos runs a whole rack for a while")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RACKLET_CHAOS_SEED"); s != "" && s != "0" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RACKLET_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	dur := defaultDuration
	if s := os.Getenv("RACKLET_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("RACKLET_CHAOS_DURATION=%q: want a positive duration like 90s or 10m", s)
		}
		dur = d
	}
	replay := fmt.Sprintf("RACKLET_CHAOS_SEED=%d RACKLET_CHAOS_DURATION=%v go test -race -count=1 -timeout 0 -run 'TestChaos' -v ./sim/chaos/", seed, dur)
	t.Logf("chaos seed %d; replay the schedule with: %s", seed, replay)
	fmt.Printf("chaos seed %d; replay the schedule with:\n  %s\n", seed, replay)

	// The watchdog: a run that hangs (a deadlock in the control plane, a
	// future nobody answers) fails within minutes, with its seed and every
	// goroutine's stack, instead of waiting for go test's -timeout.
	limit := dur + watchdogSlack
	watchdog := time.AfterFunc(limit, func() {
		fmt.Fprintf(os.Stderr, "chaos seed %d: no verdict %v after the start (fault phase %v); every goroutine follows\n", seed, limit, dur)
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		panic(fmt.Sprintf("chaos seed %d hung; replay with: %s", seed, replay))
	})
	defer watchdog.Stop()

	var out io.Writer = io.Discard
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		out = os.Stdout
		if os.Getenv("RACKLET_CHAOS_LOG") != "" {
			logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
	}
	rep, err := Run(context.Background(), Config{
		Seed: seed, Duration: dur, Dir: t.TempDir(), Out: out, Logger: logger,
	})
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	rep.Write(os.Stdout)
	for _, v := range rep.Violations() {
		t.Errorf("seed %d: %s", seed, v)
	}
	if t.Failed() {
		t.Logf("replay with: %s", replay)
	}
}
