package raftlog

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// Members talk to each other over NATS request/reply on
//
//	racklet.<rack>.member.<name>.<op>   one member's own operations
//	racklet.<rack>.members.join         any member (queue group), for newcomers
//
// with JSON bodies. Operations that need the leader are refused by a
// follower with errNotLeader, and the caller goes to the leader.
const (
	opAppend    = "append"
	opReadIndex = "readindex"
	opJoin      = "join"
	opRemove    = "remove"
	opInfo      = "info"
)

func memberSubject(rack, member, op string) string {
	return "racklet." + rack + ".member." + member + "." + op
}

func joinSubject(rack string) string { return "racklet." + rack + ".members.join" }

// errNotLeader: this member is not the leader; the caller retries with the
// leader. Safe to retry: nothing was proposed.
var errNotLeader = errors.New("raftlog: not the leader")

// errUnknownOutcome: the proposal may or may not have been committed.
var errUnknownOutcome = errors.New("raftlog: outcome unknown")

// reply is the envelope of every member-to-member response.
type reply struct {
	Error  *wireError      `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// wireError carries an error across members, keeping what errors.Is/As
// callers rely on.
type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

var wireSentinels = []struct {
	code string
	err  error
}{
	{"not_leader", errNotLeader},
	{"unknown_outcome", errUnknownOutcome},
	{"no_leader", eventlog.ErrNoLeader},
	{"not_the_leader", eventlog.ErrNotLeader},
	{"compacted", eventlog.ErrCompacted},
	{"closed", eventlog.ErrClosed},
	{"unknown_node", state.ErrUnknownNode},
	{"node_exists", state.ErrNodeExists},
	{"unknown_member", state.ErrUnknownMember},
	{"batch_too_large", ErrBatchTooLarge},
}

func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	var fe *events.FieldError
	if errors.As(err, &fe) {
		return &wireError{Code: "invalid", Message: err.Error(), Field: fe.Field, Reason: fe.Reason}
	}
	for _, s := range wireSentinels {
		if errors.Is(err, s.err) {
			return &wireError{Code: s.code, Message: err.Error()}
		}
	}
	return &wireError{Code: "internal", Message: err.Error()}
}

// remoteError is an error that happened on another member.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func (w *wireError) err() error {
	if w == nil {
		return nil
	}
	if w.Code == "invalid" {
		return &events.FieldError{Field: w.Field, Reason: w.Reason}
	}
	for _, s := range wireSentinels {
		if s.code == w.Code {
			return &remoteError{msg: w.Message, sentinel: s.err}
		}
	}
	return &remoteError{msg: w.Message}
}

func encodeReply(result any, err error) []byte {
	r := reply{Error: toWire(err)}
	if err == nil && result != nil {
		b, mErr := json.Marshal(result)
		if mErr != nil {
			r.Error = toWire(fmt.Errorf("encoding reply: %w", mErr))
		} else {
			r.Result = b
		}
	}
	b, _ := json.Marshal(r)
	return b
}

func decodeReply(data []byte, result any) error {
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("decoding reply: %w", err)
	}
	if r.Error != nil {
		return r.Error.err()
	}
	if result != nil && len(r.Result) > 0 {
		if err := json.Unmarshal(r.Result, result); err != nil {
			return fmt.Errorf("decoding reply: %w", err)
		}
	}
	return nil
}

type appendRequest struct {
	Events []events.Event `json:"events"`
}

type appendResponse struct {
	Events []events.Event `json:"events"`
}

type indexResponse struct {
	Index uint64 `json:"index"`
}

type joinRequest struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

type removeRequest struct {
	Name string `json:"name"`
}

// infoResponse is what a member says about itself.
type infoResponse struct {
	Name         string `json:"name"`
	NATSURL      string `json:"natsURL,omitempty"`
	APIURL       string `json:"apiURL,omitempty"`
	AppliedIndex uint64 `json:"appliedIndex"`
	CommitIndex  uint64 `json:"commitIndex"`
	State        string `json:"state"`
}
