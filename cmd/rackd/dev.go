package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/firmware"
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
		fanPolicy string
		bootKeys  []string
		bootCA    string
		insecure  bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a simulated rack managed by its own 3-member control plane",
		Long: `rackd dev starts, in one process on 127.0.0.1, a simulated rack (5 slots
with a BMC each and a rack management controller) and a control plane of 3
members hosted on the units of slots 1-3. Every slot's node is registered
with desired power on, and the power reconciler drives the BMCs.

Pulling power from a member's slot in the simulator kills that member; it
starts again from its data dir once its unit has booted.

With --firmware-dir and --firmware-pubkey the firmware reconciler updates
the simulated BMCs (rackctl firmware set n4-bmc 1.2.3 --wait) over an
emulated SMBus; every BMC starts at 1.0.0.

The RMC has four simulated fans; the fan reconciler samples every
--fan-interval, drives them from the fan policy (--fan-policy FILE, YAML
or JSON, else a default curve; "rackctl fan-policy set -f" changes it)
and publishes telemetry: rackctl top, rackctl get fans, /metrics.

rackctl boot NODE --image URL --digest sha256:... --key ID boots a node from
a signed OS image over HTTPS; --boot-key names the keys trusted to sign
images (rackctl firmware keygen and sign --component os make them) and
--boot-ca the CAs of the image server.`,
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
			cfg.Secure = !insecure
			if fanPolicy != "" {
				p, err := readFanPolicy(fanPolicy)
				if err != nil {
					return err
				}
				cfg.Fans.Policy = &p
			}
			if len(bootKeys) > 0 {
				if cfg.Boot.Keyring, err = firmware.ReadKeyring(bootKeys...); err != nil {
					return fmt.Errorf("boot-key: %w", err)
				}
			}
			if bootCA != "" {
				if cfg.Boot.RootCAs, err = readCertPool(bootCA); err != nil {
					return fmt.Errorf("boot-ca: %w", err)
				}
			}
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
	f.StringVar(&cfg.Firmware.Dir, "firmware-dir", "", "firmware image repository (bmc-X.Y.Z.bin with its manifest, as rackctl firmware sign leaves them); enables BMC firmware updates")
	f.StringArrayVar(&cfg.Firmware.Keys, "firmware-pubkey", nil, "public key trusted to sign firmware (PEM, as rackctl firmware keygen writes it); repeat for several; required with --firmware-dir")
	f.StringVar(&fanPolicy, "fan-policy", "", "fan policy file (YAML or JSON, as rackctl fan-policy set takes) the rack starts with, if its log has none")
	f.StringArrayVar(&bootKeys, "boot-key", nil, "public key trusted to sign OS images (PEM, as rackctl firmware keygen writes it) for rackctl boot; repeat for several; without any, network boots are refused")
	f.StringVar(&bootCA, "boot-ca", "", "CA certificates (PEM) trusted for OS image servers (default: the system's)")
	f.DurationVar(&cfg.Fans.Interval, "fan-interval", time.Second, "how often the fan reconciler samples every sensor and sets the fans")
	f.BoolVar(&insecure, "insecure", false, "plain text and no authentication (loopback only); default: mutual TLS with a throwaway rack CA in DATA-DIR/pki")
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
	if files, ok := rack.ClientFiles(); ok {
		server = ""
		env := fmt.Sprintf("export RACK_SERVER=%s RACK_CA=%s RACK_CERT=%s RACK_KEY=%s\n", api, files.CA, files.Cert, files.Key)
		envFile := filepath.Join(rack.DataDir(), "pki", "rackctl.env")
		if err := os.WriteFile(envFile, []byte(env), 0o600); err != nil {
			fmt.Fprintf(w, "\n(could not write %s: %v)\n", envFile, err)
		}
		fmt.Fprintf(w, `
Every port is mutual TLS with a throwaway rack CA in %s.
rackctl needs its admin client certificate; in another terminal:
  source %s
(it sets RACK_SERVER, RACK_CA, RACK_CERT and RACK_KEY). More identities:
rackctl pki issue client|integration NAME --dir %s ...
`, filepath.Dir(files.CA), envFile, filepath.Dir(files.CA))
	}
	fmt.Fprintf(w, `
Try, in another terminal (rackctl: go run ./cmd/rackctl, or make build and ./bin/rackctl):
  rackctl%[1]s get nodes
  rackctl%[1]s power off n4 --wait
  rackctl%[1]s events --follow
  rackctl%[1]s get members
  rackctl%[1]s top --watch
Integrations: subscribe to racklet.%[2]s.events.> on %[3]s (nats sub 'racklet.%[2]s.events.>')
Data: %[4]s. Stop with Ctrl-C.
`, server, rack.Name(), strings.TrimSpace(ms[0].NATSURL()), rack.DataDir())
}
