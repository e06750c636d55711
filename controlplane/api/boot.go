package api

import (
	"fmt"
	"net/http"

	"github.com/racklet/rack/controlplane/pki"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// BootRequest is the body of PUT /v1/nodes/{name}/boot: the node's desired
// boot. Source defaults to network. A network boot needs image (https),
// digest (sha256:<64 hex>) and keyId (16 hex); a local boot takes all
// three or none.
type BootRequest struct {
	Source events.BootSource `json:"source,omitempty"`
	Image  string            `json:"image,omitempty"`
	Digest string            `json:"digest,omitempty"`
	KeyID  string            `json:"keyId,omitempty"`
}

// BootStageReport is the body of POST /v1/nodes/{name}/boot/stages: a
// node's boot environment (or its OS) reporting the stage it reached, or
// that it failed in that stage (then with a reason).
type BootStageReport struct {
	Stage       events.BootStage `json:"stage"`
	Failed      bool             `json:"failed,omitempty"`
	Reason      string           `json:"reason,omitempty"`
	ImageDigest string           `json:"imageDigest,omitempty"`
}

// BootStageResponse answers a stage report: Recorded says whether it
// changed anything (a repeated report does not), Event is the event then
// committed, Sequence the log position either way.
type BootStageResponse struct {
	Recorded bool          `json:"recorded"`
	Sequence uint64        `json:"sequence"`
	Event    *events.Event `json:"event,omitempty"`
}

// validate checks the request field by field, with the API's field names.
func (b *BootRequest) validate() error {
	if b.Source == "" {
		b.Source = events.BootNetwork
	}
	if !b.Source.Valid() {
		return invalid("source", "must be network or local, not %q", clip(string(b.Source)))
	}
	if b.Source == events.BootLocal && b.Image == "" && b.Digest == "" && b.KeyID == "" {
		return nil
	}
	if err := events.ValidateImageURL("image", b.Image); err != nil {
		return err
	}
	if err := events.ValidateDigest("digest", b.Digest); err != nil {
		return err
	}
	return events.ValidateKeyID("keyId", b.KeyID)
}

func (s *Server) setBoot(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req BootRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := req.validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	ev, ok := s.command(w, r, name, events.NodeBootDesired, &events.BootDesiredData{Source: req.Source, Image: req.Image, Digest: req.Digest, KeyID: req.KeyID})
	if !ok {
		return
	}
	writeJSON(w, http.StatusAccepted, CommandResponse{Sequence: ev.Sequence, Event: ev})
}

func (s *Server) reportBootStage(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// authorize already let a node through for its own path only; the
	// router's view of the name must agree.
	if id, ok := IdentityFrom(r.Context()); ok && id.Kind == pki.KindNode && id.Name != name {
		s.writeError(w, r, &Error{Status: http.StatusForbidden, Code: CodeForbidden,
			Message: fmt.Sprintf("%s may only report its own boot stages, not node %q's", id, name)})
		return
	}
	var req BootStageReport
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := validateStageReport(req); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Linearizable: "only on change" compares with the latest state.
	if err := s.elog.Sync(r.Context()); err != nil {
		s.writeError(w, r, fmt.Errorf("syncing the log: %w", err))
		return
	}
	st, err := s.elog.State(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("reading state: %w", err))
		return
	}
	n, ok := st.Nodes[name]
	if !ok {
		s.writeError(w, r, objectError("node", name, state.ErrUnknownNode))
		return
	}
	b := n.Boot
	var target uint64
	if b != nil && b.DesiredSequence > 0 {
		target = b.DesiredSequence
		if req.ImageDigest != "" && b.Digest != "" && req.ImageDigest != b.Digest {
			s.writeError(w, r, &Error{Status: http.StatusConflict, Code: CodeConflict,
				Message: fmt.Sprintf("node %q reports image %s, but its boot spec (event %d) is image %s", name, req.ImageDigest, b.DesiredSequence, b.Digest)})
			return
		}
	}
	var (
		t events.Type
		p events.Payload
	)
	if req.Failed {
		if b != nil && b.Phase == state.BootFailed && b.FailedStage == req.Stage && b.Reason == req.Reason {
			writeJSON(w, http.StatusAccepted, BootStageResponse{Sequence: st.Sequence})
			return
		}
		t, p = events.NodeBootFailed, &events.BootFailedData{Stage: req.Stage, Reason: req.Reason, Target: target}
	} else {
		if b != nil && b.Stage == req.Stage && b.StageSequence >= b.StartedSequence && (req.ImageDigest == "" || req.ImageDigest == b.ImageDigest) {
			writeJSON(w, http.StatusAccepted, BootStageResponse{Sequence: st.Sequence})
			return
		}
		t, p = events.NodeBootStage, &events.BootStageData{Stage: req.Stage, Target: target, ImageDigest: req.ImageDigest, Via: events.ViaNode}
	}
	ev, ok := s.command(w, r, name, t, p)
	if !ok {
		return
	}
	writeJSON(w, http.StatusAccepted, BootStageResponse{Recorded: true, Sequence: ev.Sequence, Event: &ev})
}

func validateStageReport(req BootStageReport) error {
	switch {
	case req.Stage == "":
		return invalid("stage", "is required (firmware, bootstrap, image-verified, os or ready)")
	case !req.Stage.Valid():
		return invalid("stage", "must be firmware, bootstrap, image-verified, os or ready, not %q", clip(string(req.Stage)))
	case req.Failed && req.Reason == "":
		return invalid("reason", "is required when failed is true")
	case !req.Failed && req.Reason != "":
		return invalid("reason", "is only for failed reports")
	}
	if req.Reason != "" {
		if err := (&events.BootFailedData{Stage: req.Stage, Reason: req.Reason}).Validate(); err != nil {
			return invalid("reason", "must be at most 1024 bytes without control characters")
		}
	}
	if req.ImageDigest != "" {
		if err := events.ValidateDigest("imageDigest", req.ImageDigest); err != nil {
			return err
		}
	}
	return nil
}
