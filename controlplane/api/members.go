package api

import (
	"fmt"
	"net/http"
)

// MemberList is the body of GET /v1/members.
type MemberList struct {
	Members []MemberInfo `json:"members"`
}

// Status is the body of /healthz and /readyz when all is well.
type Status struct {
	Status string `json:"status"`
	Member string `json:"member"`
}

var errNoCluster = &Error{Status: http.StatusNotImplemented, Code: CodeNotImplemented, Message: "this member has no cluster membership to show"}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) {
	if s.cluster == nil {
		s.writeError(w, r, errNoCluster)
		return
	}
	ms, err := s.cluster.Members(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("listing members: %w", err))
		return
	}
	if ms == nil {
		ms = []MemberInfo{}
	}
	writeJSON(w, http.StatusOK, MemberList{Members: ms})
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.cluster == nil {
		s.writeError(w, r, errNoCluster)
		return
	}
	if err := s.cluster.RemoveMember(r.Context(), name); err != nil {
		s.writeError(w, r, objectError("member", name, fmt.Errorf("removing member %s: %w", name, err)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Status{Status: "ok", Member: s.member})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	var err error
	if s.cluster != nil {
		err = s.cluster.Ready(r.Context())
	} else {
		err = s.elog.Sync(r.Context())
	}
	if err != nil {
		// Not ready is an answer, not a failure: always 503, saying why.
		if e := toError(err); e.Status != http.StatusServiceUnavailable {
			err = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "not ready: " + err.Error(), Err: err}
		}
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Status{Status: "ready", Member: s.member})
}
