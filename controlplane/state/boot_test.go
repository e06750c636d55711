package state

import (
	"errors"
	"strings"
	"testing"

	"github.com/racklet/rack/events"
)

const testDigest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func bootSpec(t testing.TB, n string) events.Event {
	return ev(t, events.NodeBootDesired, n, &events.BootDesiredData{Source: events.BootNetwork, Image: "https://img.rack/os.img", Digest: testDigest, KeyID: "0123456789abcdef"})
}
func bootStarted(t testing.TB, n string, target uint64) events.Event {
	return ev(t, events.NodeBootStarted, n, &events.BootStartedData{Target: target, Source: events.BootNetwork})
}
func bootStage(t testing.TB, n string, s events.BootStage, target uint64) events.Event {
	return ev(t, events.NodeBootStage, n, &events.BootStageData{Stage: s, Target: target, Via: events.ViaBMC})
}

func applyAll(t *testing.T, s *State, evs ...events.Event) []events.Event {
	t.Helper()
	out, err := s.Apply(evs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return out
}

// TestBootProjection follows a boot through its phases.
func TestBootProjection(t *testing.T) {
	s := New()
	applyAll(t, s, reg(t, "n1", 1), want(t, "n1", events.PowerOn, false)) // 1, 2
	applyAll(t, s, bootSpec(t, "n1"))                                     // 3
	b := s.Nodes["n1"].Boot
	if b == nil || b.Phase != BootPending || b.DesiredSequence != 3 || b.Digest != testDigest || b.Source != events.BootNetwork {
		t.Fatalf("after the spec: %+v", b)
	}
	// The reconciler's batch: the cycle, then boot.started (4, 5).
	applyAll(t, s, want(t, "n1", events.PowerCycle, false), bootStarted(t, "n1", 3))
	b = s.Nodes["n1"].Boot
	if b.Phase != BootBooting || b.StartedSequence != 5 || b.CycleSequence != 4 || !b.StartedAt.Equal(t0) || b.StageThisBoot() != "" {
		t.Fatalf("after boot.started: %+v", b)
	}
	for i, st := range []events.BootStage{events.BootStageFirmware, events.BootStageBootstrap, events.BootStageImageVerified, events.BootStageOS} {
		applyAll(t, s, bootStage(t, "n1", st, 3))
		if b := s.Nodes["n1"].Boot; b.Phase != BootBooting || b.StageThisBoot() != st || b.StageSequence != uint64(6+i) {
			t.Fatalf("after stage %s: %+v", st, b)
		}
	}
	applyAll(t, s, bootStage(t, "n1", events.BootStageReady, 3)) // 10
	if b := s.Nodes["n1"].Boot; b.Phase != BootReady || b.ResultSequence != 10 {
		t.Fatalf("after ready: %+v", b)
	}
	// A later failure report of the done spec changes nothing.
	applyAll(t, s, ev(t, events.NodeBootFailed, "n1", &events.BootFailedData{Stage: events.BootStageOS, Reason: "late", Target: 3}))
	if b := s.Nodes["n1"].Boot; b.Phase != BootReady {
		t.Fatalf("a failure after ready: %+v", b)
	}

	// A new spec: pending again; the node's last stage stays known, but
	// not as this boot's.
	applyAll(t, s, bootSpec(t, "n1")) // 12
	if b := s.Nodes["n1"].Boot; b.Phase != BootPending || b.Stage != events.BootStageReady || b.StageThisBoot() != "" || b.Reason != "" {
		t.Fatalf("after a new spec: %+v", b)
	}
	// boot.started for the old spec is stale: the whole batch (with its
	// cycle) is rejected.
	before := s.Sequence
	if _, err := s.Apply(batch(want(t, "n1", events.PowerCycle, false), bootStarted(t, "n1", 3))); !errors.Is(err, ErrStaleBoot) {
		t.Fatalf("stale boot.started: %v", err)
	}
	if s.Sequence != before || s.Nodes["n1"].CycleSequence != 4 {
		t.Fatalf("a rejected batch changed the state: sequence %d, node %+v", s.Sequence, s.Nodes["n1"])
	}
	applyAll(t, s, ev(t, events.NodeBootRefused, "n1", &events.BootRefusedData{Reason: "bad signature", Target: 12}))
	if b := s.Nodes["n1"].Boot; b.Phase != BootRefused || b.Reason != "bad signature" {
		t.Fatalf("after the refusal: %+v", b)
	}
	if _, err := s.Apply(batch(ev(t, events.NodeBootRefused, "n1", &events.BootRefusedData{Reason: "again", Target: 12}))); !errors.Is(err, ErrStaleBoot) {
		t.Fatalf("a second refusal: %v", err)
	}

	// Failure in a stage.
	applyAll(t, s, bootSpec(t, "n1")) // 14
	applyAll(t, s, want(t, "n1", events.PowerCycle, false), bootStarted(t, "n1", 14), bootStage(t, "n1", events.BootStageBootstrap, 14))
	applyAll(t, s, ev(t, events.NodeBootFailed, "n1", &events.BootFailedData{Stage: events.BootStageBootstrap, Reason: "timeout", Target: 14}))
	if b := s.Nodes["n1"].Boot; b.Phase != BootFailed || b.FailedStage != events.BootStageBootstrap || b.Reason != "timeout" {
		t.Fatalf("after the failure: %+v", b)
	}

	// Boot events of an unknown node are rejected.
	if _, err := s.Apply(batch(bootSpec(t, "nx"))); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("spec of an unknown node: %v", err)
	}
	// Clone copies the boot.
	c := s.Clone()
	c.Nodes["n1"].Boot.Phase = "changed"
	if s.Nodes["n1"].Boot.Phase != BootFailed {
		t.Fatal("Clone shares the boot")
	}
}

// TestStageWithoutSpec: a node may report stages without a boot spec.
func TestStageWithoutSpec(t *testing.T) {
	s := New()
	applyAll(t, s, reg(t, "n1", 1), ev(t, events.NodeBootStage, "n1", &events.BootStageData{Stage: events.BootStageOS, ImageDigest: testDigest, Via: events.ViaNode}))
	b := s.Nodes["n1"].Boot
	if b == nil || b.Phase != "" || b.Stage != events.BootStageOS || b.ImageDigest != testDigest {
		t.Fatalf("boot %+v", b)
	}
}

// TestInsertedAndHostGone: presence and the departure of a member's host.
func TestInsertedAndHostGone(t *testing.T) {
	s := New()
	applyAll(t, s, joined(t, "m1", "m1", true), joined(t, "m2", "m2", true), joined(t, "m3", "m3", true))
	applyAll(t, s, regMember(t, "n1", 1, "m1"), regMember(t, "n2", 2, "m2"), regMember(t, "n3", 3, "m3"))
	applyAll(t, s, ev(t, events.NodeInserted, "n3", &events.NodeInsertedData{Slot: 3}))
	if !s.Nodes["n3"].Present {
		t.Fatal("n3 not present")
	}
	if err := s.QuorumGuard("n1"); err != nil {
		t.Fatalf("guard with every member up: %v", err)
	}
	out := applyAll(t, s, rm(t, "n3"))
	g := s.Members["m3"].HostGone
	if g == nil || g.Node != "n3" || g.Slot != 3 || g.Sequence != out[0].Sequence || !g.At.Equal(t0) {
		t.Fatalf("host gone: %+v", g)
	}
	// m3's host is gone: it counts as down for the guard.
	if err := s.QuorumGuard("n1"); !errors.Is(err, ErrQuorumGuard) || !strings.Contains(err.Error(), "1 of 3") {
		t.Fatalf("guard with m3's unit out: %v", err)
	}
	c := s.Clone()
	c.Members["m3"].HostGone.Node = "changed"
	if s.Members["m3"].HostGone.Node != "n3" {
		t.Fatal("Clone shares HostGone")
	}
	// Registered again with its member: the record clears.
	applyAll(t, s, regMember(t, "n3", 3, "m3"))
	if g := s.Members["m3"].HostGone; g != nil {
		t.Fatalf("host back, HostGone = %+v", g)
	}
	// A removal and a re-registration in one batch, and a member that
	// leaves in the same batch as its host.
	applyAll(t, s, rm(t, "n2"), regMember(t, "n2", 2, "m2"))
	if g := s.Members["m2"].HostGone; g != nil {
		t.Fatalf("m2: %+v", g)
	}
	applyAll(t, s, rm(t, "n2"), left(t, "m2"))
	if _, ok := s.Members["m2"]; ok {
		t.Fatal("m2 still a member")
	}
	if n := s.NodeAtSlot(3); n == nil || n.Name != "n3" {
		t.Fatalf("NodeAtSlot(3) = %+v", n)
	}
	if n := s.NodeAtSlot(2); n != nil {
		t.Fatalf("NodeAtSlot(2) = %+v", n)
	}
}
