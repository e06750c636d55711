// Package reconcilers is the reconciler runtime: it runs the rack's
// reconcilers (one sub-package each: power, boot, fans, …) on the leader,
// wakes them when their inputs change, and retries them until the rack
// matches what is desired. It follows controller-runtime's level-triggered
// Reconcile and Talos COSI's controllers with declared inputs and outputs.
//
// # Writing a reconciler
//
// Implement Reconciler:
//
//   - Name: [a-z0-9-]{1,63}, used in logs, metrics and action events.
//   - Inputs: the event types whose subjects wake it. An event of an input
//     type about subject "n3" calls Reconcile with Request{Name: "n3"}.
//   - Outputs: the event types it writes. Each type has one owner; a
//     second reconciler declaring it fails Register with ErrOutputOwned.
//     The action events (SharedOutput) are exempt: every reconciler
//     records its actions with them. A type may not be both an input and an
//     output of one reconciler, so it cannot wake itself.
//   - Reconcile: read the state projection (eventlog.Log.State), compare
//     desired with observed, act, record what was done. Commit an
//     action.started event before touching hardware: a deposed leader
//     cannot commit, so it cannot act. Reconcile is told only which object
//     changed, never how; it must be idempotent and return soon after its
//     context ends.
//
// Return Result{RequeueAfter: d} to look again after d (polling hardware
// that does not report changes), an error to retry with backoff, or
// Terminal(err) for an error retrying cannot fix (the request is dropped
// until an input event or a resync wakes the name again). The Result is
// ignored when the error is not nil.
//
// Implement Lister as well, returning every name the reconciler manages:
// the runtime enqueues them all when this member becomes leader, so that
// changes made while it did not lead are handled. Without a Lister those
// changes wait for the next input event.
//
// Register the reconcilers on a Runtime (New, Register, then Run). Workers
// sets how many names one reconciler handles in parallel (default 1).
//
// # What the runtime guarantees
//
//   - Reconcilers run only while Leadership says this member leads. When
//     leadership is lost (or Run's context ends), their contexts are
//     cancelled and the runtime waits for in-flight Reconcile calls to
//     return before anything else happens. Every leadership term starts
//     afresh: queues, backoffs and terminal errors of the previous term are
//     forgotten.
//   - On becoming leader the runtime syncs the log, watches it from the
//     next sequence after the applied state and enqueues every name from
//     each Lister (resync). A failed watch is restarted the same way, after
//     backoff, so no change is missed.
//   - One name is never reconciled concurrently with itself. Wake-ups are
//     coalesced: a name already queued is not queued twice; a name that
//     changes while being reconciled is reconciled once more afterwards.
//   - Errors are retried per name with exponential backoff and jitter
//     (Config.Backoff, by default 50ms doubling to 30s, ±20%), reset on
//     success. RequeueAfter is at least Backoff.Base. Nothing spins.
//   - The latest Reconcile of a name decides its next scheduled run: it
//     replaces any pending requeue or retry of that name.
//   - A panicking Reconcile is logged with its stack and retried like an
//     error.
//
// # Metrics
//
// On Config.Registerer: racklet_reconcile_duration_seconds{reconciler},
// racklet_reconcile_total{reconciler,result=success|requeue|retry|terminal},
// racklet_reconcile_errors_total{reconciler,kind=retry|terminal},
// racklet_reconcile_queue_depth{reconciler} and racklet_reconcile_leading.
package reconcilers
