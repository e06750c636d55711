package member

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFileAndValidation(t *testing.T) {
	valid := func() Config {
		c := Default()
		c.Name, c.DataDir, c.Insecure = "m1", "/tmp/x", true
		return c
	}
	tests := []struct {
		name    string
		yaml    string
		edit    func(*Config)
		wantErr string // "" = valid
		check   func(*testing.T, Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if c.HTTP != DefaultHTTP || c.NATS != DefaultNATS || c.NATSCluster != DefaultNATSCluster || c.Rack != DefaultRack {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "file overrides", yaml: "name: m2\nrack: lab\nhttp: 127.0.0.1:9000\njoin: [nats://127.0.0.1:6222]\nelection-timeout: 750ms\n", check: func(t *testing.T, c Config) {
			if c.Name != "m2" || c.Rack != "lab" || c.HTTP != "127.0.0.1:9000" || len(c.Join) != 1 || c.ElectionTimeout.String() != "750ms" {
				t.Errorf("loaded = %+v", c)
			}
		}},
		{name: "unknown key", yaml: "nmae: m2\n", wantErr: "field nmae not found"},
		{name: "bad yaml", yaml: "name: [\n", wantErr: "parsing config"},
		{name: "bad name", edit: func(c *Config) { c.Name = "M_1" }, wantErr: "invalid name"},
		{name: "bad rack", edit: func(c *Config) { c.Rack = "" }, wantErr: "invalid rack"},
		{name: "no data dir", edit: func(c *Config) { c.DataDir = "" }, wantErr: "data-dir is required"},
		{name: "bad address", edit: func(c *Config) { c.HTTP = "7480" }, wantErr: "invalid http address"},
		{name: "bad join", edit: func(c *Config) { c.Join = []string{"127.0.0.1:6222"} }, wantErr: "invalid join URL"},
		{name: "bootstrap and join", edit: func(c *Config) { c.Bootstrap, c.Join = true, []string{"nats://127.0.0.1:6222"} }, wantErr: "exclude each other"},
		{name: "bad log level", edit: func(c *Config) { c.LogLevel = "loud" }, wantErr: "invalid log-level"},
		{name: "bad store", edit: func(c *Config) { c.Store = "zookeeper" }, wantErr: `invalid store "zookeeper"`},
		{name: "etcd settings on raft", edit: func(c *Config) { c.EtcdJoin = []string{"http://127.0.0.1:2379"} }, wantErr: "settings of --store etcd"},
		{name: "etcd defaults", edit: func(c *Config) { c.Store = StoreEtcd }, check: func(t *testing.T, c Config) {
			if c.EtcdPeer != DefaultEtcdPeer || c.EtcdClient != DefaultEtcdClient || c.etcdPeerURL() != "http://127.0.0.1:2380" {
				t.Errorf("etcd defaults = %+v", c)
			}
		}},
		{name: "etcd file", yaml: "store: etcd\netcd-peer: 127.0.0.2:2380\netcd-client: 127.0.0.2:2379\netcd-client-advertise: 127.0.0.2:2379\netcd-initial-cluster: [m1=http://127.0.0.2:2380, m2=http://127.0.0.3:2380]\n", check: func(t *testing.T, c Config) {
			if c.Store != StoreEtcd || c.etcdClientURL() != "http://127.0.0.2:2379" || len(c.EtcdInitialCluster) != 2 {
				t.Errorf("loaded = %+v", c)
			}
		}},
		{name: "etcd and bootstrap", edit: func(c *Config) { c.Store, c.Bootstrap = StoreEtcd, true }, wantErr: "bootstrap is a setting of --store raft"},
		{name: "etcd port 0", edit: func(c *Config) { c.Store, c.EtcdPeer = StoreEtcd, "127.0.0.1:0" }, wantErr: "invalid etcd-peer address"},
		{name: "etcd bad client", edit: func(c *Config) { c.Store, c.EtcdClient = StoreEtcd, "2379" }, wantErr: "invalid etcd-client address"},
		{name: "etcd unreachable advertise", edit: func(c *Config) { c.Store, c.EtcdPeer = StoreEtcd, "0.0.0.0:2380" }, wantErr: "set etcd-peer-advertise"},
		{name: "etcd cluster without self", edit: func(c *Config) {
			c.Store, c.EtcdInitialCluster = StoreEtcd, []string{"m2=http://127.0.0.1:2480"}
		}, wantErr: "must list this member too"},
		{name: "etcd cluster with another URL for self", edit: func(c *Config) {
			c.Store, c.EtcdInitialCluster = StoreEtcd, []string{"m1=http://127.0.0.1:9999"}
		}, wantErr: "gives m1 the peer URL"},
		{name: "etcd cluster bad entry", edit: func(c *Config) { c.Store, c.EtcdInitialCluster = StoreEtcd, []string{"http://127.0.0.1:2380"} }, wantErr: "invalid etcd-initial-cluster entry"},
		{name: "etcd cluster https", edit: func(c *Config) {
			c.Store, c.EtcdInitialCluster = StoreEtcd, []string{"m1=https://127.0.0.1:2380"}
		}, wantErr: "want http://host:port"},
		{name: "etcd cluster twice", edit: func(c *Config) {
			c.Store, c.EtcdInitialCluster = StoreEtcd, []string{"m1=http://127.0.0.1:2380", "m1=http://127.0.0.1:2380"}
		}, wantErr: "listed twice"},
		{name: "etcd join and cluster", edit: func(c *Config) {
			c.Store, c.EtcdInitialCluster, c.EtcdJoin = StoreEtcd, []string{"m1=http://127.0.0.1:2380"}, []string{"http://127.0.0.1:2479"}
		}, wantErr: "exclude each other"},
		{name: "no TLS and not insecure", edit: func(c *Config) { c.Insecure = false }, wantErr: "no TLS material"},
		{name: "half the TLS files", edit: func(c *Config) { c.Insecure, c.CA, c.Cert = false, "ca.crt", "m1.crt" }, wantErr: "ca, cert and key go together"},
		{name: "insecure and TLS", edit: func(c *Config) { c.CA = "ca.crt" }, wantErr: "insecure excludes"},
		{name: "insecure off loopback", edit: func(c *Config) { c.NATSCluster = "10.0.0.1:6222" }, wantErr: `refused on nats-cluster address "10.0.0.1:6222"`},
		{name: "insecure on all interfaces", edit: func(c *Config) { c.HTTP = "0.0.0.0:7480" }, wantErr: "refused on http address"},
		{name: "etcd with TLS wants https", edit: func(c *Config) {
			c.Store, c.Insecure, c.CA, c.Cert, c.Key = StoreEtcd, false, "ca.crt", "m1.crt", "m1.key"
			c.EtcdInitialCluster = []string{"m1=http://127.0.0.1:2380"}
		}, wantErr: "want https://host:port"},
		{name: "etcd with TLS", edit: func(c *Config) {
			c.Store, c.Insecure, c.CA, c.Cert, c.Key = StoreEtcd, false, "ca.crt", "m1.crt", "m1.key"
			c.EtcdInitialCluster = []string{"m1=https://127.0.0.1:2380"}
		}, check: func(t *testing.T, c Config) {
			if c.etcdPeerURL() != "https://127.0.0.1:2380" {
				t.Errorf("peer URL %s", c.etcdPeerURL())
			}
		}},
		{name: "insecure etcd off loopback", edit: func(c *Config) {
			c.Store, c.EtcdPeer, c.EtcdPeerAdvertise = StoreEtcd, "10.0.0.1:2380", "10.0.0.1:2380"
		}, wantErr: "refused on etcd-peer"},
		{name: "TLS files from yaml", yaml: "insecure: false\nca: /etc/racklet/ca.crt\ncert: /etc/racklet/m1.crt\nkey: /etc/racklet/m1.key\ncrl: /etc/racklet/ca.crl\n", check: func(t *testing.T, c Config) {
			if c.Insecure || c.CA != "/etc/racklet/ca.crt" || c.CRL != "/etc/racklet/ca.crl" {
				t.Errorf("loaded = %+v", c)
			}
		}},
		{name: "etcd bad join", edit: func(c *Config) { c.Store, c.EtcdJoin = StoreEtcd, []string{"127.0.0.1:2479"} }, wantErr: "invalid etcd-join URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			var err error
			if tt.yaml != "" {
				path := filepath.Join(t.TempDir(), "rackd.yaml")
				if werr := os.WriteFile(path, []byte(tt.yaml), 0o600); werr != nil {
					t.Fatal(werr)
				}
				err = c.LoadFile(path)
			}
			if tt.edit != nil {
				tt.edit(&c)
			}
			if err == nil {
				err = c.Validate()
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	c := valid()
	if err := c.LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "reading config") {
		t.Fatalf("missing file: %v", err)
	}
}

// The etcd store's timing follows election-timeout: etcd's election
// timeout, a tenth of it as heartbeat, three times it (at least 2 s) as
// the rack leadership's lease.
func TestEtcdTiming(t *testing.T) {
	for _, tc := range []struct {
		election           time.Duration
		wantElec, wantTick uint
		wantTTL            int
	}{
		{0, 1000, 100, 3},
		{500 * time.Millisecond, 500, 50, 2},
		{2 * time.Second, 2000, 200, 6},
		{1500 * time.Millisecond, 1500, 150, 5},
	} {
		c := Config{ElectionTimeout: tc.election}
		e, tick, ttl := c.etcdTiming()
		if e != tc.wantElec || tick != tc.wantTick || ttl != tc.wantTTL {
			t.Errorf("election-timeout %v: etcd %d ms, tick %d ms, lease %d s; want %d, %d, %d", tc.election, e, tick, ttl, tc.wantElec, tc.wantTick, tc.wantTTL)
		}
	}
}
