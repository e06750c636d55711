package netsim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func newHub(t testing.TB) *Hub {
	t.Helper()
	h := New(nil)
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("closing hub: %v", err)
		}
	})
	return h
}

// echoServer is a member stand-in: it greets every connection with
// "hello from <name>\n", then echoes what it reads.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startEcho(t testing.TB, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					_ = c.Close()
				}()
				if _, err := fmt.Fprintf(c, "hello from %s\n", name); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return ln.Addr().String()
}

// client is a connection to a proxy, as a member's server would open it.
type client struct {
	c net.Conn
	r *bufio.Reader
}

func dialProxy(t testing.TB, h *Hub, from, to string) *client {
	t.Helper()
	u, err := h.RouteURL(from, to)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(u, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	// A bound on every read, so a broken proxy fails the test instead of
	// hanging it; it is never what decides a test.
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

// roundTrip reads the greeting of the member behind the proxy and checks a
// line comes back: bytes flow both ways.
func (c *client) roundTrip(wantGreeting string) error {
	g, err := c.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if g != wantGreeting+"\n" {
		return fmt.Errorf("greeting %q, want %q", g, wantGreeting)
	}
	return c.echo("ping")
}

func (c *client) echo(line string) error {
	if _, err := fmt.Fprintf(c.c, "%s\n", line); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading echo: %w", err)
	}
	if got != line+"\n" {
		return fmt.Errorf("echo %q, want %q", got, line)
	}
	return nil
}

// closed checks the proxy closed the connection: a read ends with EOF or a
// reset, never with the read deadline.
func (c *client) closed() error {
	buf := make([]byte, 64)
	for {
		_, err := c.r.Read(buf)
		if err == nil {
			continue // bytes already in flight
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("connection still open: %w", err)
		}
		return nil
	}
}
