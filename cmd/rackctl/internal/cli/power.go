package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

func newPowerCommand(g *globals) *cobra.Command {
	var (
		force       bool
		wait        bool
		waitTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "power on|off|cycle NODE",
		Short: "Set a node's desired power",
		Long: `Set a node's desired power: on, off, or cycle (off, then on again).

The command records the wish in the rack's log and returns; the power
reconciler acts on it. --wait then watches the node until its BMC reports
the desired power (for cycle: until the reconciler has done the power
cycle and the node is on). It fails at once if the reconciler refuses the
request (e.g. the quorum guard), and after --wait-timeout saying what is
desired and what is observed.

--force overrides the quorum guard, which refuses to power off a node
whose control-plane member the cluster cannot lose.`,
		Example: `  rackctl power off n3
  rackctl power cycle n3 --wait --wait-timeout 2m
  rackctl power off n1 --force`,
		ValidArgs: []string{"on", "off", "cycle"},
		Args: func(cmd *cobra.Command, args []string) error {
			if err := exactArgs("on|off|cycle", "NODE")(cmd, args); err != nil {
				return err
			}
			switch events.PowerState(args[0]) {
			case events.PowerOn, events.PowerOff, events.PowerCycle:
				return nil
			}
			return &usageError{fmt.Errorf("invalid power state %q: use on, off or cycle", args[0])}
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait && waitTimeout <= 0 {
				return &usageError{fmt.Errorf("invalid --wait-timeout %s: must be positive", waitTimeout)}
			}
			st, name := events.PowerState(args[0]), args[1]
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.withTimeout(cmd.Context())
			ev, err := c.SetPower(ctx, name, st, force)
			cancel()
			if err != nil {
				return err
			}
			if err := printCommand(g, ev, fmt.Sprintf("node %s: power %s requested", name, st)); err != nil {
				return err
			}
			if !wait {
				return nil
			}
			wctx, cancel := context.WithTimeout(cmd.Context(), waitTimeout)
			defer cancel()
			// The member asked may go down with the node being powered
			// off (it may host it): follow on another member then.
			if ms, err := c.Members(wctx); err == nil {
				for _, m := range ms {
					_ = c.AddEndpoints(m.APIURL)
				}
			}
			err = waitForPower(wctx, c, name, st, ev.Sequence)
			if err == nil {
				if g.output == "table" {
					fmt.Fprintf(g.stdout, "node %s: power %s done\n", name, st)
				}
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
				return timeoutError(cmd.Context(), g, c, name, st, ev.Sequence, waitTimeout)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&force, "force", false, "override the quorum guard")
	f.BoolVar(&wait, "wait", false, "wait until the node's observed power is the desired one")
	f.DurationVar(&waitTimeout, "wait-timeout", 60*time.Second, "how long --wait waits")
	return cmd
}

// errPowerReached ends the follow in waitForPower.
var errPowerReached = errors.New("power reached")

// waitForPower waits until the request at sequence seq is done: for on and
// off, until the node's observed power is st; for a cycle, until the power
// reconciler has done the cycle asked for (the node's CycleDoneSequence
// reaches seq) and the node is observed on. A cycle is a reset that may
// never be observed off, so observations alone cannot tell it happened.
// It fails at once if the request is refused (e.g. by the quorum guard),
// if the node is removed or if someone asks for another power state.
func waitForPower(ctx context.Context, c *client.Client, name string, st events.PowerState, seq uint64) error {
	check := func(n *state.Node) error {
		if n.Refusal != nil && n.Refusal.Sequence > seq {
			return refusedError(n.Refusal)
		}
		if n.DesiredSequence > seq {
			return fmt.Errorf("node %s: the desired power changed again (event %d) while waiting; not waiting any more", name, n.DesiredSequence)
		}
		switch {
		case st == events.PowerCycle && n.CycleDoneSequence >= seq && n.Observed == events.PowerOn:
			return errPowerReached
		case st != events.PowerCycle && n.Observed == st:
			return errPowerReached
		}
		return nil
	}
	// follow checks the node now, then again after each of its events from
	// sequence from on, so that nothing between the two is missed.
	follow := func(from uint64) error {
		n, err := c.Node(ctx, name)
		if err != nil {
			return err
		}
		if err := check(n); err != nil {
			return err
		}
		return c.FollowEvents(ctx, client.EventQuery{Since: from, Subject: name}, func(ev events.Event) error {
			if ev.Type == events.NodeRemoved {
				return fmt.Errorf("node %s was removed (event %d) while waiting", name, ev.Sequence)
			}
			// The member applied the event before streaming it: its
			// local state has it.
			n, err := c.Node(ctx, name, client.Stale())
			if err != nil {
				return err
			}
			return check(n)
		})
	}
	err := follow(seq + 1)
	// A member that went away (maybe with the node powered off): the
	// client has moved to the next member; check and follow there.
	for tries := 0; errors.Is(err, client.ErrConnection) && tries < 5 && ctx.Err() == nil; tries++ {
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
		err = follow(seq + 1)
	}
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Code == api.CodeCompacted {
		// The log was compacted past the request: resume from the node's
		// latest event.
		n, nerr := c.Node(ctx, name)
		if nerr != nil {
			return nerr
		}
		err = follow(n.Sequence + 1)
	}
	if errors.Is(err, errPowerReached) {
		return nil
	}
	return err
}

// refusedError is the reconciler's refusal of the request, as rackctl
// says it: "refused: quorum guard: … (use --force)".
func refusedError(r *state.Refusal) error {
	reason := strings.TrimPrefix(r.Reason, "state: ")
	reason = strings.Replace(reason, "(use force to override)", "(use --force)", 1)
	return fmt.Errorf("refused: %s", reason)
}

// timeoutError says what was desired and what is observed now.
func timeoutError(ctx context.Context, g *globals, c *client.Client, name string, st events.PowerState, seq uint64, waited time.Duration) error {
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	observed, what := "unknown", string(st)
	if n, err := c.Node(ctx, name, client.Stale()); err == nil {
		observed = dash(string(n.Observed))
		if n.Observed == "" {
			observed = "nothing yet"
		}
		if n.Unreachable {
			observed += fmt.Sprintf(" (node unreachable: %s)", n.UnreachableReason)
		}
		if st == events.PowerCycle && n.CycleDoneSequence < seq {
			what += " (not done yet)"
		}
	}
	return fmt.Errorf("timed out after %s waiting for node %s: desired power %s, observed %s (is the power reconciler running?)", waited, name, what, observed)
}
