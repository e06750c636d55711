package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/racklet/rack/events"
)

func fwWant(t testing.TB, name, v string) events.Event {
	return ev(t, events.FirmwareDesired, name, &events.FirmwareDesiredData{Version: v})
}
func fwObs(t testing.TB, name, v, slot string, sv uint32) events.Event {
	return ev(t, events.FirmwareObserved, name, &events.FirmwareObservedData{Version: v, Slot: slot, SecurityVersion: sv})
}
func fwStep(t testing.TB, name, step, status string) events.Event {
	d := &events.FirmwareStepData{Action: "u1", Step: step, Status: status, Version: "2.0.0", Target: 2}
	if status == events.StepFailed {
		d.Reason, d.Retry = "power lost", true
	}
	return ev(t, events.FirmwareStep, name, d)
}
func fwRefused(t testing.TB, name, code string, target uint64) events.Event {
	return ev(t, events.FirmwareRefused, name, &events.FirmwareRefusedData{Version: "2.0.0", Code: code, Reason: "no", Target: target})
}

func TestParseFirmwareName(t *testing.T) {
	long := "n" + fmt.Sprintf("%058d", 0) // 59 characters: the longest node with a firmware name
	tests := []struct {
		name, node string
		ok         bool
	}{
		{"n3-bmc", "n3", true},
		{"my-node-bmc", "my-node", true},
		{"x-bmc-bmc", "x-bmc", true},
		{long + "-bmc", long, true},
		{"n3", "", false},
		{"-bmc", "", false},
		{"bmc", "", false},
		{"rmc", "", false},
		{"n3-os", "", false},
		{"N3-bmc", "", false},
		{long + "x-bmc", "", false},
	}
	for _, tt := range tests {
		node, comp, ok := ParseFirmwareName(tt.name)
		if ok != tt.ok || node != tt.node || (ok && comp != ComponentBMC) {
			t.Errorf("ParseFirmwareName(%q) = %q, %q, %v; want %q, %v", tt.name, node, comp, ok, tt.node, tt.ok)
		}
		if ok && FirmwareName(node) != tt.name {
			t.Errorf("FirmwareName(%q) = %q", node, FirmwareName(node))
		}
	}
}

func TestApplyFirmware(t *testing.T) {
	s := New()
	mustApply(t, s, batch(reg(t, "n1", 1), reg(t, "n2", 2)))
	mustApply(t, s, batch(fwObs(t, "n1-bmc", "1.0.0", "a", 1)))
	mustApply(t, s, batch(fwWant(t, "n1-bmc", "2.0.0"), fwRefused(t, "n1-bmc", events.RefusedQuorum, 4)))
	mustApply(t, s, batch(fwStep(t, "n1-bmc", "begin", events.StepStarted)))
	out := mustApply(t, s, batch(fwStep(t, "n1-bmc", "write", events.StepFailed), fwObs(t, "n1-bmc", "2.0.0", "b", 5)))
	if out[1].Sequence != 8 {
		t.Fatalf("sequence %d, want 8", out[1].Sequence)
	}
	want := &Firmware{Name: "n1-bmc", Node: "n1", Component: "bmc", Desired: "2.0.0", DesiredSequence: 4,
		Observed: &FirmwareObserved{Version: "2.0.0", Slot: "b", SecurityVersion: 5, Sequence: 8, At: t0},
		LastStep: &FirmwareStep{Action: "u1", Step: "write", Status: "failed", Version: "2.0.0", Target: 2, Reason: "power lost", Retry: true, Sequence: 7},
		Sequence: 8}
	if got, w := mustJSON(t, s.Firmware["n1-bmc"]), mustJSON(t, want); got != w {
		t.Fatalf("firmware:\n got %s\nwant %s", got, w)
	}
	if !s.Firmware["n1-bmc"].Done() || s.Firmware["n1-bmc"].Refused() {
		t.Fatalf("Done/Refused wrong for %+v", s.Firmware["n1-bmc"])
	}

	// A refusal for the desired sequence sticks until the next desired.
	mustApply(t, s, batch(fwWant(t, "n2-bmc", "3.0.0")))
	mustApply(t, s, batch(fwRefused(t, "n2-bmc", events.RefusedAntiRollback, 9)))
	if f := s.Firmware["n2-bmc"]; !f.Refused() || f.Done() {
		t.Fatalf("n2-bmc not refused: %+v", f)
	}
	mustApply(t, s, batch(fwStep(t, "n2-bmc", "begin", events.StepStarted)))
	if s.Firmware["n2-bmc"].Refusal == nil {
		t.Fatal("a step cleared an anti-rollback refusal")
	}
	mustApply(t, s, batch(fwWant(t, "n2-bmc", "3.0.1")))
	if f := s.Firmware["n2-bmc"]; f.Refusal != nil || f.Refused() {
		t.Fatalf("a new desired version kept the refusal: %+v", f)
	}

	// The list is by slot.
	var names []string
	for _, f := range s.FirmwareList() {
		names = append(names, f.Name)
	}
	if fmt.Sprint(names) != "[n1-bmc n2-bmc]" {
		t.Fatalf("FirmwareList = %v", names)
	}

	// Removing a node drops its firmware; registering it again starts afresh.
	mustApply(t, s, batch(rm(t, "n1"), reg(t, "n1", 1)))
	if _, ok := s.Firmware["n1-bmc"]; ok {
		t.Fatal("firmware of a removed node is still there")
	}
	mustApply(t, s, batch(rm(t, "n2"), reg(t, "n2", 2), fwWant(t, "n2-bmc", "1.0.0")))
	if f := s.Firmware["n2-bmc"]; f == nil || f.Desired != "1.0.0" || f.Observed != nil || f.LastStep != nil {
		t.Fatalf("firmware after remove and register in one batch: %+v", f)
	}
}

func TestFirmwareRebooting(t *testing.T) {
	setup := batch(regMember(t, "n1", 1, "m1"), regMember(t, "n2", 2, "m2"), regMember(t, "n3", 3, "m3"),
		joined(t, "m1", "a", true), joined(t, "m2", "b", true), joined(t, "m3", "c", true))
	tests := []struct {
		step, status string
		rebooting    bool
	}{
		{"write", events.StepStarted, false},
		{"switch", events.StepSucceeded, false},
		{"reboot", events.StepStarted, true},
		{"reboot", events.StepSucceeded, true},
		{"reboot", events.StepFailed, false},
		{"health-check", events.StepStarted, true},
		{"health-check", events.StepSucceeded, false},
		{"health-check", events.StepFailed, false},
		{"confirm", events.StepStarted, false},
	}
	for _, tt := range tests {
		t.Run(tt.step+" "+tt.status, func(t *testing.T) {
			s := New()
			mustApply(t, s, setup)
			mustApply(t, s, batch(fwStep(t, "n2-bmc", tt.step, tt.status)))
			if got := s.FirmwareRebooting("n2"); got != tt.rebooting {
				t.Fatalf("FirmwareRebooting = %v, want %v", got, tt.rebooting)
			}
			// With n2 rebooting, n1 may not go off: 1 of 3 would stay.
			err := s.QuorumGuard("n1")
			if tt.rebooting != errors.Is(err, ErrQuorumGuard) {
				t.Fatalf("QuorumGuard(n1) = %v with n2 rebooting %v", err, tt.rebooting)
			}
		})
	}
}

func TestApplyFirmwareRejects(t *testing.T) {
	setup := batch(reg(t, "n1", 1), fwWant(t, "n1-bmc", "1.0.0"))
	tests := []struct {
		name  string
		batch []events.Event
		err   error
	}{
		{"not a firmware name", batch(fwWant(t, "n1", "1.0.0")), ErrUnknownFirmware},
		{"rmc not yet", batch(fwWant(t, "rmc", "1.0.0")), ErrUnknownFirmware},
		{"unknown node", batch(fwWant(t, "n9-bmc", "1.0.0")), ErrUnknownNode},
		{"observed unknown node", batch(fwObs(t, "n9-bmc", "1.0.0", "a", 1)), ErrUnknownNode},
		{"step unknown node", batch(fwStep(t, "n9-bmc", "begin", events.StepStarted)), ErrUnknownNode},
		{"refused unknown node", batch(fwRefused(t, "n9-bmc", events.RefusedNoImage, 1)), ErrUnknownNode},
		{"node removed earlier in the batch", batch(fwObs(t, "n1-bmc", "1.0.0", "a", 1), rm(t, "n1"), fwWant(t, "n1-bmc", "2.0.0")), ErrUnknownNode},
		{"valid then invalid", batch(fwWant(t, "n1-bmc", "2.0.0"), fwStep(t, "n1-bmc", "begin", events.StepStarted), fwWant(t, "x", "1.0.0")), ErrUnknownFirmware},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			mustApply(t, s, setup)
			before := mustJSON(t, s)
			f := s.Firmware["n1-bmc"]
			fBefore := mustJSON(t, f)
			out, err := s.Apply(tt.batch)
			if !errors.Is(err, tt.err) || out != nil {
				t.Fatalf("Apply = %d events, %v; want %v", len(out), err, tt.err)
			}
			if mustJSON(t, s) != before || mustJSON(t, f) != fBefore || s.Firmware["n1-bmc"] != f {
				t.Fatal("a rejected batch changed the state")
			}
		})
	}
}

// Firmware events mixed with node registrations and removals apply the
// same way every time, from a clone too, and survive a JSON round trip
// (what a snapshot does), also into a state with no firmware map (an
// older snapshot).
func TestApplyFirmwareDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	nodes := []string{"n1", "n2", "n3"}
	steps := events.FirmwareSteps
	statuses := []string{events.StepStarted, events.StepSucceeded, events.StepFailed}
	var batches [][]events.Event
	for range 300 {
		b := make([]events.Event, 1+r.IntN(3))
		for i := range b {
			n := nodes[r.IntN(len(nodes))]
			switch r.IntN(7) {
			case 0:
				b[i] = reg(t, n, r.IntN(4))
			case 1:
				b[i] = rm(t, n)
			case 2:
				b[i] = fwWant(t, n+"-bmc", fmt.Sprintf("1.%d.0", r.IntN(3)))
			case 3:
				b[i] = fwObs(t, n+"-bmc", "1.0.0", []string{"a", "b"}[r.IntN(2)], uint32(r.IntN(3)))
			case 4:
				b[i] = fwStep(t, n+"-bmc", steps[r.IntN(len(steps))], statuses[r.IntN(3)])
			case 5:
				b[i] = fwRefused(t, n+"-bmc", events.RefusedQuorum, uint64(r.IntN(20)))
			default:
				b[i] = fwWant(t, n, "1.0.0") // never a firmware name
			}
		}
		batches = append(batches, b)
	}
	a, c := New(), New()
	var mid *State
	applied := 0
	for i, b := range batches {
		_, errA := a.Apply(b)
		_, errC := c.Apply(b)
		if fmt.Sprint(errA) != fmt.Sprint(errC) {
			t.Fatalf("batch %d: %v vs %v", i, errA, errC)
		}
		if errA == nil {
			applied++
		}
		if i == 150 {
			mid = a.Clone()
		}
	}
	if applied < 30 || len(a.Firmware) == 0 {
		t.Fatalf("lopsided: %d batches applied, %d firmware components", applied, len(a.Firmware))
	}
	ja := mustJSON(t, a)
	if mustJSON(t, c) != ja {
		t.Fatal("same batches, different states")
	}
	for _, b := range batches[151:] {
		_, _ = mid.Apply(b)
	}
	if mustJSON(t, mid) != ja {
		t.Fatal("a clone fed the rest differs")
	}
	var back State
	if err := json.Unmarshal([]byte(ja), &back); err != nil {
		t.Fatal(err)
	}
	if mustJSON(t, &back) != ja {
		t.Fatal("no JSON round trip")
	}
	// A state restored without a firmware map applies firmware events.
	old := &State{Nodes: map[string]*Node{}, Members: map[string]*Member{}}
	mustApply(t, old, batch(reg(t, "n1", 1), fwWant(t, "n1-bmc", "1.0.0")))
	if old.Firmware["n1-bmc"] == nil || old.Clone().Firmware["n1-bmc"] == nil {
		t.Fatal("firmware lost in a state without a firmware map")
	}
}

func TestCloneFirmware(t *testing.T) {
	s := New()
	mustApply(t, s, batch(reg(t, "n1", 1), fwWant(t, "n1-bmc", "2.0.0"), fwObs(t, "n1-bmc", "1.0.0", "a", 1),
		fwStep(t, "n1-bmc", "begin", events.StepStarted), fwRefused(t, "n1-bmc", events.RefusedQuorum, 2)))
	before := mustJSON(t, s)
	c := s.Clone()
	f := c.Firmware["n1-bmc"]
	f.Desired, f.Observed.Version, f.LastStep.Status, f.Refusal.Code = "9.9.9", "9.9.9", "failed", "x"
	c.Firmware["n2-bmc"] = &Firmware{Name: "n2-bmc"}
	if mustJSON(t, s) != before {
		t.Fatal("mutating a clone changed the original")
	}
}
