package events

import (
	"fmt"
	"net/url"
	"strings"
)

// Boot and hot-swap event types (schema version 1).
const (
	// NodeBootDesired: an operator set the node's boot spec (source and
	// OS image).
	NodeBootDesired Type = "io.racklet.node.boot.desired"
	// NodeBootStarted: the boot reconciler verified the spec's image, set
	// the node's next boot source and asked for a power cycle (committed
	// in the same batch as that node.power.desired cycle).
	NodeBootStarted Type = "io.racklet.node.boot.started"
	// NodeBootStage: the node reached a boot stage (reported by the node,
	// or observed through its BMC); recorded only when it changes.
	NodeBootStage Type = "io.racklet.node.boot.stage"
	// NodeBootFailed: a boot did not complete: a stage timed out, the node
	// reported a failure, or it could not be started.
	NodeBootFailed Type = "io.racklet.node.boot.failed"
	// NodeBootRefused: the spec's image did not verify (signature, key,
	// digest, component); the node was not cycled.
	NodeBootRefused Type = "io.racklet.node.boot.refused"
	// NodeInserted: a compute unit was seen seated in the node's slot.
	NodeInserted Type = "io.racklet.node.inserted"
)

// BootSource is where a node boots from next.
type BootSource string

const (
	// BootNetwork: the verified network boot environment (bootstrap)
	// fetches the OS image, checks it and boots it.
	BootNetwork BootSource = "network"
	// BootLocal: the OS installed on the node's own storage.
	BootLocal BootSource = "local"
)

// Valid reports whether s is network or local.
func (s BootSource) Valid() bool { return s == BootNetwork || s == BootLocal }

// BootStage is a stage of a node's boot, in the order a boot passes them:
// firmware, bootstrap, image-verified, os, ready. A local boot skips
// bootstrap and image-verified. BootStageOff names no stage: it is used
// only in node.boot.failed for a boot that never started.
type BootStage string

const (
	BootStageOff           BootStage = "off"
	BootStageFirmware      BootStage = "firmware"
	BootStageBootstrap     BootStage = "bootstrap"
	BootStageImageVerified BootStage = "image-verified"
	BootStageOS            BootStage = "os"
	BootStageReady         BootStage = "ready"
)

// BootStages are the stages a node reports, in order.
var BootStages = []BootStage{BootStageFirmware, BootStageBootstrap, BootStageImageVerified, BootStageOS, BootStageReady}

// Valid reports whether s is one of BootStages.
func (s BootStage) Valid() bool {
	for _, v := range BootStages {
		if s == v {
			return true
		}
	}
	return false
}

// Digest prefix of an image digest: sha256:<64 lowercase hex digits>.
const DigestPrefix = "sha256:"

// MaxURL bounds an image URL.
const MaxURL = 1024

// ValidateImageURL checks an OS image URL: absolute https, with a host,
// without user info, query or fragment (the manifest's URL is the image's
// with a suffix appended), at most MaxURL bytes of printable ASCII.
func ValidateImageURL(field, s string) error {
	if s == "" {
		return &FieldError{Field: field, Reason: "is required"}
	}
	if len(s) > MaxURL {
		return &FieldError{Field: field, Reason: fmt.Sprintf("is longer than %d bytes", MaxURL)}
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return &FieldError{Field: field, Reason: "must be printable ASCII without spaces"}
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return &FieldError{Field: field, Reason: fmt.Sprintf("is not a URL: %v", err)}
	case u.Scheme != "https":
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be an https URL, not %q", clip(s))}
	case u.Host == "" || u.Hostname() == "":
		return &FieldError{Field: field, Reason: "has no host"}
	case u.User != nil:
		return &FieldError{Field: field, Reason: "must not carry user info"}
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return &FieldError{Field: field, Reason: "must not have a query or fragment"}
	case u.Path == "" || strings.HasSuffix(u.Path, "/"):
		return &FieldError{Field: field, Reason: "must name a file, not a directory"}
	}
	return nil
}

// ValidateDigest checks sha256:<64 lowercase hex digits>.
func ValidateDigest(field, s string) error {
	if s == "" {
		return &FieldError{Field: field, Reason: "is required"}
	}
	h, ok := strings.CutPrefix(s, DigestPrefix)
	if !ok || !lowerHex(h, 64) {
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be sha256:<64 lowercase hex digits>, not %q", clip(s))}
	}
	return nil
}

// ValidateKeyID checks a signing key id: 16 lowercase hex digits (see
// firmware.KeyID).
func ValidateKeyID(field, s string) error {
	if s == "" {
		return &FieldError{Field: field, Reason: "is required"}
	}
	if !lowerHex(s, 16) {
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be 16 lowercase hex digits, not %q", clip(s))}
	}
	return nil
}

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// BootDesiredData: a node's desired boot spec. A network boot needs the
// image, its digest and the id of the key that signed its manifest; a
// local boot may name the image it expects (then all three are given and
// verified too) or none.
type BootDesiredData struct {
	Source BootSource `json:"source"`
	// Image is the https URL of the OS image; its signed manifest is at
	// Image + ".manifest.json" (firmware.ManifestSuffix).
	Image string `json:"image,omitempty"`
	// Digest is the image's sha256:<hex>, as its manifest must say.
	Digest string `json:"digest,omitempty"`
	// KeyID names the ed25519 key that must have signed the manifest.
	KeyID string `json:"keyId,omitempty"`
}

func (d *BootDesiredData) Validate() error {
	if err := validateBootSource("data.source", d.Source); err != nil {
		return err
	}
	if d.Source == BootLocal && d.Image == "" && d.Digest == "" && d.KeyID == "" {
		return nil
	}
	if err := ValidateImageURL("data.image", d.Image); err != nil {
		return err
	}
	if err := ValidateDigest("data.digest", d.Digest); err != nil {
		return err
	}
	return ValidateKeyID("data.keyId", d.KeyID)
}

func validateBootSource(field string, s BootSource) error {
	switch {
	case s == "":
		return &FieldError{Field: field, Reason: "is required (network or local)"}
	case !s.Valid():
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be network or local, not %q", clip(string(s)))}
	}
	return nil
}

// BootStartedData: the boot reconciler started the boot of the spec at
// sequence Target: image verified, next boot source set, power cycle asked.
type BootStartedData struct {
	Target uint64     `json:"target"`
	Source BootSource `json:"source"`
}

func (d *BootStartedData) Validate() error {
	if d.Target == 0 {
		return &FieldError{Field: "data.target", Reason: "is required (the sequence of the node.boot.desired)"}
	}
	return validateBootSource("data.source", d.Source)
}

// Where a stage was learnt (BootStageData.Via).
const (
	ViaBMC  = "bmc"
	ViaNode = "node"
)

// BootStageData: the node reached Stage.
type BootStageData struct {
	Stage BootStage `json:"stage"`
	// Target is the sequence of the boot spec being booted, 0 if none.
	Target uint64 `json:"target,omitempty"`
	// ImageDigest is the digest of the image the node booted, if it said.
	ImageDigest string `json:"imageDigest,omitempty"`
	// Via: bmc (observed through the BMC) or node (reported by the node).
	Via string `json:"via,omitempty"`
}

func (d *BootStageData) Validate() error {
	if err := validateStage("data.stage", d.Stage, false); err != nil {
		return err
	}
	if d.ImageDigest != "" {
		if err := ValidateDigest("data.imageDigest", d.ImageDigest); err != nil {
			return err
		}
	}
	switch d.Via {
	case "", ViaBMC, ViaNode:
		return nil
	}
	return &FieldError{Field: "data.via", Reason: fmt.Sprintf("must be bmc or node, not %q", clip(d.Via))}
}

func validateStage(field string, s BootStage, offOK bool) error {
	switch {
	case s == "":
		return &FieldError{Field: field, Reason: "is required (firmware, bootstrap, image-verified, os or ready)"}
	case s.Valid(), offOK && s == BootStageOff:
		return nil
	}
	return &FieldError{Field: field, Reason: fmt.Sprintf("must be firmware, bootstrap, image-verified, os or ready, not %q", clip(string(s)))}
}

// BootFailedData: the boot of the spec at Target failed in Stage (off: it
// never started).
type BootFailedData struct {
	Stage  BootStage `json:"stage"`
	Reason string    `json:"reason"`
	Target uint64    `json:"target,omitempty"`
}

func (d *BootFailedData) Validate() error {
	if err := validateStage("data.stage", d.Stage, true); err != nil {
		return err
	}
	return validateText("data.reason", d.Reason, true)
}

// BootRefusedData: the image of the spec at Target did not verify.
type BootRefusedData struct {
	Reason string `json:"reason"`
	Target uint64 `json:"target"`
}

func (d *BootRefusedData) Validate() error {
	if d.Target == 0 {
		return &FieldError{Field: "data.target", Reason: "is required (the sequence of the node.boot.desired)"}
	}
	return validateText("data.reason", d.Reason, true)
}

// NodeInsertedData: a unit was seen seated in Slot.
type NodeInsertedData struct {
	Slot int `json:"slot"`
}

func (d *NodeInsertedData) Validate() error {
	if d.Slot < 1 || d.Slot > 1024 {
		return &FieldError{Field: "data.slot", Reason: "must be between 1 and 1024"}
	}
	return nil
}
