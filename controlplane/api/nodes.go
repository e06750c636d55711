package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// NodeList is the body of GET /v1/nodes.
type NodeList struct {
	// Sequence is the log position the list reflects.
	Sequence uint64        `json:"sequence"`
	Nodes    []*state.Node `json:"nodes"`
}

// RegisterNodeRequest is the body of POST /v1/nodes.
type RegisterNodeRequest struct {
	Name   string `json:"name"`
	Slot   int    `json:"slot,omitempty"`
	Member string `json:"member,omitempty"`
}

// PowerRequest is the body of PUT /v1/nodes/{name}/power.
type PowerRequest struct {
	State events.PowerState `json:"state"`
	// Force overrides the quorum guard.
	Force bool `json:"force,omitempty"`
}

// CommandResponse answers a command: the event it committed and its sequence.
type CommandResponse struct {
	Sequence uint64       `json:"sequence"`
	Event    events.Event `json:"event"`
}

// MaxSlot is the highest slot number a node may have.
const MaxSlot = 1024

// pathName returns the {name} path value, checked.
func pathName(r *http.Request, field string) (string, error) {
	name := r.PathValue("name")
	if !events.ValidName(name) {
		return "", invalid(field, "%q is not a valid name: use 1 to 63 of a-z, 0-9 and -", clip(name))
	}
	return name, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	if err := s.sync(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.elog.State(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("reading state: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, NodeList{Sequence: st.Sequence, Nodes: st.NodeList()})
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.sync(r); err != nil {
		s.writeError(w, r, err)
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
	writeJSON(w, http.StatusOK, n)
}

func (s *Server) registerNode(w http.ResponseWriter, r *http.Request) {
	var req RegisterNodeRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := events.ValidateName("name", req.Name); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Slot < 0 || req.Slot > MaxSlot {
		s.writeError(w, r, invalid("slot", "must be between 0 and %d, not %d", MaxSlot, req.Slot))
		return
	}
	if req.Member != "" {
		if err := events.ValidateName("member", req.Member); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	ev, ok := s.command(w, r, req.Name, events.NodeRegistered, &events.NodeRegisteredData{Slot: req.Slot, Member: req.Member})
	if !ok {
		return
	}
	w.Header().Set("Location", "/v1/nodes/"+req.Name)
	writeJSON(w, http.StatusCreated, CommandResponse{Sequence: ev.Sequence, Event: ev})
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	d := &events.NodeRemovedData{Reason: r.URL.Query().Get("reason")}
	if err := d.Validate(); err != nil {
		s.writeError(w, r, invalid("reason", "must be at most 1024 bytes without control characters"))
		return
	}
	ev, ok := s.command(w, r, name, events.NodeRemoved, d)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, CommandResponse{Sequence: ev.Sequence, Event: ev})
}

func (s *Server) setPower(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req PowerRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	switch req.State {
	case events.PowerOn, events.PowerOff, events.PowerCycle:
	case "":
		s.writeError(w, r, invalid("state", "is required (on, off or cycle)"))
		return
	default:
		s.writeError(w, r, invalid("state", "must be on, off or cycle, not %q", clip(string(req.State))))
		return
	}
	if req.State != events.PowerOn && !req.Force {
		// The power reconciler enforces the quorum guard when it acts (a
		// node.power.refused event); checking here too gives the operator
		// the refusal at once. This member's applied state is enough for
		// that courtesy: a linearizable read would cost a follower a
		// commit round (20-40 ms) on every power-off.
		st, err := s.elog.State(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		// Only a refusal counts here: a node this member does not know
		// yet (it may be catching up after a restart) is for the log to
		// judge when the command is applied.
		if err := st.QuorumGuard(name); errors.Is(err, state.ErrQuorumGuard) {
			s.writeError(w, r, err)
			return
		}
	}
	ev, ok := s.command(w, r, name, events.NodePowerDesired, &events.PowerDesiredData{State: req.State, Force: req.Force})
	if !ok {
		return
	}
	writeJSON(w, http.StatusAccepted, CommandResponse{Sequence: ev.Sequence, Event: ev})
}

// command builds one event about the node and appends it. On failure it has
// written the error response and returns false.
func (s *Server) command(w http.ResponseWriter, r *http.Request, node string, t events.Type, p events.Payload) (events.Event, bool) {
	ev, err := events.New(s.source, t, node, p)
	if err != nil {
		s.writeError(w, r, err)
		return events.Event{}, false
	}
	ev.Actor = actor(r)
	out, err := s.elog.Append(r.Context(), ev)
	if err != nil {
		s.writeError(w, r, objectError("node", node, fmt.Errorf("appending %s: %w", t, err)))
		return events.Event{}, false
	}
	if len(out) != 1 {
		s.writeError(w, r, fmt.Errorf("appending %s: the log returned %d events for 1", t, len(out)))
		return events.Event{}, false
	}
	s.log.InfoContext(r.Context(), "command committed", "type", string(t), "subject", node, "sequence", out[0].Sequence, "actor", ev.Actor)
	return out[0], true
}
