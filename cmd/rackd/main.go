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
	var configPath, logFormat string
	root := &cobra.Command{
		Use:   "rackd",
		Short: "Run a member of a Racklet rack's control plane",
		Long: `rackd runs one member of a rack's control plane: an embedded NATS server
clustered with the other members, a Raft-replicated event log over NATS, and
the HTTP API (JSON, Prometheus metrics at /metrics).

Start the first member with --bootstrap, the others with --join pointing at
the NATS cluster address of members already running. A member restarted on
the same --data-dir rejoins by itself. SIGTERM or SIGINT shut it down cleanly.

Settings can also come from a YAML file (--config) with the flags' names as
keys; flags given on the command line win over the file.`,
		Example: `  # a three-member control plane on one machine
  rackd --name m1 --data-dir /var/lib/rackd/m1 --bootstrap
  rackd --name m2 --data-dir /var/lib/rackd/m2 --http 127.0.0.1:7481 --nats 127.0.0.1:4223 \
        --nats-cluster 127.0.0.1:6223 --join nats://127.0.0.1:6222
  rackd --config /etc/racklet/rackd.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath != "" {
				if err := cfg.LoadFile(configPath); err != nil {
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
			logger, err := newLogger(stderr, cfg.LogLevel, logFormat)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, logger)
		},
	}
	f := root.Flags()
	f.StringVar(&configPath, "config", "", "YAML file with settings (keys are the flag names)")
	f.StringVar(&cfg.Name, "name", cfg.Name, "this member's name, [a-z0-9-]{1,63}; the default is the host name")
	f.StringVar(&cfg.Rack, "rack", cfg.Rack, "the rack's name")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the Raft log, snapshots and state (required)")
	f.StringVar(&cfg.HTTP, "http", cfg.HTTP, "HTTP API listen address")
	f.StringVar(&cfg.NATS, "nats", cfg.NATS, "NATS client listen address")
	f.StringVar(&cfg.NATSCluster, "nats-cluster", cfg.NATSCluster, "NATS route listen address, where other members join")
	f.StringSliceVar(&cfg.Join, "join", cfg.Join, "comma-separated NATS route URLs of existing members (nats://host:port)")
	f.BoolVar(&cfg.Bootstrap, "bootstrap", cfg.Bootstrap, "start a new cluster with this member as its first voter")
	f.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", 0, "Raft heartbeat timeout (default 1s)")
	f.DurationVar(&cfg.ElectionTimeout, "election-timeout", 0, "Raft election timeout (default 1s)")
	f.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", 0, "log entries between snapshots (default 8192)")
	f.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", 0, "how often to check whether to snapshot (default 30s)")
	f.Uint64Var(&cfg.TrailingLogs, "trailing-logs", 0, "log entries kept after a snapshot for slow followers (default 10240)")
	f.IntVar(&cfg.Retention, "retention", 0, "recent events kept readable through the API (default 100000)")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
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

// serve runs one member until ctx ends, then shuts it down cleanly.
func serve(ctx context.Context, cfg member.Config, logger *slog.Logger) error {
	m, err := member.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := m.Close(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
