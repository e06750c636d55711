// Package benchmarks holds the rack's `go test -bench` harnesses, run by
// `make bench`: append latency and throughput through the HTTP API of a
// three-member control plane, the event-log backends (Raft over NATS, Raft
// over TCP, etcd) compared through eventlog.Log.Append, beside baselines
// (disk fsync, loopback HTTP round trip) measured in the same run so that
// figures read as ratios. See README.md.
package benchmarks
