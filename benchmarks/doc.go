// Package benchmarks holds the rack's `go test -bench` harnesses, run by
// `make bench`: append latency and throughput through the HTTP API of a
// three-member control plane, the event-log backends (Raft over NATS, Raft
// over TCP, etcd) compared through eventlog.Log.Append, reconcile latency
// and failover on a simulated rack (sim/devrack), commit-to-delivery
// fan-out to NATS subscribers, and rackd's memory and CPU as real
// processes, beside baselines (disk fsync, loopback HTTP round trip)
// measured in the same run so that figures read as ratios. With
// RACKLET_BENCH_OUT set, each benchmark also records its figures there
// (package results), and benchmarks/cmd/benchtable turns them into one
// table and results/latest.json. See README.md.
package benchmarks
