// Package natstransport provides a hashicorp/raft Transport that carries Raft
// RPCs over NATS request/reply.
//
// Every control-plane member runs an embedded nats-server and the servers form
// one NATS cluster, so a member's connection reaches any other member by
// subject. A raft.ServerAddress is simply the member's name ([a-z0-9-]{1,63});
// there are no IP addresses in the Raft configuration.
//
// # Subjects
//
// A transport for member <addr> of rack <rack> subscribes to:
//
//	racklet.<rack>.raft.<addr>.heartbeat      AppendEntries heartbeats (fast path)
//	racklet.<rack>.raft.<addr>.appendentries  AppendEntries with entries, pipelined or not
//	racklet.<rack>.raft.<addr>.requestvote    RequestVote
//	racklet.<rack>.raft.<addr>.prevote        RequestPreVote
//	racklet.<rack>.raft.<addr>.timeoutnow     TimeoutNow (leadership transfer)
//	racklet.<rack>.raft.<addr>.snapshot       InstallSnapshot transfers (begin, chunk, end, abort)
//
// Each subject has its own subscription and therefore its own delivery
// goroutine, so a slow disk write behind an AppendEntries never queues a vote,
// a heartbeat or a snapshot chunk behind it. Messages of one subscription are
// handled one at a time, in arrival order, so the AppendEntries of one leader
// are processed in the order they were sent.
//
// All subjects live under racklet.<rack>.raft.>, so a member needs permission
// to subscribe to racklet.<rack>.raft.<self>.> and to publish to
// racklet.<rack>.raft.*.> (plus its replies). Replies travel to the
// connection's inbox prefix (_INBOX.> by default; use nats.CustomInboxPrefix
// on the connection to move them, e.g. under racklet.<rack>.raft.<self>.inbox).
//
// # Wire format
//
// Requests and responses are raft's own structs encoded with go-msgpack
// (codec.MsgpackHandle, the same settings as raft's NetworkTransport). Metadata
// travels in NATS headers:
//
//	Racklet-Raft-Error     error string returned by the remote side
//	Racklet-Raft-Seq       pipeline sequence number, echoed by the receiver
//	Racklet-Raft-Transfer  snapshot transfer id
//	Racklet-Raft-Op        snapshot message kind: begin, chunk, end, abort
//	Racklet-Raft-Chunk     snapshot chunk number, starting at 0
//
// # Snapshots
//
// InstallSnapshot is a chunked, acknowledged transfer that works for snapshots
// of any size, well beyond the server's max payload. The sender picks a random
// transfer id and sends a begin message carrying the InstallSnapshotRequest,
// then the data in chunks of Config.ChunkSize, one at a time, then an end
// message. The receiver hands Raft an RPC whose Reader is an io.Pipe fed by
// the chunks and acknowledges a chunk only after Raft has read all of it, which
// gives end-to-end backpressure. The reply to the end message is Raft's
// InstallSnapshotResponse. A transfer whose sender goes quiet for
// Config.SnapshotIdleTimeout is aborted, which makes Raft's read fail, so a
// dead sender never blocks the receiver or leaks a goroutine.
//
// # Limits
//
// One AppendEntries request must fit in one NATS message: keep Raft's
// MaxAppendEntries times the largest log entry below the server's max payload
// (1 MiB by default), or raise max_payload.
package natstransport
