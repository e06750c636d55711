package state

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/racklet/rack/events"
)

// ErrUnknownFirmware: the subject of a firmware event names no firmware
// component the rack has (see FirmwareName).
var ErrUnknownFirmware = errors.New("state: unknown firmware component")

// ComponentBMC is the component of a node's BMC firmware.
const ComponentBMC = "bmc"

// bmcSuffix ends the firmware name of a node's BMC.
const bmcSuffix = "-" + ComponentBMC

// FirmwareName is the name of the BMC firmware of node: "<node>-bmc", the
// subject of its firmware events. It is a valid name only for node names
// of at most 59 characters.
func FirmwareName(node string) string { return node + bmcSuffix }

// ParseFirmwareName returns the node and component of a firmware name;
// ok is false if name is not "<node>-bmc" with a valid node name. (The
// RMC has no firmware name yet: protocol v1 has no image registers for
// it.)
func ParseFirmwareName(name string) (node, component string, ok bool) {
	node, found := strings.CutSuffix(name, bmcSuffix)
	if !found || !events.ValidName(node) || !events.ValidName(name) {
		return "", "", false
	}
	return node, ComponentBMC, true
}

// Firmware is one firmware component instance (a node's BMC), as the log
// has it: the version desired, what the device last reported, and the
// update reconciler's last step and refusal.
type Firmware struct {
	Name      string `json:"name"`
	Node      string `json:"node"`
	Component string `json:"component"`

	// Desired is the version to run, major.minor.patch; "" until set.
	Desired         string `json:"desired,omitempty"`
	DesiredSequence uint64 `json:"desiredSequence,omitempty"`

	// Observed is what the device last reported; nil until observed.
	Observed *FirmwareObserved `json:"observed,omitempty"`
	// LastStep is the latest step of an update.
	LastStep *FirmwareStep `json:"lastStep,omitempty"`
	// Refusal is set when the reconciler refused the desired version (or,
	// code quorum, deferred it); cleared by the next desired version, and
	// a quorum refusal also by the update starting.
	Refusal *FirmwareRefusal `json:"refusal,omitempty"`

	// Sequence is the sequence of the last event about this component.
	Sequence uint64 `json:"sequence"`
}

// FirmwareObserved is what a device reported about its firmware.
type FirmwareObserved struct {
	Version string `json:"version"`
	// Slot is the image slot it runs, a or b.
	Slot  string `json:"slot"`
	Trial bool   `json:"trial,omitempty"`
	// SecurityVersion is the device's anti-rollback counter.
	SecurityVersion uint32    `json:"securityVersion"`
	Sequence        uint64    `json:"sequence"`
	At              time.Time `json:"at,omitzero"`
}

// FirmwareStep is a step of an update, with its latest status.
type FirmwareStep struct {
	Action  string `json:"action"`
	Step    string `json:"step"`
	Status  string `json:"status"`
	Version string `json:"version"`
	Attempt int    `json:"attempt,omitempty"`
	Target  uint64 `json:"target,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Retry   bool   `json:"retry,omitempty"`
	// Sequence is the sequence of the step's latest event.
	Sequence uint64 `json:"sequence"`
}

// FirmwareRefusal is the reconciler's refusal of a desired version.
type FirmwareRefusal struct {
	Version string `json:"version"`
	Code    string `json:"code"`
	Reason  string `json:"reason"`
	// Target is the sequence of the refused desired version.
	Target   uint64 `json:"target,omitempty"`
	Sequence uint64 `json:"sequence"`
}

// Done reports whether the device runs the desired version, confirmed.
func (f *Firmware) Done() bool {
	return f.Desired != "" && f.Observed != nil && f.Observed.Version == f.Desired && !f.Observed.Trial
}

// Refused reports whether the current desired version was refused for
// good (any refusal of it but quorum, which is retried).
func (f *Firmware) Refused() bool {
	return f.Refusal != nil && f.Refusal.Target == f.DesiredSequence && f.Refusal.Code != events.RefusedQuorum
}

func (f *Firmware) clone() *Firmware {
	c := *f
	if f.Observed != nil {
		o := *f.Observed
		c.Observed = &o
	}
	if f.LastStep != nil {
		s := *f.LastStep
		c.LastStep = &s
	}
	if f.Refusal != nil {
		r := *f.Refusal
		c.Refusal = &r
	}
	return &c
}

// cloneFirmware deep-copies a firmware map (nil stays nil).
func cloneFirmware(m map[string]*Firmware) map[string]*Firmware {
	c := make(map[string]*Firmware, len(m))
	for k, f := range m {
		c[k] = f.clone()
	}
	return c
}

// FirmwareList returns the firmware components sorted by their node's
// slot, then name.
func (s *State) FirmwareList() []*Firmware {
	out := make([]*Firmware, 0, len(s.Firmware))
	for _, f := range s.Firmware {
		out = append(out, f)
	}
	slot := func(f *Firmware) int {
		if n := s.Nodes[f.Node]; n != nil {
			return n.Slot
		}
		return 0
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := slot(out[i]), slot(out[j]); a != b {
			return a < b
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// rebootingSteps are the steps during which a firmware update has the
// node's unit rebooting or not yet back up: from the reboot until the
// health check ends.
var rebootingSteps = map[string]bool{"reboot": true, "health-check": true}

// FirmwareRebooting reports whether a firmware update has node's unit
// down for its reboot: the BMC's last step is a reboot (started or done)
// or a health check under way. The quorum guard counts a member on such a
// node as down.
func (s *State) FirmwareRebooting(node string) bool {
	f := s.Firmware[FirmwareName(node)]
	if f == nil || f.LastStep == nil || !rebootingSteps[f.LastStep.Step] {
		return false
	}
	return f.LastStep.Status == events.StepStarted || (f.LastStep.Step == "reboot" && f.LastStep.Status == events.StepSucceeded)
}

// firmwareScratch is Apply's scratch copy of the firmware components a
// batch touches; a nil entry is one the batch deleted.
type firmwareScratch struct {
	touched map[string]*Firmware
}

// lookup returns the scratch copy of name, copying it from s on first use;
// nil if there is none.
func (fs *firmwareScratch) lookup(s *State, name string) *Firmware {
	if fs.touched == nil {
		fs.touched = map[string]*Firmware{}
	}
	if f, ok := fs.touched[name]; ok {
		return f
	}
	if f, ok := s.Firmware[name]; ok {
		c := f.clone()
		fs.touched[name] = c
		return c
	}
	return nil
}

// nodeRemoved drops the firmware components of a removed node.
func (fs *firmwareScratch) nodeRemoved(node string) {
	if fs.touched == nil {
		fs.touched = map[string]*Firmware{}
	}
	fs.touched[FirmwareName(node)] = nil
}

// apply applies one firmware event (its payload p, sequence seq); node
// looks a node up in the batch's scratch state.
func (fs *firmwareScratch) apply(s *State, ev events.Event, seq uint64, p events.Payload, node func(string) *Node) error {
	nodeName, comp, ok := ParseFirmwareName(ev.Subject)
	if !ok {
		return fmt.Errorf("%w: %q is not <node>-bmc", ErrUnknownFirmware, ev.Subject)
	}
	if node(nodeName) == nil {
		return fmt.Errorf("%w: %s (firmware %s)", ErrUnknownNode, nodeName, ev.Subject)
	}
	f := fs.lookup(s, ev.Subject)
	if f == nil {
		f = &Firmware{Name: ev.Subject, Node: nodeName, Component: comp}
		fs.touched[ev.Subject] = f
	}
	f.Sequence = seq
	switch d := p.(type) {
	case *events.FirmwareDesiredData:
		f.Desired, f.DesiredSequence, f.Refusal = d.Version, seq, nil
	case *events.FirmwareObservedData:
		f.Observed = &FirmwareObserved{Version: d.Version, Slot: d.Slot, Trial: d.Trial, SecurityVersion: d.SecurityVersion, Sequence: seq, At: ev.Time}
	case *events.FirmwareStepData:
		st := &FirmwareStep{Action: d.Action, Step: d.Step, Status: d.Status, Version: d.Version, Attempt: d.Attempt,
			Target: d.Target, Reason: d.Reason, Retry: d.Retry, Sequence: seq}
		f.LastStep = st
		if d.Status == events.StepStarted && f.Refusal != nil && f.Refusal.Code == events.RefusedQuorum {
			f.Refusal = nil
		}
	case *events.FirmwareRefusedData:
		f.Refusal = &FirmwareRefusal{Version: d.Version, Code: d.Code, Reason: d.Reason, Target: d.Target, Sequence: seq}
	default:
		return fmt.Errorf("state: no firmware projection for %T", p)
	}
	return nil
}

// commit writes the scratch copies into s.
func (fs *firmwareScratch) commit(s *State) {
	if len(fs.touched) == 0 {
		return
	}
	if s.Firmware == nil {
		s.Firmware = map[string]*Firmware{}
	}
	for name, f := range fs.touched {
		if f == nil {
			delete(s.Firmware, name)
		} else {
			s.Firmware[name] = f
		}
	}
}
