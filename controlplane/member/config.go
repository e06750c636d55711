package member

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/racklet/rack/events"
)

// Config is one member's configuration. rackd takes it from flags and, with
// --config, from a YAML file with the same names.
type Config struct {
	// Name is the member's name ([a-z0-9-]{1,63}): Raft ID and address,
	// NATS server name, event source.
	Name string `yaml:"name"`
	// Rack is the rack's name ([a-z0-9-]{1,63}).
	Rack string `yaml:"rack"`
	// DataDir holds the event log (the Raft log and snapshots, or the
	// etcd member's data in etcd/) and the publication watermark.
	DataDir string `yaml:"data-dir"`
	// Store selects the event-log backend: raft (the default: Raft over
	// NATS) or etcd (an embedded etcd member per rackd; see the Etcd*
	// settings).
	Store string `yaml:"store"`
	// HTTP is the API listen address.
	HTTP string `yaml:"http"`
	// NATS is the NATS client listen address.
	NATS string `yaml:"nats"`
	// NATSCluster is the NATS route listen address (members reach each
	// other here).
	NATSCluster string `yaml:"nats-cluster"`
	// NATSClusterAdvertise is the route address told to other members
	// (default: the listen address). Set it when members reach each other
	// through another address (NAT, a proxy, the simulator's network).
	NATSClusterAdvertise string `yaml:"nats-cluster-advertise"`
	// Join lists route URLs of existing members (nats://host:port).
	Join []string `yaml:"join"`
	// Bootstrap starts a new cluster with this member as the only voter
	// (ignored when the data dir already holds Raft state). Raft only.
	Bootstrap bool `yaml:"bootstrap"`

	// Security (security.go). CA is the rack CA's certificate, Cert and
	// Key the member's certificate (rackctl pki issue member) and its key,
	// CRL the revocation list (reloaded when it changes). With them, every
	// listener is mutual TLS. Insecure runs plain text without
	// authentication instead; it is refused unless every listen address
	// is loopback. One of the two is required.
	CA       string `yaml:"ca"`
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	CRL      string `yaml:"crl"`
	Insecure bool   `yaml:"insecure"`
	// CRLCheckInterval is how often the CRL file is looked at (default
	// 10s).
	CRLCheckInterval time.Duration `yaml:"crl-check-interval"`

	// Settings of the etcd store (Store "etcd"); the NATS settings above
	// still apply: every member runs NATS for publication and
	// integrations.
	//
	// EtcdPeer and EtcdClient are the embedded etcd member's peer and
	// client listen addresses (host:port; defaults 127.0.0.1:2380 and
	// 127.0.0.1:2379); the Advertise ones are told to others (default:
	// the listen addresses).
	EtcdPeer            string `yaml:"etcd-peer"`
	EtcdPeerAdvertise   string `yaml:"etcd-peer-advertise"`
	EtcdClient          string `yaml:"etcd-client"`
	EtcdClientAdvertise string `yaml:"etcd-client-advertise"`
	// EtcdInitialCluster lists every member of a new etcd cluster,
	// name=http://host:port (peer URLs), the same list on each member
	// (default: this member alone). Ignored once the data dir holds the
	// etcd member.
	EtcdInitialCluster []string `yaml:"etcd-initial-cluster"`
	// EtcdJoin lists client URLs (http://host:port) of members of an
	// existing etcd cluster for a new member to join (as a learner, then
	// promoted). Excludes EtcdInitialCluster.
	EtcdJoin []string `yaml:"etcd-join"`

	// Raft timing, tuned for a rack LAN; zero takes the defaults.
	HeartbeatTimeout time.Duration `yaml:"heartbeat-timeout"`
	ElectionTimeout  time.Duration `yaml:"election-timeout"`
	// SnapshotThreshold is the number of log entries between snapshots.
	SnapshotThreshold uint64 `yaml:"snapshot-threshold"`
	// SnapshotInterval is how often the need for a snapshot is checked.
	SnapshotInterval time.Duration `yaml:"snapshot-interval"`
	// TrailingLogs is how many entries a snapshot leaves in the log.
	TrailingLogs uint64 `yaml:"trailing-logs"`
	// MemberSyncInterval: how often the leader checks member events
	// against the Raft configuration (default 5s; negative: only on
	// changes).
	MemberSyncInterval time.Duration `yaml:"member-sync-interval"`
	// Retention is how many recent events stay readable through the API.
	Retention int `yaml:"retention"`
	// LogLevel: debug, info, warn or error.
	LogLevel string `yaml:"log-level"`
}

// Defaults for a single machine.
const (
	DefaultHTTP        = "127.0.0.1:7480"
	DefaultNATS        = "127.0.0.1:4222"
	DefaultNATSCluster = "127.0.0.1:6222"
	DefaultRack        = "rack1"
	DefaultEtcdPeer    = "127.0.0.1:2380"
	DefaultEtcdClient  = "127.0.0.1:2379"
)

// Event-log backends (Config.Store).
const (
	StoreRaft = "raft"
	StoreEtcd = "etcd"
)

// Default returns a configuration with every default filled in.
func Default() Config {
	host, _ := os.Hostname()
	name := strings.ToLower(strings.Split(host, ".")[0])
	if !events.ValidName(name) {
		name = "m1"
	}
	return Config{
		Name:        name,
		Rack:        DefaultRack,
		DataDir:     "",
		HTTP:        DefaultHTTP,
		NATS:        DefaultNATS,
		NATSCluster: DefaultNATSCluster,
		Store:       StoreRaft,
		EtcdPeer:    DefaultEtcdPeer,
		EtcdClient:  DefaultEtcdClient,
		LogLevel:    "info",
	}
}

// LoadFile overlays the YAML file at path on c. Unknown keys are errors, so
// a typo does not silently fall back to a default.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("parsing config %s: %w", path, err)
	}
	return nil
}

// Validate reports the first invalid setting, naming it.
func (c *Config) Validate() error {
	if !events.ValidName(c.Name) {
		return fmt.Errorf("invalid name %q: use 1 to 63 of a-z, 0-9 and -", c.Name)
	}
	if !events.ValidName(c.Rack) {
		return fmt.Errorf("invalid rack %q: use 1 to 63 of a-z, 0-9 and -", c.Rack)
	}
	if c.DataDir == "" {
		return errors.New("data-dir is required")
	}
	for what, addr := range map[string]string{"http": c.HTTP, "nats": c.NATS, "nats-cluster": c.NATSCluster} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("invalid %s address %q: want host:port", what, addr)
		}
	}
	for _, j := range c.Join {
		if !strings.HasPrefix(j, "nats://") {
			return fmt.Errorf("invalid join URL %q: want nats://host:port (a member's nats-cluster address)", j)
		}
	}
	switch c.Store {
	case "", StoreRaft:
		if c.Bootstrap && len(c.Join) > 0 {
			return errors.New("bootstrap and join exclude each other: bootstrap starts a new cluster, join enters an existing one")
		}
		if len(c.EtcdInitialCluster) > 0 || len(c.EtcdJoin) > 0 {
			return errors.New("etcd-initial-cluster and etcd-join are settings of --store etcd")
		}
	case StoreEtcd:
		if err := c.validateEtcd(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("invalid store %q: use raft or etcd", c.Store)
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return err
	}
	return c.validateSecurity()
}
