//go:build unix

package netsim

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// deadEnd is a loopback TCP port that refuses every connection: a socket
// bound to it that never listens. It keeps the port reserved, so no one
// else can listen there while the hub lives.
type deadEnd struct {
	fd   int // -1: nothing reserved
	addr string
}

func reserveDeadEnd() (*deadEnd, error) {
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("creating socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("binding socket: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("reading socket address: %w", err)
	}
	sa4, ok := sa.(*syscall.SockaddrInet4)
	if !ok || sa4.Port == 0 {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("unexpected socket address %v", sa)
	}
	return &deadEnd{fd: fd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(sa4.Port))}, nil
}

func (d *deadEnd) close() error {
	if d.fd < 0 {
		return nil
	}
	fd := d.fd
	d.fd = -1
	return syscall.Close(fd)
}
