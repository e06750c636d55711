// Package benchmarks holds the rack's `go test -bench` harnesses, run by
// `make bench`: append latency and throughput through the HTTP API of a
// three-member control plane, beside baselines (disk fsync, loopback HTTP
// round trip) measured in the same run so that figures read as ratios.
// See README.md.
package benchmarks
