// Package etcdlog is the rack's event log on etcd: an eventlog.Log whose
// events are keys in an etcd cluster (each rackd embeds one member of it
// with `rackd --store etcd`, see StartServer; tests and benchmarks start a
// whole cluster in one process with StartCluster), and whose state is
// projected on every member from an etcd watch into an eventlog.Store, the
// same Store the Raft log's FSM uses.
//
// # Keys
//
// Every event is one key under the rack's prefix, its value the event as
// events.Encode writes it (CloudEvents 1.0 structured JSON, with the
// sequence extension):
//
//	/racklet/<rack>/events/<sequence, 20 digits, zero-padded>
//	/racklet/<rack>/head     the last sequence, in decimal
//	/racklet/<rack>/leader/  the election of AppendFenced (Config.Elect)
//	/racklet/<rack>/members/<name>  a rackd's NATS and API URLs (package member)
//
// so an operator can follow the log with
//
//	etcdctl watch --prefix /racklet/rack1/events/
//	etcdctl get --prefix /racklet/rack1/events/ --print-value-only
//
// Keys sort by sequence and are written in sequence order, so key order,
// etcd revision order and log order are one order. Other writers must leave
// the prefix alone: a key that does not continue the log there makes the
// log report ErrCorrupt.
//
// # Appends
//
// An append validates its batch (events.Event.Validate, then state.Apply on
// a copy of the projection, so a rejected batch gets the same errors as on
// every other implementation and is never written; a rejection stands only
// if a linearizable read of the head shows the projection was current, else
// the Log catches up and validates again), assigns the sequences that
// follow the projection's last one, and commits one transaction:
//
//	If(ModRevision(head) == the revision the projection was built at)
//	Then(Put(events/<seq>, event)…, Put(head, last seq))
//	Else(Get(head))
//
// The compare makes the sequence contiguous: a transaction built on a stale
// projection fails, the writer waits until its projection has applied the
// winner (Else tells it the head's revision), validates again and retries,
// with jittered backoff and at most MaxAttempts tries (then ErrContention).
// A Log runs one transaction at a time, so its own callers queue rather
// than race; only different Logs (members) contend.
//
// Exactly once: a transaction whose outcome is unknown (a timeout, a lost
// connection, a leader change inside etcd) may still be applied later, but
// only while the head is at the revision its compare names. The writer
// then syncs (below) and looks the batch's first event id up in the Store
// (event ids are random and set by the writer): found, the append
// succeeded; not found, it builds a new transaction on the newer
// projection. Every attempt's compare names a head revision the projection
// had reached, so of all attempts of one batch at most one can ever apply,
// and the lookup before each new attempt finds it if it did.
//
// # Projection, reads and Sync
//
// Each Log reads the keys after its last applied sequence (paged, at one
// revision), then watches the rack's prefix from the next revision, and
// applies each transaction's events (decoded with events.Decode) as one
// batch to its Store, checking that the sequences in the keys are the ones
// the Store assigns. Read, Watch and State read the Store. Sync is the
// linearizable barrier: a linearizable Get of the head key gives its
// ModRevision, and Sync waits until the projection has applied the
// transaction of that revision. An append returns once its own Log has
// applied it (read your writes).
//
// Keys are never deleted, so etcd compaction (of old revisions) does not
// lose events: when the watch is compacted or breaks, the Log reads the keys
// after its last sequence again and watches on. With CompactInterval the
// leader compacts the revisions before the oldest event of the retention
// window (compact.go). Limit: the log grows in etcd without bound (every
// event stays a live key), and a Log that opens replays it from sequence 1;
// the Store keeps only the last Retention events readable. Moving old
// events into a snapshot key is future work.
//
// # Fencing
//
// With Config.Elect the Log campaigns for leadership of the rack
// (concurrency.Election on /racklet/<rack>/leader/, on a lease of
// ElectionTTL seconds). AppendFenced succeeds only on the current leader,
// and its transaction also compares the election key's CreateRevision
// with the one this Log won: a Log whose lease expired (a deposed leader,
// even one that does not know it yet) cannot commit, and gets
// eventlog.ErrNotLeader. Without Elect the Log is never the leader and
// AppendFenced always returns eventlog.ErrNotLeader. Close resigns (the next
// candidate leads at once); Kill only stops renewing the lease, so the
// leadership passes when it expires, as after a crash. Leader names the
// current leader.
package etcdlog
