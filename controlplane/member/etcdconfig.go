package member

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/racklet/rack/events"
)

// validateEtcd checks the settings of the etcd store.
func (c *Config) validateEtcd() error {
	if c.Bootstrap {
		return errors.New("bootstrap is a setting of --store raft: an etcd cluster is formed by etcd-initial-cluster (or joined with etcd-join)")
	}
	for _, a := range []struct{ what, addr, adv string }{
		{"etcd-peer", c.EtcdPeer, c.EtcdPeerAdvertise},
		{"etcd-client", c.EtcdClient, c.EtcdClientAdvertise},
	} {
		host, err := checkEtcdAddr(a.what, a.addr)
		if err != nil {
			return err
		}
		if a.adv != "" {
			advHost, err := checkEtcdAddr(a.what+"-advertise", a.adv)
			if err != nil {
				return err
			}
			host = advHost
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("%s listens on %q, which others cannot reach: set %s-advertise to an address they can", a.what, a.addr, a.what)
		}
	}
	if len(c.EtcdInitialCluster) > 0 && len(c.EtcdJoin) > 0 {
		return errors.New("etcd-initial-cluster and etcd-join exclude each other: the first forms a new etcd cluster, the second joins an existing one")
	}
	if len(c.EtcdInitialCluster) > 0 {
		self := c.etcdPeerURL()
		names := map[string]bool{}
		found := false
		for _, e := range c.EtcdInitialCluster {
			name, u, ok := strings.Cut(e, "=")
			if !ok || !events.ValidName(name) {
				return fmt.Errorf("invalid etcd-initial-cluster entry %q: want name=%s://host:port with a member name of 1 to 63 of a-z, 0-9 and -", e, c.etcdScheme())
			}
			if err := c.checkEtcdURL("etcd-initial-cluster", u); err != nil {
				return err
			}
			if names[name] {
				return fmt.Errorf("invalid etcd-initial-cluster: member %s is listed twice", name)
			}
			names[name] = true
			if name == c.Name {
				if u != self {
					return fmt.Errorf("invalid etcd-initial-cluster: it gives %s the peer URL %s, but this member's is %s (etcd-peer, etcd-peer-advertise)", name, u, self)
				}
				found = true
			}
		}
		if !found {
			return fmt.Errorf("invalid etcd-initial-cluster: it must list this member too (%s=%s)", c.Name, self)
		}
	}
	for _, j := range c.EtcdJoin {
		if err := c.checkEtcdURL("etcd-join", j); err != nil {
			return err
		}
	}
	return nil
}

// checkEtcdAddr checks a host:port with a port etcd can be told in
// advance (not 0) and returns the host.
func checkEtcdAddr(what, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("invalid %s address %q: want host:port", what, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("invalid %s address %q: want a port from 1 to 65535 (etcd members must know each other's ports in advance)", what, addr)
	}
	return host, nil
}

// etcdScheme is https with TLS, http in insecure mode.
func (c *Config) etcdScheme() string {
	if c.Insecure {
		return "http"
	}
	return "https"
}

// checkEtcdURL checks an etcd URL: http://host:port (insecure) or
// https://host:port.
func (c *Config) checkEtcdURL(what, s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != c.etcdScheme() || u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return fmt.Errorf("invalid %s URL %q: want %s://host:port", what, s, c.etcdScheme())
	}
	_, err = checkEtcdAddr(what, u.Host)
	return err
}

// etcdPeerURL and etcdClientURL are the URLs this member advertises.
func (c *Config) etcdPeerURL() string {
	return c.etcdScheme() + "://" + cmp.Or(c.EtcdPeerAdvertise, c.EtcdPeer)
}

func (c *Config) etcdClientURL() string {
	return c.etcdScheme() + "://" + cmp.Or(c.EtcdClientAdvertise, c.EtcdClient)
}

// etcdTiming returns the embedded etcd member's election timeout and
// heartbeat interval in ms, and the rack leadership's lease in seconds,
// all from ElectionTimeout (default 1s): the heartbeat is a tenth of the
// election timeout, the lease three times it (at least 2 s).
func (c *Config) etcdTiming() (electionMs, tickMs uint, leaseTTL int) {
	et := c.ElectionTimeout
	if et <= 0 {
		et = time.Second
	}
	electionMs = uint(max(et.Milliseconds(), 10))
	tickMs = max(electionMs/10, 1)
	leaseTTL = max(2, int((3*et+time.Second-1)/time.Second))
	return electionMs, tickMs, leaseTTL
}
