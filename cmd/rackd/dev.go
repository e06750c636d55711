package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/sim/devrack"
)

// newDevCommand is `rackd dev`: a simulated rack with its control plane in
// one process, on loopback.
func newDevCommand(stderr io.Writer) *cobra.Command {
	var (
		cfg       devrack.Config
		dir       string
		logLevel  string
		logFormat string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a simulated rack managed by its own 3-member control plane",
		Long: `rackd dev starts, in one process on 127.0.0.1, a simulated rack (5 slots
with a BMC each and a rack management controller) and a control plane of 3
members hosted on the units of slots 1-3. Every slot's node is registered
with desired power on, and the power reconciler drives the BMCs.

Pulling power from a member's slot in the simulator kills that member; it
starts again from its data dir once its unit has booted.`,
		Example: `  rackd dev
  rackctl get nodes
  rackctl power off n4 --wait`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(stderr, logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.Dir = dir
			ctx := cmd.Context()
			startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			rack, err := devrack.Start(startCtx, cfg)
			if err != nil {
				return fmt.Errorf("starting the simulated rack: %w", err)
			}
			printWelcome(cmd.OutOrStdout(), rack)
			<-ctx.Done()
			fmt.Fprintln(cmd.OutOrStdout(), "\nshutting the simulated rack down")
			sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer scancel()
			return rack.Close(sctx)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Slots, "slots", 5, "slots in the simulated rack")
	f.IntVar(&cfg.Members, "members", 3, "control-plane members, on the first slots")
	f.Uint64Var(&cfg.Seed, "seed", 1, "simulator seed (sensor noise)")
	f.IntVar(&cfg.BaseHTTP, "http-port", 7480, "API port of member m1 (m2 gets the next, and so on); 0 picks free ports")
	f.IntVar(&cfg.BaseNATS, "nats-port", 4222, "NATS port of member m1 (m2 gets the next, and so on); 0 picks free ports")
	f.Float64Var(&cfg.BudgetWatts, "budget-watts", 30, "rack power budget for staggered power-on, units only (0: none)")
	f.DurationVar(&cfg.ObserveInterval, "observe-interval", 500*time.Millisecond, "how often the power reconciler reads every BMC")
	f.StringVar(&dir, "data-dir", "", "directory for the members' data (default: a temporary one, removed on exit)")
	f.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return cmd
}

func printWelcome(w io.Writer, rack *devrack.Rack) {
	ms := rack.Members()
	fmt.Fprintf(w, "Racklet simulated rack is up: %d slots, %d control-plane members.\n\n", rack.Slots(), len(ms))
	fmt.Fprintf(w, "  %-6s %-6s %-24s %-24s %s\n", "MEMBER", "SLOT", "API", "NATS", "METRICS")
	for _, m := range ms {
		fmt.Fprintf(w, "  %-6s %-6d %-24s %-24s %s\n", m.Name(), rack.MemberSlot(m.Name()), m.APIURL(), m.NATSURL(), m.APIURL()+"/metrics")
	}
	api := ms[0].APIURL()
	server := ""
	if api != "http://127.0.0.1:7480" {
		server = " --server " + api
	}
	fmt.Fprintf(w, `
Try, in another terminal (rackctl: go run ./cmd/rackctl, or make build and ./bin/rackctl):
  rackctl%[1]s get nodes
  rackctl%[1]s power off n4 --wait
  rackctl%[1]s events --follow
  rackctl%[1]s get members
Integrations: subscribe to racklet.%[2]s.events.> on %[3]s (nats sub 'racklet.%[2]s.events.>')
Data: %[4]s. Stop with Ctrl-C.
`, server, rack.Name(), strings.TrimSpace(ms[0].NATSURL()), rack.DataDir())
}
