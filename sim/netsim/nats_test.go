package netsim

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/racklet/rack/controlplane/natsserver"

	"github.com/racklet/rack/internal/testutil"
)

// natsCluster is three members' embedded nats-servers routed through a hub.
type natsCluster struct {
	hub     *Hub
	names   []string
	servers map[string]*natsserver.Server
	conns   map[string]*nats.Conn
}

func startNATSCluster(t *testing.T, names ...string) *natsCluster {
	t.Helper()
	c := &natsCluster{hub: newHub(t), names: names,
		servers: make(map[string]*natsserver.Server), conns: make(map[string]*nats.Conn)}
	for _, n := range names {
		c.start(t, n)
	}
	return c
}

// start starts member n's server with routes to every other member's
// proxy, registers its real route address and connects a client to it.
func (c *natsCluster) start(t *testing.T, n string) {
	t.Helper()
	routes, err := c.hub.Routes(n, c.names)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsserver.Start(natsserver.Config{
		Name:             n,
		Rack:             "test",
		Listen:           "127.0.0.1:0",
		ClusterListen:    "127.0.0.1:0",
		ClusterAdvertise: c.hub.AdvertiseAddr(),
		Routes:           routes,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if err := c.hub.Register(n, srv.ClusterURL()); err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect("test-" + n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c.servers[n], c.conns[n] = srv, nc
}

// routed checks that each pair of members in groups has routes and that
// every route of those members goes through the hub: a member's route
// count is the number of connections through its proxies, both ways.
// Members in different groups must have no routes between them.
func (c *natsCluster) routed(groups ...[]string) error {
	group := make(map[string]int)
	for i, g := range groups {
		for _, m := range g {
			group[m] = i
		}
	}
	for _, a := range c.names {
		through := 0
		for _, b := range c.names {
			if a == b {
				continue
			}
			n := c.hub.Conns(a, b) + c.hub.Conns(b, a)
			through += n
			if same := group[a] == group[b]; same && n == 0 {
				return fmt.Errorf("no route between %s and %s", a, b)
			} else if !same && n != 0 {
				return fmt.Errorf("%d connections between %s and %s across the partition", n, a, b)
			}
		}
		if got := c.servers[a].NumRoutes(); got != through {
			return fmt.Errorf("%s has %d routes, %d connections go through the hub", a, got, through)
		}
	}
	return nil
}

// subscribe subscribes member n's client to subject.
func (c *natsCluster) subscribe(t *testing.T, n, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 1024)
	sub, err := c.conns[n].ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := c.conns[n].Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// delivers publishes on member from until a message reaches ch
// (subscription interest travels to the other members asynchronously).
func (c *natsCluster) delivers(t *testing.T, from, subject string, ch chan *nats.Msg) {
	t.Helper()
	i := 0
	testutil.WaitFor(t, 20*time.Second, func() error {
		i++
		want := fmt.Sprintf("%s-%d", from, i)
		if err := c.conns[from].Publish(subject, []byte(want)); err != nil {
			return err
		}
		timeout := time.After(200 * time.Millisecond)
		for {
			select {
			case m := <-ch:
				notLost(t, m)
				if string(m.Data) == want {
					return nil
				}
			case <-timeout:
				return fmt.Errorf("message from %s on %s not delivered", from, subject)
			}
		}
	})
}

// lostPrefix starts the messages published on a member cut off from all:
// no one may receive them.
const lostPrefix = "lost-"

func notLost(t *testing.T, m *nats.Msg) {
	t.Helper()
	if strings.HasPrefix(string(m.Data), lostPrefix) {
		t.Fatalf("%q, published on a member cut off from all, was delivered", m.Data)
	}
}

func TestNATSRoutesThroughHub(t *testing.T) {
	c := startNATSCluster(t, "m1", "m2", "m3")
	all := []string{"m1", "m2", "m3"}
	testutil.WaitFor(t, 30*time.Second, func() error { return c.routed(all) })

	on3 := c.subscribe(t, "m3", "racklet.test.x")
	c.delivers(t, "m1", "racklet.test.x", on3)
	c.delivers(t, "m2", "racklet.test.x", on3)

	if err := c.hub.Partition([]string{"m1"}, []string{"m2", "m3"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if n := c.servers["m1"].NumRoutes(); n != 0 {
			return fmt.Errorf("m1 still has %d routes", n)
		}
		return c.routed([]string{"m1"}, []string{"m2", "m3"})
	})
	// For a while (several of nats-server's 1s route reconnect attempts),
	// m1 stays alone: nothing goes around the hub. Its messages reach no one.
	for i := range 25 {
		if n := c.servers["m1"].NumRoutes(); n != 0 {
			t.Fatalf("m1 has %d routes during the partition", n)
		}
		if err := c.conns["m1"].Publish("racklet.test.x", fmt.Appendf(nil, "%s%d", lostPrefix, i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.conns["m1"].Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.routed([]string{"m1"}, []string{"m2", "m3"}); err != nil {
		t.Fatal(err)
	}
	c.delivers(t, "m2", "racklet.test.x", on3)
	on2 := c.subscribe(t, "m2", "racklet.test.y")
	c.delivers(t, "m3", "racklet.test.y", on2)
drain:
	for {
		select {
		case m := <-on3:
			notLost(t, m)
		default:
			break drain
		}
	}

	if err := c.hub.Heal(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error { return c.routed(all) })
	c.delivers(t, "m1", "racklet.test.x", on3)
	c.delivers(t, "m3", "racklet.test.y", on2)

	// Isolating a member cuts it off like a partition of one.
	if err := c.hub.Isolate("m3"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if n := c.servers["m3"].NumRoutes(); n != 0 {
			return fmt.Errorf("m3 still has %d routes", n)
		}
		return c.routed([]string{"m1", "m2"}, []string{"m3"})
	})
	c.delivers(t, "m1", "racklet.test.y", on2)
	if err := c.hub.Heal(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error { return c.routed(all) })
	c.delivers(t, "m1", "racklet.test.x", on3)
}

// TestNATSMemberRestart restarts a member on a new route port: it
// registers again and rejoins through the same proxies.
func TestNATSMemberRestart(t *testing.T) {
	c := startNATSCluster(t, "m1", "m2", "m3")
	all := []string{"m1", "m2", "m3"}
	testutil.WaitFor(t, 30*time.Second, func() error { return c.routed(all) })
	old := c.servers["m2"]
	c.conns["m2"].Close()
	old.Shutdown()
	testutil.WaitFor(t, 10*time.Second, func() error {
		for _, n := range []string{"m1", "m3"} {
			if c.hub.Conns(n, "m2")+c.hub.Conns("m2", n) != 0 {
				return errors.New("connections to the stopped m2 still open")
			}
		}
		return nil
	})
	c.start(t, "m2")
	testutil.WaitFor(t, 30*time.Second, func() error { return c.routed(all) })
	on2 := c.subscribe(t, "m2", "racklet.test.z")
	c.delivers(t, "m1", "racklet.test.z", on2)
}
