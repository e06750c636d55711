package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// FirmwareList is the body of GET /v1/firmware.
type FirmwareList struct {
	// Sequence is the log position the list reflects.
	Sequence uint64            `json:"sequence"`
	Firmware []*state.Firmware `json:"firmware"`
}

// FirmwareRequest is the body of PUT /v1/firmware/{name}.
type FirmwareRequest struct {
	// Version is major.minor.patch, e.g. "1.2.3".
	Version string `json:"version"`
}

// firmwareName returns the {name} path value: a firmware component
// ("<node>-bmc") and its node.
func firmwareName(r *http.Request) (name, node string, err error) {
	name = r.PathValue("name")
	if !events.ValidName(name) {
		return "", "", invalid("name", "%q is not a valid name: use 1 to 63 of a-z, 0-9 and -", clip(name))
	}
	node, _, ok := state.ParseFirmwareName(name)
	if !ok {
		return "", "", invalid("name", "%q is not a firmware component: use <node>-bmc, e.g. n3-bmc (the RMC cannot be updated yet)", clip(name))
	}
	return name, node, nil
}

// unknownFirmwareNode is the 404 of a firmware component whose node is
// not registered.
func unknownFirmwareNode(name, node string, err error) error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("firmware %s: node %q is not registered", name, node), Err: err}
}

func (s *Server) listFirmware(w http.ResponseWriter, r *http.Request) {
	if err := s.sync(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.elog.State(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("reading state: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, FirmwareList{Sequence: st.Sequence, Firmware: st.FirmwareList()})
}

// getFirmware answers one component; a registered node's BMC that has
// been neither observed nor given a desired version yet is answered
// with its name only.
func (s *Server) getFirmware(w http.ResponseWriter, r *http.Request) {
	name, node, err := firmwareName(r)
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
	if _, ok := st.Nodes[node]; !ok {
		s.writeError(w, r, unknownFirmwareNode(name, node, state.ErrUnknownNode))
		return
	}
	f := st.Firmware[name]
	if f == nil {
		f = &state.Firmware{Name: name, Node: node, Component: state.ComponentBMC}
	}
	writeJSON(w, http.StatusOK, f)
}

// setFirmware records the version a component should run; the firmware
// reconciler installs it (or refuses it, as an event).
func (s *Server) setFirmware(w http.ResponseWriter, r *http.Request) {
	name, node, err := firmwareName(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req FirmwareRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	d := &events.FirmwareDesiredData{Version: req.Version}
	if err := d.Validate(); err != nil {
		var fe *events.FieldError
		if errors.As(err, &fe) {
			s.writeError(w, r, invalid("version", "%s", fe.Reason))
			return
		}
		s.writeError(w, r, err)
		return
	}
	ev, err := events.New(s.source, events.FirmwareDesired, name, d)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ev.Actor = actor(r)
	out, err := s.elog.Append(r.Context(), ev)
	switch {
	case errors.Is(err, state.ErrUnknownNode):
		s.writeError(w, r, unknownFirmwareNode(name, node, err))
		return
	case err != nil:
		s.writeError(w, r, fmt.Errorf("appending %s: %w", events.FirmwareDesired, err))
		return
	case len(out) != 1:
		s.writeError(w, r, fmt.Errorf("appending %s: the log returned %d events for 1", events.FirmwareDesired, len(out)))
		return
	}
	s.log.InfoContext(r.Context(), "command committed", "type", string(events.FirmwareDesired), "subject", name, "sequence", out[0].Sequence, "actor", ev.Actor)
	writeJSON(w, http.StatusAccepted, CommandResponse{Sequence: out[0].Sequence, Event: out[0]})
}
