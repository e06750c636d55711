package events

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Firmware events are about one firmware component instance, their
// subject: "<node>-bmc" is the BMC of node <node> (see
// state.FirmwareName). The update reconciler (reconcilers/firmware) writes
// every one but the desired version.

// FirmwareDesiredData: an operator set the firmware version a component
// should run.
type FirmwareDesiredData struct {
	// Version is major.minor.patch, e.g. "1.2.3".
	Version string `json:"version"`
}

func (d *FirmwareDesiredData) Validate() error { return validateVersion("data.version", d.Version) }

// The image slots of a device's A/B firmware.
const (
	FirmwareSlotA = "a"
	FirmwareSlotB = "b"
)

// FirmwareObservedData: what a component's firmware reported, recorded
// when it changes.
type FirmwareObservedData struct {
	// Version is the version of the image the device runs.
	Version string `json:"version"`
	// Slot is the image slot it runs: a or b.
	Slot string `json:"slot"`
	// Trial is set while the running image is on trial (switched to, not
	// yet confirmed by a health check).
	Trial bool `json:"trial,omitempty"`
	// SecurityVersion is the device's anti-rollback counter: it refuses
	// images of a lower security version.
	SecurityVersion uint32 `json:"securityVersion"`
}

func (d *FirmwareObservedData) Validate() error {
	if err := validateVersion("data.version", d.Version); err != nil {
		return err
	}
	if d.Slot != FirmwareSlotA && d.Slot != FirmwareSlotB {
		return &FieldError{Field: "data.slot", Reason: fmt.Sprintf("must be a or b, not %q", clip(d.Slot))}
	}
	return nil
}

// The steps of a firmware update, in the order they run (a failed health
// check is followed by rollback and, if needed, reboot). They match
// firmware.Step*.
var FirmwareSteps = []string{
	"verify-manifest", "check-anti-rollback", "begin", "write", "device-verify",
	"switch", "reboot", "health-check", "confirm", "rollback",
}

// The statuses of a firmware step.
const (
	StepStarted   = "started"
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
)

// FirmwareStepData: one step of a firmware update started, succeeded or
// failed. The started event is committed before the step touches the
// device (intent before action).
type FirmwareStepData struct {
	// Action identifies the update: all its steps carry the same id.
	Action string `json:"action"`
	// Step is one of FirmwareSteps.
	Step string `json:"step"`
	// Status is started, succeeded or failed.
	Status string `json:"status"`
	// Version is the version being installed.
	Version string `json:"version"`
	// Attempt counts the updates tried for the same desired version, from 1.
	Attempt int `json:"attempt,omitempty"`
	// Target is the sequence of the firmware.desired event the update
	// realises.
	Target uint64 `json:"target,omitempty"`
	// Reason says why the step failed.
	Reason string `json:"reason,omitempty"`
	// Retry says whether the reconciler will try the update again.
	Retry bool `json:"retry,omitempty"`
}

func (d *FirmwareStepData) Validate() error {
	if err := validateText("data.action", d.Action, true); err != nil {
		return err
	}
	if !slices.Contains(FirmwareSteps, d.Step) {
		return &FieldError{Field: "data.step", Reason: fmt.Sprintf("must be one of %s, not %q", strings.Join(FirmwareSteps, ", "), clip(d.Step))}
	}
	switch d.Status {
	case StepStarted, StepSucceeded:
		if d.Reason != "" {
			return &FieldError{Field: "data.reason", Reason: "is only for a failed step"}
		}
	case StepFailed:
		if err := validateText("data.reason", d.Reason, true); err != nil {
			return err
		}
	default:
		return &FieldError{Field: "data.status", Reason: fmt.Sprintf("must be started, succeeded or failed, not %q", clip(d.Status))}
	}
	if d.Attempt < 0 {
		return &FieldError{Field: "data.attempt", Reason: "must not be negative"}
	}
	return validateVersion("data.version", d.Version)
}

// The reasons a firmware update is refused (FirmwareRefusedData.Code).
const (
	// RefusedNoImage: the repository has no image of the version.
	RefusedNoImage = "no-image"
	// RefusedManifest: the image's manifest is malformed or describes
	// another image.
	RefusedManifest = "manifest"
	// RefusedSignature: the manifest's signature does not verify with a
	// trusted key, or the image does not match it.
	RefusedSignature = "signature"
	// RefusedAntiRollback: the image's security version is below the
	// device's anti-rollback counter (a rollback attack, or an old image).
	RefusedAntiRollback = "anti-rollback"
	// RefusedHealthCheck: the image was installed but failed its health
	// check and was rolled back; it is not tried again.
	RefusedHealthCheck = "health-check"
	// RefusedQuorum: the update reboots a node whose control-plane member
	// the cluster cannot lose now; the reconciler waits and tries again.
	RefusedQuorum = "quorum"
	// RefusedUnsupported: the device cannot take image updates.
	RefusedUnsupported = "unsupported"
)

var refusedCodes = []string{RefusedNoImage, RefusedManifest, RefusedSignature, RefusedAntiRollback, RefusedHealthCheck, RefusedQuorum, RefusedUnsupported}

// FirmwareRefusedData: the reconciler refused (or, for quorum, deferred)
// a desired firmware version. Apart from quorum, it does not try that
// desired version again; setting a desired version again does.
type FirmwareRefusedData struct {
	Version string `json:"version"`
	// Code is one of no-image, manifest, signature, anti-rollback,
	// health-check, quorum, unsupported.
	Code   string `json:"code"`
	Reason string `json:"reason"`
	// Target is the sequence of the refused firmware.desired event.
	Target uint64 `json:"target,omitempty"`
}

func (d *FirmwareRefusedData) Validate() error {
	if err := validateVersion("data.version", d.Version); err != nil {
		return err
	}
	if !slices.Contains(refusedCodes, d.Code) {
		return &FieldError{Field: "data.code", Reason: fmt.Sprintf("must be one of %s, not %q", strings.Join(refusedCodes, ", "), clip(d.Code))}
	}
	return validateText("data.reason", d.Reason, true)
}

// ValidVersion reports whether s is a firmware version: major.minor.patch,
// three decimal numbers 0..65535 without sign or leading zeros.
func ValidVersion(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		v, err := strconv.ParseUint(p, 10, 16)
		if err != nil || strconv.FormatUint(v, 10) != p {
			return false
		}
	}
	return true
}

func validateVersion(field, s string) error {
	if s == "" {
		return &FieldError{Field: field, Reason: "is required (major.minor.patch, e.g. 1.2.3)"}
	}
	if !ValidVersion(s) {
		return &FieldError{Field: field, Reason: fmt.Sprintf("%q is not major.minor.patch (numbers 0..65535, no leading zeros)", clip(s))}
	}
	return nil
}
