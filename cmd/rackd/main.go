// Command rackd runs one member of a Racklet rack's control plane.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/member"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := newRoot(ctx, os.Stderr).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "rackd:", err)
		os.Exit(1)
	}
}

func newRoot(ctx context.Context, stderr io.Writer) *cobra.Command {
	cfg := member.Default()
	hw := defaultHardware()
	var configPath, logFormat string
	root := &cobra.Command{
		Use:   "rackd",
		Short: "Run a member of a Racklet rack's control plane",
		Long: `rackd runs one member of a rack's control plane: an embedded NATS server
clustered with the other members, the replicated event log, and the HTTP API
(JSON, Prometheus metrics at /metrics).

The event log has two stores (--store):

  raft (default)  Raft over NATS. Start the first member with --bootstrap,
                  the others with --join pointing at the NATS cluster address
                  of members already running.
  etcd            every rackd embeds an etcd member (--etcd-peer,
                  --etcd-client); the members of a new cluster all get the
                  same --etcd-initial-cluster name=https://host:port,... (peer
                  URLs); a member added later uses --etcd-join with client
                  URLs of running members. --join still clusters NATS, which
                  every member runs for publication and integrations. Events
                  are etcd keys: etcdctl --endpoints https://127.0.0.1:2379
                  watch --prefix /racklet/<rack>/events/ follows them.

Security: every port is mutual TLS against the rack's CA. Make the files with
rackctl pki (init, then issue member NAME --host ...) and give --ca, --cert,
--key and, to revoke certificates, --crl (reloaded when it changes). Clients,
integrations and other members must present certificates from the same CA;
the API also takes bearer tokens (rackctl pki token). --insecure runs plain
text without authentication instead, and only on loopback addresses.

Hardware: with --driver smbus the member drives the rack's BMCs and RMC over
the backplane SMBus (--i2c-bus) while it leads: power, boot, presence (hot
swap), fans and, with --firmware-dir, firmware updates; every action is an
event in the log. --driver sim drives a simulated rack inside this rackd
instead (each rackd its own: for trying a member without hardware; rackd dev
simulates a whole rack with its members). --driver none (the default) runs
the log and the API only.

A member restarted on the same --data-dir rejoins by itself. SIGTERM or SIGINT
shut it down cleanly.

Settings can also come from a YAML file (--config) with the flags' names as
keys; flags given on the command line win over the file.`,
		Example: `  # certificates for the rack (once), then a three-member control plane
  rackctl pki init --dir /etc/racklet/pki --rack rack1
  rackctl pki issue member m1 --dir /etc/racklet/pki --host 10.0.0.11
  rackd --name m1 --data-dir /var/lib/rackd/m1 --bootstrap --http 10.0.0.11:7480 \
        --nats 10.0.0.11:4222 --nats-cluster 10.0.0.11:6222 \
        --ca /etc/racklet/pki/ca.crt --cert /etc/racklet/pki/m1.crt --key /etc/racklet/pki/m1.key
  rackd --name m2 --data-dir /var/lib/rackd/m2 --join nats://10.0.0.11:6222 ... (as m1, with m2's files)

  # a throwaway control plane on one machine, plain text
  rackd --name m1 --data-dir /tmp/m1 --bootstrap --insecure
  rackd --name m2 --data-dir /tmp/m2 --insecure --http 127.0.0.1:7481 --nats 127.0.0.1:4223 \
        --nats-cluster 127.0.0.1:6223 --join nats://127.0.0.1:6222
  rackd --config /etc/racklet/rackd.yaml

  # the same on the etcd store, plain text on one machine (m2 and m3 also get --http, --nats, --nats-cluster
  # and --join as above)
  rackd --name m1 --data-dir /var/lib/rackd/m1 --store etcd --insecure \
        --etcd-peer 127.0.0.1:2380 --etcd-client 127.0.0.1:2379 \
        --etcd-initial-cluster m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480,m3=http://127.0.0.1:2580
  rackd --name m2 --data-dir /var/lib/rackd/m2 --store etcd --insecure \
        --etcd-peer 127.0.0.1:2480 --etcd-client 127.0.0.1:2479 \
        --etcd-initial-cluster m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480,m3=http://127.0.0.1:2580
  etcdctl --endpoints http://127.0.0.1:2379 watch --prefix /racklet/rack1/events/`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath != "" {
				if err := loadConfigFile(configPath, &cfg, &hw); err != nil {
					return err
				}
				// Flags on the command line win over the file.
				if err := cmd.Flags().Parse(os.Args[1:]); err != nil {
					return err
				}
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := hw.load(); err != nil {
				return err
			}
			logger, err := newLogger(stderr, cfg.LogLevel, logFormat)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, hw, logger)
		},
	}
	f := root.Flags()
	f.StringVar(&configPath, "config", "", "YAML file with settings (keys are the flag names)")
	f.StringVar(&cfg.Name, "name", cfg.Name, "this member's name, [a-z0-9-]{1,63}; the default is the host name")
	f.StringVar(&cfg.Rack, "rack", cfg.Rack, "the rack's name")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the event log (Raft log and snapshots, or etcd's data) and state (required)")
	f.StringVar(&cfg.HTTP, "http", cfg.HTTP, "HTTP API listen address")
	f.StringVar(&cfg.NATS, "nats", cfg.NATS, "NATS client listen address")
	f.StringVar(&cfg.NATSCluster, "nats-cluster", cfg.NATSCluster, "NATS route listen address, where other members join")
	f.StringSliceVar(&cfg.Join, "join", cfg.Join, "comma-separated NATS route URLs of existing members (nats://host:port)")
	f.BoolVar(&cfg.Bootstrap, "bootstrap", cfg.Bootstrap, "start a new cluster with this member as its first voter (raft store)")
	f.StringVar(&cfg.CA, "ca", cfg.CA, "the rack CA's certificate (rackctl pki init)")
	f.StringVar(&cfg.Cert, "cert", cfg.Cert, "this member's certificate (rackctl pki issue member NAME)")
	f.StringVar(&cfg.Key, "key", cfg.Key, "this member's private key")
	f.StringVar(&cfg.CRL, "crl", cfg.CRL, "the rack's certificate revocation list (reloaded when it changes)")
	f.BoolVar(&cfg.Insecure, "insecure", cfg.Insecure, "plain text and no authentication on every port; refused unless every address is loopback")
	f.StringVar(&cfg.Store, "store", cfg.Store, "event-log store: raft (Raft over NATS) or etcd (an embedded etcd member per rackd)")
	f.StringVar(&cfg.EtcdPeer, "etcd-peer", cfg.EtcdPeer, "etcd store: the etcd member's peer listen address (host:port)")
	f.StringVar(&cfg.EtcdPeerAdvertise, "etcd-peer-advertise", cfg.EtcdPeerAdvertise, "etcd store: the peer address other members reach (default: --etcd-peer)")
	f.StringVar(&cfg.EtcdClient, "etcd-client", cfg.EtcdClient, "etcd store: the etcd member's client listen address (host:port; etcdctl connects here)")
	f.StringVar(&cfg.EtcdClientAdvertise, "etcd-client-advertise", cfg.EtcdClientAdvertise, "etcd store: the client address told to others (default: --etcd-client)")
	f.StringSliceVar(&cfg.EtcdInitialCluster, "etcd-initial-cluster", cfg.EtcdInitialCluster, "etcd store: every member of a new etcd cluster, name=https://host:port (peer URLs; http:// with --insecure), comma-separated, the same on each (default: this member alone)")
	f.StringSliceVar(&cfg.EtcdJoin, "etcd-join", cfg.EtcdJoin, "etcd store: client URLs (https://host:port; http:// with --insecure) of running members of an existing etcd cluster to join")
	f.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", 0, "Raft heartbeat timeout (default 250ms; raft store)")
	f.DurationVar(&cfg.ElectionTimeout, "election-timeout", 0, "election timeout (default 250ms with the raft store, 1s with etcd); with the etcd store also etcd's (heartbeat a tenth of it) and 3x it the rack leadership's lease")
	f.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", 0, "log entries between snapshots (default 8192)")
	f.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", 0, "how often to check whether to snapshot (default 30s)")
	f.Uint64Var(&cfg.TrailingLogs, "trailing-logs", 0, "log entries kept after a snapshot for slow followers (default 10240)")
	f.IntVar(&cfg.Retention, "retention", 0, "recent events kept readable through the API (default 100000)")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	hw.flags(f)
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "rackd", version) },
	})
	root.AddCommand(newDevCommand(stderr))
	return root
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := member.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid log-format %q: use text or json", format)
}

// serve runs one member, and its hardware reconcilers if it has a driver,
// until ctx ends, then shuts them down cleanly: the reconcilers first (an
// action in flight is abandoned at its next step; the next leader
// observes the hardware), then the member.
func serve(ctx context.Context, cfg member.Config, hw hardwareConfig, logger *slog.Logger) error {
	// The hardware first: a bus that does not open stops rackd before it
	// joins the control plane.
	var rg *rig
	if hw.Driver != driverNone {
		var err error
		if rg, err = hw.openRig(logger); err != nil {
			return fmt.Errorf("driver %s: %w", hw.Driver, err)
		}
	}
	m, err := member.Start(ctx, cfg, logger)
	if err != nil {
		if rg != nil {
			_ = rg.close()
		}
		return err
	}
	var hwDone <-chan struct{}
	hwCtx, stopHW := context.WithCancel(ctx)
	defer stopHW()
	if rg != nil {
		if hwDone, err = hw.runHardware(hwCtx, rg, m, cfg.Rack, logger); err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_ = m.Close(sctx)
			return fmt.Errorf("driver %s: %w", hw.Driver, err)
		}
	}
	<-ctx.Done()
	logger.Info("shutting down")
	stopHW()
	if hwDone != nil {
		<-hwDone
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := m.Close(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
