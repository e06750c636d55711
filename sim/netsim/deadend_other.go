//go:build !unix

package netsim

import "errors"

// deadEnd is a loopback TCP port that refuses connections. Without a way
// to reserve a port without listening, newDeadEnd takes a free port and
// releases it at once: some other program could take it later.
type deadEnd struct {
	fd   int // unused
	addr string
}

func reserveDeadEnd() (*deadEnd, error) {
	return nil, errors.New("reserving a port without listening is not supported here")
}

func (d *deadEnd) close() error { return nil }
