package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// Stable error codes of the API. A client matches on the code, never on the
// message.
const (
	CodeInvalid          = "invalid"            // 400: the request is malformed; the message names the field
	CodeNotFound         = "not_found"          // 404: no such node, member or route
	CodeMethodNotAllowed = "method_not_allowed" // 405: the route exists, the method does not
	CodeConflict         = "conflict"           // 409: the object already exists
	CodeQuorumGuard      = "quorum_guard"       // 409: powering the node off would break the control plane's quorum (use force)
	CodeCompacted        = "compacted"          // 410: the events asked for are older than the log keeps
	CodeTooLarge         = "too_large"          // 413: the body is larger than MaxBodyBytes
	CodeInternal         = "internal"           // 500: a bug or an unexpected failure; see the server's log
	CodeNotImplemented   = "not_implemented"    // 501: this member does not offer the operation
	CodeUnavailable      = "unavailable"        // 503: no leader, shutting down or not ready; retry later
	CodeTimeout          = "timeout"            // 504: the request's deadline passed before the log answered
)

// RetryAfterSeconds is the Retry-After a 503 carries: about one Raft
// election.
const RetryAfterSeconds = 2

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error is an error with an HTTP status and a stable code.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error // the cause, if any; never shown to the client
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Message: "invalid " + field + ": " + fmt.Sprintf(format, args...)}
}

// toError maps err to the API error it is shown as.
func toError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var fe *events.FieldError
	switch {
	case errors.As(err, &fe):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Message: "invalid " + fe.Field + ": " + fe.Reason, Err: err}
	case errors.Is(err, state.ErrUnknownNode):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "node is not registered", Err: err}
	case errors.Is(err, state.ErrUnknownMember):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "member is not known", Err: err}
	case errors.Is(err, state.ErrNodeExists):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "node is already registered", Err: err}
	case errors.Is(err, state.ErrQuorumGuard):
		return &Error{Status: http.StatusConflict, Code: CodeQuorumGuard, Message: strings.TrimPrefix(err.Error(), "state: quorum guard: "), Err: err}
	case errors.Is(err, eventlog.ErrNoLeader):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: fmt.Sprintf("no control-plane leader is known (an election may be under way); retry in %d seconds", RetryAfterSeconds), Err: err}
	case errors.Is(err, eventlog.ErrClosed):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: fmt.Sprintf("this member is shutting down; retry in %d seconds or ask another member", RetryAfterSeconds), Err: err}
	case errors.Is(err, eventlog.ErrCompacted):
		return &Error{Status: http.StatusGone, Code: CodeCompacted, Message: err.Error(), Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusGatewayTimeout, Code: CodeTimeout, Message: "the request timed out waiting for the event log; a command may still be committed, so check the events (GET /v1/events) before retrying", Err: err}
	case errors.Is(err, context.Canceled):
		// The client went away or the server is shutting down; nobody
		// reads this, but say something sensible.
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the request was canceled", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error; see the server's log", Err: err}
}

// objectError names the object in a not-found or conflict error, which
// the log reports without a stable place for the name.
func objectError(kind, name string, err error) error {
	switch {
	case errors.Is(err, state.ErrUnknownNode), errors.Is(err, state.ErrUnknownMember):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("%s %q is not registered", kind, name), Err: err}
	case errors.Is(err, state.ErrNodeExists):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf("%s %q is already registered", kind, name), Err: err}
	}
	return err
}

// writeError writes err as a JSON error response, logging unexpected ones.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := toError(err)
	switch {
	case e.Status >= 500 && e.Code == CodeInternal:
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case e.Status >= 500:
		s.log.WarnContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "code", e.Code, "err", err)
	default:
		s.log.DebugContext(r.Context(), "request rejected", "method", r.Method, "path", r.URL.Path, "code", e.Code, "message", e.Message)
	}
	if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
	writeJSON(w, e.Status, ErrorBody{Code: e.Code, Message: e.Message})
}

var _ error = (*Error)(nil)

// discardLogger is used when Config.Logger is nil.
var discardLogger = slog.New(slog.DiscardHandler)
