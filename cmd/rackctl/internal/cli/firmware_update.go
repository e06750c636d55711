package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// newFirmwareSetCommand is `rackctl firmware set COMPONENT VERSION`.
func newFirmwareSetCommand(g *globals) *cobra.Command {
	var (
		wait        bool
		waitTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "set COMPONENT VERSION",
		Short: "Set the firmware version a BMC should run",
		Long: `Set the firmware version a component should run. COMPONENT is a node's
BMC, <node>-bmc (e.g. n3-bmc); VERSION is major.minor.patch.

The command records the wish in the rack's log and returns; the firmware
reconciler installs the signed image from its repository into the BMC's
inactive slot, verifies it, switches to it, reboots the node, checks that
it comes up, and confirms it, or rolls back to the old image. Every step
is an event (rackctl events --subject n3-bmc). It refuses, as an event,
an image that is missing, not signed by a trusted key, or older than the
BMC's anti-rollback counter (a rollback attack).

A BMC update reboots the node: it waits while the node is off, still
booting, or hosts a control-plane member the cluster cannot lose now.

--wait follows the update until the BMC runs VERSION, printing each step,
and fails at once if the reconciler refuses it.`,
		Example: `  rackctl firmware set n3-bmc 1.2.3
  rackctl firmware set n3-bmc 1.2.3 --wait --wait-timeout 10m`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := exactArgs("COMPONENT", "VERSION")(cmd, args); err != nil {
				return err
			}
			if _, _, ok := state.ParseFirmwareName(args[0]); !ok {
				return &usageError{fmt.Errorf("invalid component %q: use <node>-bmc, e.g. n3-bmc", args[0])}
			}
			if !events.ValidVersion(args[1]) {
				return &usageError{fmt.Errorf("invalid version %q: use major.minor.patch, e.g. 1.2.3", args[1])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait && waitTimeout <= 0 {
				return &usageError{fmt.Errorf("invalid --wait-timeout %s: must be positive", waitTimeout)}
			}
			name, version := args[0], args[1]
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.withTimeout(cmd.Context())
			ev, err := c.SetFirmware(ctx, name, version)
			cancel()
			if err != nil {
				return err
			}
			if err := printCommand(g, ev, fmt.Sprintf("firmware %s: version %s requested", name, version)); err != nil {
				return err
			}
			if !wait {
				return nil
			}
			wctx, cancel := context.WithTimeout(cmd.Context(), waitTimeout)
			defer cancel()
			// The update reboots the node, which may host the member
			// asked: follow on another member then.
			if ms, err := c.Members(wctx); err == nil {
				for _, m := range ms {
					_ = c.AddEndpoints(m.APIURL)
				}
			}
			progress := io.Discard
			if g.output == "table" {
				progress = g.stdout
			}
			err = waitForFirmware(wctx, c, name, version, ev.Sequence, progress)
			if err == nil {
				if g.output == "table" {
					fmt.Fprintf(g.stdout, "firmware %s: running %s\n", name, version)
				}
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
				return firmwareTimeout(cmd.Context(), g, c, name, version, waitTimeout)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&wait, "wait", false, "wait until the BMC runs the version, printing each step")
	f.DurationVar(&waitTimeout, "wait-timeout", 5*time.Minute, "how long --wait waits")
	return cmd
}

// errFirmwareReached ends the follow in waitForFirmware.
var errFirmwareReached = errors.New("firmware reached")

// waitForFirmware waits until component name runs version, confirmed,
// after the desired version at sequence seq. It prints the update's steps
// and waits to progress, and fails at once if the version is refused for
// good, if the desired version changes again or if the node is removed.
func waitForFirmware(ctx context.Context, c *client.Client, name, version string, seq uint64, progress io.Writer) error {
	check := func(f *state.Firmware) error {
		if f.DesiredSequence > seq {
			return fmt.Errorf("firmware %s: the desired version changed again (event %d) while waiting; not waiting any more", name, f.DesiredSequence)
		}
		if r := f.Refusal; r != nil && r.Target >= seq && r.Code != events.RefusedQuorum {
			return fmt.Errorf("refused (%s): %s", r.Code, r.Reason)
		}
		if f.Observed != nil && f.Observed.Version == version && !f.Observed.Trial {
			return errFirmwareReached
		}
		return nil
	}
	follow := func(from uint64) error {
		f, err := c.Firmware(ctx, name)
		if err != nil {
			return err
		}
		if err := check(f); err != nil {
			return err
		}
		// From here on the events decide, in log order (the state may
		// be ahead of the event being printed).
		return c.FollowEvents(ctx, client.EventQuery{Since: from, Subject: name}, func(ev events.Event) error {
			p, err := ev.Payload()
			if err != nil {
				return nil // a newer schema: skip
			}
			switch d := p.(type) {
			case *events.FirmwareStepData:
				line := fmt.Sprintf("firmware %s: %s %s", name, d.Step, d.Status)
				if d.Reason != "" {
					line += ": " + d.Reason
				}
				fmt.Fprintln(progress, line)
			case *events.FirmwareRefusedData:
				if d.Code == events.RefusedQuorum {
					fmt.Fprintf(progress, "firmware %s: waiting: %s\n", name, d.Reason)
					return nil
				}
				return check(&state.Firmware{DesiredSequence: seq, Refusal: &state.FirmwareRefusal{Code: d.Code, Reason: d.Reason, Target: d.Target}})
			case *events.FirmwareObservedData:
				return check(&state.Firmware{DesiredSequence: seq, Observed: &state.FirmwareObserved{Version: d.Version, Trial: d.Trial}})
			case *events.FirmwareDesiredData:
				return check(&state.Firmware{DesiredSequence: ev.Sequence})
			}
			return nil
		})
	}
	err := follow(seq + 1)
	for tries := 0; errors.Is(err, client.ErrConnection) && tries < 5 && ctx.Err() == nil; tries++ {
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
		err = follow(seq + 1)
	}
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Code == api.CodeCompacted {
		f, ferr := c.Firmware(ctx, name)
		if ferr != nil {
			return ferr
		}
		err = follow(f.Sequence + 1)
	}
	if errors.As(err, &ae) && ae.Code == api.CodeNotFound {
		return fmt.Errorf("firmware %s: %s (was the node removed?)", name, ae.Message)
	}
	if errors.Is(err, errFirmwareReached) {
		return nil
	}
	return err
}

// firmwareTimeout says what was desired and what runs now.
func firmwareTimeout(ctx context.Context, g *globals, c *client.Client, name, version string, waited time.Duration) error {
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	running := "unknown"
	if f, err := c.Firmware(ctx, name, client.Stale()); err == nil {
		running = observedFirmware(f)
		if s := f.LastStep; s != nil {
			running += fmt.Sprintf("; last step %s %s", s.Step, s.Status)
		}
	}
	return fmt.Errorf("timed out after %s waiting for firmware %s: desired %s, running %s (is the firmware reconciler configured?)", waited, name, version, running)
}

// newGetFirmwareCommand is `rackctl get firmware`.
func newGetFirmwareCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "firmware",
		Short: "List the BMCs' firmware: desired and running versions, last update step",
		Long: `List every firmware component (a node's BMC, <node>-bmc), by slot.

DESIRED is the version asked for, RUNNING what the BMC last reported (and
from which image slot; "trial" while a new image awaits its health
check), SV the BMC's anti-rollback counter, LAST-STEP the latest step of
an update, REFUSED why the desired version was refused, if it was.`,
		Example: `  rackctl get firmware
  rackctl get firmware -o yaml`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			list, err := c.FirmwareList(ctx, g.readOpts()...)
			if err != nil {
				return err
			}
			if g.output != "table" {
				if list == nil {
					list = []*state.Firmware{}
				}
				return printStructured(g.stdout, g.output, list)
			}
			return printFirmware(g.stdout, list)
		},
	}
}

// observedFirmware is a component's running version and slot.
func observedFirmware(f *state.Firmware) string {
	o := f.Observed
	if o == nil {
		return "-"
	}
	s := o.Version + " (" + o.Slot
	if o.Trial {
		s += ", trial"
	}
	return s + ")"
}

func printFirmware(w io.Writer, list []*state.Firmware) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tNODE\tDESIRED\tRUNNING\tSV\tLAST-STEP\tREFUSED")
	for _, f := range list {
		sv, step, refused := "-", "-", "-"
		if f.Observed != nil {
			sv = fmt.Sprint(f.Observed.SecurityVersion)
		}
		if s := f.LastStep; s != nil {
			step = s.Step + " " + s.Status
		}
		if r := f.Refusal; r != nil {
			refused = r.Code + " (" + r.Version + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, f.Node, dash(f.Desired), observedFirmware(f), sv, step, refused)
	}
	return tw.Flush()
}
