package netsim

import (
	"log/slog"
	"net"
)

// lastResortDeadEnd is advertised when no port can be had at all: port 1
// (tcpmux) is all but never served.
const lastResortDeadEnd = "127.0.0.1:1"

// newDeadEnd returns a loopback address that refuses connections,
// reserved for the hub's life where the platform allows.
func newDeadEnd(log *slog.Logger) *deadEnd {
	d, err := reserveDeadEnd()
	if err == nil {
		return d
	}
	addr := lastResortDeadEnd
	if ln, lerr := net.Listen("tcp", "127.0.0.1:0"); lerr == nil {
		addr = ln.Addr().String()
		_ = ln.Close()
	}
	log.Warn("cannot reserve the advertise address; using an unreserved one", "addr", addr, "err", err)
	return &deadEnd{fd: -1, addr: addr}
}
