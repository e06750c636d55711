package reconcilers

import (
	"context"
	"errors"
	"time"

	"github.com/racklet/rack/events"
)

// Request names the object to reconcile: the subject of an input event,
// e.g. node "n3".
type Request struct {
	Name string
}

// Result tells the runtime when to run the request again, regardless of
// events. The zero Result means "done until an input changes".
type Result struct {
	// RequeueAfter > 0 reconciles the name again after this long (at least
	// the runtime's Backoff.Base, so a reconciler cannot spin).
	RequeueAfter time.Duration
}

// Reconciler drives one kind of object from its desired towards its
// observed state. It is told only which object changed; it reads the state
// projection itself, acts, and records what it did as events. It must be
// idempotent: the runtime may call it for a name at any time, and more than
// once for the same change.
type Reconciler interface {
	// Name identifies the reconciler in logs, metrics and events:
	// [a-z0-9-]{1,63}.
	Name() string
	// Inputs are the event types whose subjects wake the reconciler.
	Inputs() []events.Type
	// Outputs are the event types the reconciler writes. Apart from the
	// shared action events (see SharedOutputs), each type has one owner.
	Outputs() []events.Type
	// Reconcile brings the named object to its desired state. It must
	// return soon after ctx ends (leadership lost or shutdown).
	// A nil error with a zero Result means done; an error is retried with
	// backoff, unless wrapped by Terminal.
	Reconcile(ctx context.Context, req Request) (Result, error)
}

// Lister is implemented by reconcilers that want every object they manage
// enqueued when they start on a new leader (resync), so that changes
// missed while not leading are handled.
type Lister interface {
	List(ctx context.Context) ([]string, error)
}

// terminalError marks an error that retrying cannot fix.
type terminalError struct{ err error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// Terminal wraps err so that the runtime records it and does not retry the
// request until an input event (or a resync) wakes the name again. Use it
// for errors that retrying cannot fix, such as invalid desired state.
// Terminal(nil) is nil.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err: err}
}

// IsTerminal reports whether err (or an error it wraps) came from Terminal.
func IsTerminal(err error) bool {
	var t *terminalError
	return errors.As(err, &t)
}
