package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
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
reconciler acts on it. --wait then watches the node's events until its
BMC reports the desired power (for cycle: off, then on), and fails after
--wait-timeout saying what is desired and what is observed.

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
			err = waitForPower(wctx, g, c, name, st, ev.Sequence)
			if err == nil {
				if g.output == "table" {
					fmt.Fprintf(g.stdout, "node %s: power %s done\n", name, st)
				}
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
				return timeoutError(cmd.Context(), g, c, name, st, waitTimeout)
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

// waitForPower follows the node's events until its observed power is st
// (for a cycle: off, then on, after the request at sequence seq). It fails
// early if the node is removed or someone asks for another power state.
func waitForPower(ctx context.Context, g *globals, c *client.Client, name string, st events.PowerState, seq uint64) error {
	n, err := c.Node(ctx, name)
	if err != nil {
		return err
	}
	// Replay the node's events from its registration, so that "what was
	// observed when the request came" is known; fall back to the request's
	// own sequence if that part of the log is compacted.
	since := n.RegisteredSequence
	var observed events.PowerState
	sawOff := false
	check := func(ev events.Event) error {
		switch ev.Type {
		case events.NodePowerObserved:
			p, err := ev.Payload()
			if err != nil {
				return err
			}
			observed = p.(*events.PowerObservedData).State
			if ev.Sequence > seq && observed == events.PowerOff {
				sawOff = true
			}
		case events.NodePowerDesired:
			if ev.Sequence > seq {
				return fmt.Errorf("node %s: the desired power changed again (event %d) while waiting; not waiting any more", name, ev.Sequence)
			}
		case events.NodeRemoved:
			if ev.Sequence > seq {
				return fmt.Errorf("node %s was removed (event %d) while waiting", name, ev.Sequence)
			}
		}
		if ev.Sequence < seq {
			return nil
		}
		if ev.Sequence == seq && st == events.PowerCycle && observed == events.PowerOff {
			sawOff = true // it was off already: on is all a cycle needs
		}
		switch {
		case st == events.PowerCycle && sawOff && observed == events.PowerOn && ev.Sequence > seq:
			return errPowerReached
		case st != events.PowerCycle && observed == st:
			return errPowerReached
		}
		return nil
	}
	follow := func(from uint64) error {
		err := c.FollowEvents(ctx, client.EventQuery{Since: from, Subject: name}, check)
		if errors.Is(err, errPowerReached) {
			return nil
		}
		return err
	}
	err = follow(since)
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Code == api.CodeCompacted {
		observed, sawOff = n.Observed, false
		if st != events.PowerCycle && n.Observed == st {
			return nil
		}
		return follow(seq + 1)
	}
	return err
}

// timeoutError says what was desired and what is observed now.
func timeoutError(ctx context.Context, g *globals, c *client.Client, name string, st events.PowerState, waited time.Duration) error {
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	observed := "unknown"
	if n, err := c.Node(ctx, name, client.Stale()); err == nil {
		observed = dash(string(n.Observed))
		if n.Observed == "" {
			observed = "nothing yet"
		}
	}
	what := string(st)
	if st == events.PowerCycle {
		what = "cycle (off, then on)"
	}
	return fmt.Errorf("timed out after %s waiting for node %s: desired power %s, observed %s (is the power reconciler running?)", waited, name, what, observed)
}
