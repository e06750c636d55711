// Package cli holds rackctl's commands. Main runs them; cmd/rackctl only
// wires it to the process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/client"
)

// DefaultServer is the API address when neither --server nor RACK_SERVER
// says otherwise.
const DefaultServer = "http://127.0.0.1:7480"

// ServerEnv names the environment variable that sets the default --server.
const ServerEnv = "RACK_SERVER"

// globals are the flags every command shares, and the process's streams.
type globals struct {
	server  string
	tls     tlsFlags
	output  string
	stale   bool
	timeout time.Duration

	stdout, stderr io.Writer
	now            func() time.Time
}

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// Main runs rackctl with args and returns the process's exit code: 0 on
// success, 1 when the command failed, 2 when the command line is wrong.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	root := NewRootCommand(stdout, stderr, getenv)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "rackctl: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintln(stderr, "Run 'rackctl --help' for usage.")
		return 2
	}
	return 1
}

// isCobraUsageError spots cobra's own errors for unknown commands.
func isCobraUsageError(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown shorthand flag") ||
		strings.HasPrefix(err.Error(), "unknown flag")
}

// NewRootCommand returns rackctl's command tree writing to stdout and
// stderr; getenv supplies RACK_SERVER.
func NewRootCommand(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr, now: time.Now}
	server := DefaultServer
	if getenv != nil {
		if v := getenv(ServerEnv); v != "" {
			server = v
		}
	}
	root := &cobra.Command{
		Use:   "rackctl",
		Short: "Control a Racklet rack",
		Long: `rackctl talks to a rack's control plane (any member's HTTP API).

Reads are linearizable by default: the member first catches up with the
leader. --stale reads the member's local copy instead (fast, and possible
without a leader, but it may lag behind).

Every change is an event in the rack's log; "rackctl events" shows them.`,
		Example: `  rackctl get nodes
  rackctl --server http://10.0.0.11:7480 get node n3 -o yaml
  rackctl power off n3 --wait
  rackctl events --follow --type 'node.power.*'`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			switch g.output {
			case "table", "json", "yaml":
			default:
				return &usageError{fmt.Errorf("invalid --output %q: use table, json or yaml", g.output)}
			}
			if g.timeout <= 0 {
				return &usageError{fmt.Errorf("invalid --timeout %s: must be positive", g.timeout)}
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", server, "control-plane member's API URL (env "+ServerEnv+")")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	pf.BoolVar(&g.stale, "stale", false, "read the member's local state without syncing with the leader")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "how long a request may take")
	g.tls.register(pf, getenv)
	_ = root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp
	})

	root.AddCommand(
		newGetCommand(g),
		newDescribeCommand(g),
		newEventsCommand(g),
		newRegisterCommand(g),
		newRemoveCommand(g),
		newPowerCommand(g),
		newTopCommand(g),
		newFanPolicyCommand(g),
		newBootCommand(g),
		newVersionCommand(g),
		newFirmwareCommand(g),
		newPKICommand(g),
	)
	return root
}

// client returns an API client for --server.
func (g *globals) client() (*client.Client, error) {
	opts, err := g.tls.options()
	if err != nil {
		return nil, err
	}
	c, err := client.New(g.server, append([]client.Option{client.WithUserAgent("rackctl/" + Version)}, opts...)...)
	if err != nil {
		return nil, &usageError{err}
	}
	return c, nil
}

// call starts one request of cmd: a client of the server and a context
// bounded by --timeout. The caller defers cancel.
func (g *globals) call(cmd *cobra.Command) (context.Context, *client.Client, context.CancelFunc, error) {
	c, err := g.client()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := g.withTimeout(cmd.Context())
	return ctx, c, cancel, nil
}

// readOpts returns the read options the flags ask for.
func (g *globals) readOpts() []client.ReadOption {
	if g.stale {
		return []client.ReadOption{client.Stale()}
	}
	return nil
}

// withTimeout bounds one request by --timeout.
func (g *globals) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, g.timeout)
}

// exactArgs is cobra.ExactArgs with a usage error naming what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return &usageError{fmt.Errorf("%s wants %d argument(s) (%s), got %d", cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))}
		}
		return nil
	}
}
