package events

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Type is a CloudEvents type, always io.racklet.<object>.<what>.
type Type string

// The known event types. Schema version 1 for all of them; a breaking change
// of a payload gets a new type name (…v2), never a silent change.
const (
	NodeRegistered    Type = "io.racklet.node.registered"
	NodeRemoved       Type = "io.racklet.node.removed"
	NodePowerDesired  Type = "io.racklet.node.power.desired"
	NodePowerObserved Type = "io.racklet.node.power.observed"
	ActionStarted     Type = "io.racklet.action.started"
	ActionSucceeded   Type = "io.racklet.action.succeeded"
	ActionFailed      Type = "io.racklet.action.failed"
	NodePowerRefused  Type = "io.racklet.node.power.refused"
	NodeUnreachable   Type = "io.racklet.node.unreachable"
	NodeReachable     Type = "io.racklet.node.reachable"
	MemberJoined      Type = "io.racklet.member.joined"
	MemberLeft        Type = "io.racklet.member.left"
	FirmwareDesired   Type = "io.racklet.firmware.desired"
	FirmwareObserved  Type = "io.racklet.firmware.observed"
	FirmwareStep      Type = "io.racklet.firmware.step"
	FirmwareRefused   Type = "io.racklet.firmware.refused"
)

// Payload is the typed data of an event.
type Payload interface {
	// Validate reports the first invalid field as a *FieldError.
	Validate() error
}

type spec struct{ new func() Payload }

var registry = map[Type]spec{
	NodeRegistered:    {func() Payload { return &NodeRegisteredData{} }},
	NodeRemoved:       {func() Payload { return &NodeRemovedData{} }},
	NodePowerDesired:  {func() Payload { return &PowerDesiredData{} }},
	NodePowerObserved: {func() Payload { return &PowerObservedData{} }},
	ActionStarted:     {func() Payload { return &ActionStartedData{} }},
	ActionSucceeded:   {func() Payload { return &ActionSucceededData{} }},
	ActionFailed:      {func() Payload { return &ActionFailedData{} }},
	NodePowerRefused:  {func() Payload { return &PowerRefusedData{} }},
	NodeUnreachable:   {func() Payload { return &NodeUnreachableData{} }},
	NodeReachable:     {func() Payload { return &NodeReachableData{} }},
	MemberJoined:      {func() Payload { return &MemberJoinedData{} }},
	MemberLeft:        {func() Payload { return &MemberLeftData{} }},
	FanPolicySet:      {func() Payload { return &FanPolicySetData{} }},
	AlarmRaised:       {func() Payload { return &AlarmRaisedData{} }},
	AlarmCleared:      {func() Payload { return &AlarmClearedData{} }},
	FirmwareDesired:   {func() Payload { return &FirmwareDesiredData{} }},
	FirmwareObserved:  {func() Payload { return &FirmwareObservedData{} }},
	FirmwareStep:      {func() Payload { return &FirmwareStepData{} }},
	FirmwareRefused:   {func() Payload { return &FirmwareRefusedData{} }},

	// Boot and hot swap (boot.go).
	NodeBootDesired: {func() Payload { return &BootDesiredData{} }},
	NodeBootStarted: {func() Payload { return &BootStartedData{} }},
	NodeBootStage:   {func() Payload { return &BootStageData{} }},
	NodeBootFailed:  {func() Payload { return &BootFailedData{} }},
	NodeBootRefused: {func() Payload { return &BootRefusedData{} }},
	NodeInserted:    {func() Payload { return &NodeInsertedData{} }},
}

// Known reports whether t is a known event type.
func Known(t Type) bool { _, ok := registry[t]; return ok }

// Types lists the known event types, sorted.
func Types() []Type {
	ts := make([]Type, 0, len(registry))
	for t := range registry {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

// PowerState is a node's power: on or off (observed or desired), or cycle
// (desired only: off, then on again).
type PowerState string

const (
	PowerOn    PowerState = "on"
	PowerOff   PowerState = "off"
	PowerCycle PowerState = "cycle"
)

// NodeRegisteredData: a node (a compute unit in a slot) became known.
type NodeRegisteredData struct {
	// Slot is the node's slot in the rack, 1-based; 0 if unknown.
	Slot int `json:"slot,omitempty"`
	// Member is the control-plane member that runs on the node, if any.
	Member string `json:"member,omitempty"`
}

func (d *NodeRegisteredData) Validate() error {
	if d.Slot < 0 || d.Slot > 1024 {
		return &FieldError{Field: "data.slot", Reason: "must be between 0 and 1024"}
	}
	if d.Member != "" {
		if err := ValidateName("data.member", d.Member); err != nil {
			return err
		}
	}
	return nil
}

// NodeRemovedData: a node is no longer managed.
type NodeRemovedData struct {
	Reason string `json:"reason,omitempty"`
}

func (d *NodeRemovedData) Validate() error { return validateText("data.reason", d.Reason, false) }

// PowerDesiredData: an operator (or a reconciler) set a node's desired power.
type PowerDesiredData struct {
	State PowerState `json:"state"`
	// Force overrides the quorum guard.
	Force bool `json:"force,omitempty"`
}

func (d *PowerDesiredData) Validate() error {
	switch d.State {
	case PowerOn, PowerOff, PowerCycle:
		return nil
	case "":
		return &FieldError{Field: "data.state", Reason: "is required (on, off or cycle)"}
	}
	return &FieldError{Field: "data.state", Reason: fmt.Sprintf("must be on, off or cycle, not %q", string(d.State))}
}

// PowerObservedData: a BMC reported a node's power state.
type PowerObservedData struct {
	State PowerState `json:"state"`
}

func (d *PowerObservedData) Validate() error {
	switch d.State {
	case PowerOn, PowerOff:
		return nil
	case "":
		return &FieldError{Field: "data.state", Reason: "is required (on or off)"}
	}
	return &FieldError{Field: "data.state", Reason: fmt.Sprintf("must be on or off, not %q", string(d.State))}
}

// ActionStartedData: a reconciler is about to act on hardware. It is
// committed before the action runs (intent before action).
type ActionStartedData struct {
	// Action identifies the action; the matching succeeded/failed event
	// carries the same id.
	Action     string `json:"action"`
	Reconciler string `json:"reconciler"`
	// Operation is what is done, e.g. "power.off".
	Operation string `json:"operation"`
	Attempt   int    `json:"attempt,omitempty"`
	// Target is the sequence of the desired-state event the action
	// realises (e.g. the power.desired of a cycle), if any.
	Target uint64 `json:"target,omitempty"`
}

func (d *ActionStartedData) Validate() error {
	if err := validateText("data.action", d.Action, true); err != nil {
		return err
	}
	if err := ValidateName("data.reconciler", d.Reconciler); err != nil {
		return err
	}
	if err := validateText("data.operation", d.Operation, true); err != nil {
		return err
	}
	if d.Attempt < 0 {
		return &FieldError{Field: "data.attempt", Reason: "must not be negative"}
	}
	return nil
}

// ActionSucceededData: the action with this id completed.
type ActionSucceededData struct {
	Action string `json:"action"`
}

func (d *ActionSucceededData) Validate() error { return validateText("data.action", d.Action, true) }

// ActionFailedData: the action with this id failed.
type ActionFailedData struct {
	Action string `json:"action"`
	Reason string `json:"reason"`
	// Retry says whether the reconciler will try again.
	Retry bool `json:"retry,omitempty"`
}

func (d *ActionFailedData) Validate() error {
	if err := validateText("data.action", d.Action, true); err != nil {
		return err
	}
	return validateText("data.reason", d.Reason, true)
}

// PowerRefusedData: a reconciler refused to act on a desired power state,
// e.g. the quorum guard refused to power off a node hosting a member.
type PowerRefusedData struct {
	State  PowerState `json:"state"`
	Reason string     `json:"reason"`
	// Target is the sequence of the refused power.desired event.
	Target uint64 `json:"target,omitempty"`
}

func (d *PowerRefusedData) Validate() error {
	switch d.State {
	case PowerOn, PowerOff, PowerCycle:
	default:
		return &FieldError{Field: "data.state", Reason: "must be on, off or cycle"}
	}
	return validateText("data.reason", d.Reason, true)
}

// NodeUnreachableData: a node's BMC failed repeatedly; it is retried slowly.
type NodeUnreachableData struct {
	Reason   string `json:"reason"`
	Failures int    `json:"failures,omitempty"`
}

func (d *NodeUnreachableData) Validate() error {
	if d.Failures < 0 {
		return &FieldError{Field: "data.failures", Reason: "must not be negative"}
	}
	return validateText("data.reason", d.Reason, true)
}

// NodeReachableData: a node's BMC answers again after being unreachable.
type NodeReachableData struct{}

func (d *NodeReachableData) Validate() error { return nil }

// MemberJoinedData: a control-plane member joined the Raft configuration.
type MemberJoinedData struct {
	// Address is the member's Raft address.
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

func (d *MemberJoinedData) Validate() error { return validateText("data.address", d.Address, true) }

// MemberLeftData: a control-plane member left the Raft configuration.
type MemberLeftData struct {
	Reason string `json:"reason,omitempty"`
}

func (d *MemberLeftData) Validate() error { return validateText("data.reason", d.Reason, false) }

// maxText bounds free-text fields so a payload cannot bloat the log.
const maxText = 1024

func validateText(field, s string, required bool) error {
	if s == "" {
		if required {
			return &FieldError{Field: field, Reason: "is required"}
		}
		return nil
	}
	if len(s) > maxText {
		return &FieldError{Field: field, Reason: fmt.Sprintf("is longer than %d bytes", maxText)}
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' }) {
		return &FieldError{Field: field, Reason: "must not contain control characters"}
	}
	return nil
}

// FitText makes s fit a free-text field (reasons, errors): control
// characters become spaces, invalid UTF-8 becomes "?", and a text longer
// than about 1000 bytes is cut at a rune boundary and ends with "…".
// Reconcilers pass error messages through it before recording them.
func FitText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	limit := 1000
	if len(s) <= limit {
		return s
	}
	for limit > 0 && !utf8.RuneStart(s[limit]) {
		limit--
	}
	return s[:limit] + "…"
}
