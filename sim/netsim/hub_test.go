package netsim

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/internal/testutil"
)

func TestProxyCarriesBytesBothWays(t *testing.T) {
	h := newHub(t)
	if err := h.Register("b", startEcho(t, "b")); err != nil {
		t.Fatal(err)
	}
	if err := h.Register("a", "nats://"+startEcho(t, "a")); err != nil {
		t.Fatal(err)
	}
	ab := dialProxy(t, h, "a", "b")
	if err := ab.roundTrip("hello from b"); err != nil {
		t.Fatal(err)
	}
	ba := dialProxy(t, h, "b", "a")
	if err := ba.roundTrip("hello from a"); err != nil {
		t.Fatal(err)
	}
	if n := h.Conns("a", "b"); n != 1 {
		t.Errorf("Conns(a, b) = %d, want 1", n)
	}
	if n := h.Conns("b", "a"); n != 1 {
		t.Errorf("Conns(b, a) = %d, want 1", n)
	}
	// The same pair gets the same proxy.
	u1, _ := h.RouteURL("a", "b")
	u2, _ := h.RouteURL("a", "b")
	if u1 != u2 {
		t.Errorf("RouteURL(a, b) gave %s, then %s", u1, u2)
	}
	// A connection closed by its dialer goes away.
	_ = ab.c.Close()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if n := h.Conns("a", "b"); n != 0 {
			return errors.New("connection a→b still counted")
		}
		return nil
	})
}

func TestProxyBeforeRegister(t *testing.T) {
	h := newHub(t)
	c := dialProxy(t, h, "a", "b")
	if err := c.closed(); err != nil {
		t.Fatalf("connection to an unregistered member: %v", err)
	}
	if err := h.Register("b", startEcho(t, "b")); err != nil {
		t.Fatal(err)
	}
	if err := dialProxy(t, h, "a", "b").roundTrip("hello from b"); err != nil {
		t.Fatal(err)
	}
}

// TestFaultsCutAndHeal opens connections both ways between a and b (and
// between b and c), applies a fault, and checks what it cut: open
// connections close at once, new ones are closed on accept; Heal lets new
// connections through.
func TestFaultsCutAndHeal(t *testing.T) {
	tests := []struct {
		name  string
		fault func(h *Hub) error
		abCut bool // a↔b
		bcCut bool // b↔c
	}{
		{name: "partition", fault: func(h *Hub) error { return h.Partition([]string{"a"}, []string{"b", "c"}) }, abCut: true},
		{name: "unlisted member cut off", fault: func(h *Hub) error { return h.Partition([]string{"b", "c"}) }, abCut: true},
		{name: "all apart", fault: func(h *Hub) error { return h.Partition([]string{"a"}, []string{"b"}, []string{"c"}) }, abCut: true, bcCut: true},
		{name: "no groups", fault: func(h *Hub) error { return h.Partition() }, abCut: true, bcCut: true},
		{name: "one group", fault: func(h *Hub) error { return h.Partition([]string{"a", "b", "c"}) }},
		{name: "isolate a", fault: func(h *Hub) error { return h.Isolate("a") }, abCut: true},
		{name: "isolate b", fault: func(h *Hub) error { return h.Isolate("b") }, abCut: true, bcCut: true},
		{name: "isolate stranger", fault: func(h *Hub) error { return h.Isolate("z") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHub(t)
			for _, m := range []string{"a", "b", "c"} {
				if err := h.Register(m, startEcho(t, m)); err != nil {
					t.Fatal(err)
				}
			}
			type conn struct {
				from, to string
				cut      bool
				c        *client
			}
			conns := []*conn{
				{from: "a", to: "b", cut: tt.abCut}, {from: "b", to: "a", cut: tt.abCut},
				{from: "b", to: "c", cut: tt.bcCut}, {from: "c", to: "b", cut: tt.bcCut},
			}
			for _, c := range conns {
				c.c = dialProxy(t, h, c.from, c.to)
				if err := c.c.roundTrip("hello from " + c.to); err != nil {
					t.Fatalf("%s→%s: %v", c.from, c.to, err)
				}
			}
			if err := tt.fault(h); err != nil {
				t.Fatal(err)
			}
			for _, c := range conns {
				if got := h.Connected(c.from, c.to); got == c.cut {
					t.Errorf("Connected(%s, %s) = %v under the fault", c.from, c.to, got)
				}
				// Cut connections are gone when the fault returns.
				if n := h.Conns(c.from, c.to); c.cut && n != 0 {
					t.Errorf("%s→%s: %d connections left open", c.from, c.to, n)
				}
				if c.cut {
					if err := c.c.closed(); err != nil {
						t.Errorf("open %s→%s: %v", c.from, c.to, err)
					}
					if err := dialProxy(t, h, c.from, c.to).closed(); err != nil {
						t.Errorf("new %s→%s: %v", c.from, c.to, err)
					}
				} else {
					if err := c.c.echo("still there"); err != nil {
						t.Errorf("open %s→%s: %v", c.from, c.to, err)
					}
					if err := dialProxy(t, h, c.from, c.to).roundTrip("hello from " + c.to); err != nil {
						t.Errorf("new %s→%s: %v", c.from, c.to, err)
					}
				}
			}
			if err := h.Heal(); err != nil {
				t.Fatal(err)
			}
			for _, c := range conns {
				if !h.Connected(c.from, c.to) {
					t.Errorf("Connected(%s, %s) = false after heal", c.from, c.to)
				}
				if err := dialProxy(t, h, c.from, c.to).roundTrip("hello from " + c.to); err != nil {
					t.Errorf("after heal %s→%s: %v", c.from, c.to, err)
				}
			}
		})
	}
}

func TestPartitionReplacesIsolation(t *testing.T) {
	h := newHub(t)
	if err := h.Isolate("a"); err != nil {
		t.Fatal(err)
	}
	if err := h.Partition([]string{"a", "b"}, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	if !h.Connected("a", "b") || h.Connected("a", "c") || h.Connected("b", "c") {
		t.Errorf("after Partition({a,b},{c}): a-b %v, a-c %v, b-c %v",
			h.Connected("a", "b"), h.Connected("a", "c"), h.Connected("b", "c"))
	}
	if err := h.Isolate("b"); err != nil {
		t.Fatal(err)
	}
	if h.Connected("a", "b") {
		t.Error("a and b connected after Isolate(b)")
	}
	if err := h.Heal(); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}, {"x", "y"}} {
		if !h.Connected(p[0], p[1]) {
			t.Errorf("%s and %s apart after Heal", p[0], p[1])
		}
	}
}

func TestInvalidArguments(t *testing.T) {
	h := newHub(t)
	tests := []struct {
		name string
		call func() error
	}{
		{"member twice", func() error { return h.Partition([]string{"a"}, []string{"b", "a"}) }},
		{"empty name in partition", func() error { return h.Partition([]string{""}) }},
		{"empty isolate", func() error { return h.Isolate("") }},
		{"route to itself", func() error { _, err := h.RouteURL("a", "a"); return err }},
		{"route from nobody", func() error { _, err := h.RouteURL("", "a"); return err }},
		{"name with space", func() error { _, err := h.RouteURL("a b", "c"); return err }},
		{"register private address", func() error { return h.Register("a", "10.0.0.1:4248") }},
		{"register host name", func() error { return h.Register("a", "example.com:4248") }},
		{"register any address", func() error { return h.Register("a", "0.0.0.0:4248") }},
		{"register private url", func() error { return h.Register("a", "nats://192.168.1.2:4248") }},
		{"register without port", func() error { return h.Register("a", "127.0.0.1") }},
		{"register port 0", func() error { return h.Register("a", "127.0.0.1:0") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil {
				t.Error("no error")
			}
		})
	}
	for _, addr := range []string{"127.0.0.1:4248", "nats://127.0.0.1:4248", "[::1]:4248", "localhost:4248", "nats-route://127.0.0.2:1"} {
		if err := h.Register("a", addr); err != nil {
			t.Errorf("Register(a, %s): %v", addr, err)
		}
	}
	if err := h.Partition([]string{"a"}, []string{"b"}); err != nil {
		t.Fatal(err)
	}
}

func TestAdvertiseAddrRefuses(t *testing.T) {
	h := newHub(t)
	host, _, err := net.SplitHostPort(h.AdvertiseAddr())
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("AdvertiseAddr() = %q: %v", h.AdvertiseAddr(), err)
	}
	c, err := net.DialTimeout("tcp", h.AdvertiseAddr(), 5*time.Second)
	if err == nil {
		_ = c.Close()
		t.Fatal("a connection to the advertise address went through")
	}
}

func TestCloseEndsEverything(t *testing.T) {
	h := New(nil)
	if err := h.Register("b", startEcho(t, "b")); err != nil {
		t.Fatal(err)
	}
	c := dialProxy(t, h, "a", "b")
	if err := c.roundTrip("hello from b"); err != nil {
		t.Fatal(err)
	}
	u, _ := h.RouteURL("a", "b")
	// Close waits for every goroutine of the hub: returning at all shows
	// the accept loop and the open connection's copies ended.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.closed(); err != nil {
		t.Error(err)
	}
	if nc, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "nats://"), 5*time.Second); err == nil {
		_ = nc.Close()
		t.Error("proxy still accepts after Close")
	}
	if _, err := h.RouteURL("a", "c"); !errors.Is(err, ErrClosed) {
		t.Errorf("RouteURL after Close: %v, want ErrClosed", err)
	}
	for name, err := range map[string]error{
		"Partition": h.Partition([]string{"a"}),
		"Isolate":   h.Isolate("a"),
		"Heal":      h.Heal(),
		"Register":  h.Register("a", "127.0.0.1:1"),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
