package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/reconcilers/fans"
)

// newGetFansCommand is `rackctl get fans`.
func newGetFansCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "fans",
		Short: "Show the fans, their duty, the fan policy and the raised alarms",
		Long: `Show every fan's speed and duty from the latest telemetry sample, whether
the fans run at 100% in fail-safe (and why), the fan policy in force and the
raised alarms (failed fans, stale or missing sensors, critical temperatures).`,
		Example: `  rackctl get fans
  rackctl get fans -o yaml`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			fr, err := c.Fans(ctx, g.readOpts()...)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return printStructured(g.stdout, g.output, fr)
			}
			return printFans(g.stdout, g.now(), fr)
		},
	}
}

func printFans(w io.Writer, now time.Time, fr api.FansResponse) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "FAN\tRPM\tDUTY\tSTATUS")
	for _, f := range fr.Fans {
		status := "ok"
		if f.Failed {
			status = "FAILED"
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f%%\t%s\n", f.Fan, f.RPM, f.Duty, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case fr.SampledAt.IsZero():
		fmt.Fprintln(w, "No telemetry sample yet.")
	case !fr.Fresh:
		fmt.Fprintf(w, "Sample is stale: taken %s ago.\n", age(now, fr.SampledAt))
	}
	if fr.FailSafe {
		fmt.Fprintf(w, "Fail-safe: fans at 100%% (%s)\n", fr.FailSafeReason)
	} else if !fr.SampledAt.IsZero() {
		fmt.Fprintf(w, "Duty: %.1f%% from the fan policy\n", fr.Duty)
	}
	if p := fr.Policy; p != nil {
		fmt.Fprintf(w, "Policy: %s on %s, critical %v °C, stale after %s\n", p.Mode, p.Source, p.CriticalCelsius, p.StaleAfter)
	} else {
		fmt.Fprintln(w, "Policy: none set (the leader runs its default)")
	}
	if len(fr.Alarms) == 0 {
		_, err := fmt.Fprintln(w, "Alarms: none")
		return err
	}
	fmt.Fprintln(w, "Alarms:")
	tw = newTable(w)
	fmt.Fprintln(tw, "  KIND\tSUBJECT\tSINCE\tREASON")
	for _, a := range fr.Alarms {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", a.Kind, a.Subject, age(now, a.Since), a.Reason)
	}
	return tw.Flush()
}

// newFanPolicyCommand is `rackctl fan-policy get|set`.
func newFanPolicyCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fan-policy",
		Short: "Show or set the rack's fan policy",
		Long: `The fan policy says how the fans follow temperature, when a node is shut
down, and when a sensor counts as stale. It is desired state: setting it
appends an io.racklet.rack.fanpolicy.set event, and the leader's fan
reconciler applies it at its next sample.

A policy file is YAML (or JSON) with these fields:

  mode: curve            # curve or pid
  source: max-node       # max-node (hottest node, default) or inlet
  curve:                 # mode curve: 2-16 points, °C strictly increasing,
    - {celsius: 35, duty: 20}   # duty (%) never decreasing
    - {celsius: 50, duty: 40}
    - {celsius: 70, duty: 100}
  # pid: {setpoint: 45, kp: 4, ki: 0.5, kd: 0, minDuty: 20, maxDuty: 100}
  criticalCelsius: 85    # a node over it is shut down (forced)
  staleAfter: 10s        # a sensor unchanged or unreadable this long is stale

Whatever the policy, a failed fan or a stale or missing sensor puts every
fan at 100% and raises an alarm ("rackctl get fans").`,
		Example: `  rackctl fan-policy get
  rackctl fan-policy set -f policy.yaml
  rackctl fan-policy get -o yaml > policy.yaml`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "get",
		Short: "Show the fan policy in the log",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			fp, err := c.FanPolicy(ctx, g.readOpts()...)
			if err != nil {
				return err
			}
			switch g.output {
			case "json":
				return printStructured(g.stdout, g.output, fp)
			case "yaml":
				// The policy alone: a file "fan-policy set -f" takes back.
				return printStructured(g.stdout, g.output, fp.Policy)
			}
			fmt.Fprintf(g.stdout, "# set at sequence %d, %s\n", fp.Sequence, fp.SetAt.UTC().Format(time.RFC3339))
			return printStructured(g.stdout, "yaml", fp.Policy)
		},
	})
	var file string
	set := &cobra.Command{
		Use:   "set -f FILE",
		Short: "Set the fan policy from a YAML or JSON file (- for stdin)",
		Long: `Set the fan policy from a YAML or JSON file ("-" reads stdin). The file is
checked here first, then by the control plane; an invalid one is refused
with the field that is wrong and changes nothing.`,
		Example: `  rackctl fan-policy set -f policy.yaml
  rackctl fan-policy get -o yaml | sed 's/85/80/' | rackctl fan-policy set -f -`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return &usageError{errors.New("fan-policy set needs -f FILE (or -f - for stdin)")}
			}
			var b []byte
			var err error
			if file == "-" {
				b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), fans.MaxPolicyBytes+1))
			} else {
				b, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("reading the policy: %w", err)
			}
			p, err := fans.ParsePolicy(b)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			ev, err := c.SetFanPolicy(ctx, p)
			if err != nil {
				return err
			}
			return printCommand(g, ev, fmt.Sprintf("fan policy set: %s on %s, critical %v °C", p.Mode, p.Source, p.CriticalCelsius))
		},
	}
	set.Flags().StringVarP(&file, "file", "f", "", "policy file, YAML or JSON (- for stdin)")
	cmd.AddCommand(set)
	return cmd
}

// newTopCommand is `rackctl top`.
func newTopCommand(g *globals) *cobra.Command {
	var (
		watch bool
		every time.Duration
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show live power, energy, temperature and fan speed",
		Long: `Show the latest telemetry sample: per node its power (W), energy since its
monitor started counting (Wh) and temperature (°C); the rack's total power
and energy at its supply and its inlet temperature; every fan's speed and
duty, and fail-safe. The leader samples every interval and every member
serves the latest sample, so any --server will do. --watch refreshes until
interrupted.`,
		Example: `  rackctl top
  rackctl top --watch --interval 2s
  rackctl top -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if watch && every <= 0 {
				return &usageError{fmt.Errorf("invalid --interval %s: must be positive", every)}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			for {
				ctx, cancel := g.withTimeout(cmd.Context())
				tr, err := c.Telemetry(ctx)
				cancel()
				if err != nil {
					return err
				}
				if g.output != "table" {
					if err := printStructured(g.stdout, g.output, tr); err != nil {
						return err
					}
				} else {
					if watch {
						fmt.Fprint(g.stdout, "\x1b[H\x1b[2J") // clear the terminal, as top does
					}
					if err := printTop(g.stdout, tr); err != nil {
						return err
					}
				}
				if !watch {
					return nil
				}
				t := time.NewTimer(every)
				select {
				case <-cmd.Context().Done():
					t.Stop()
					return nil
				case <-t.C:
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&every, "interval", 2*time.Second, "refresh interval with --watch")
	return cmd
}

func wh(joules float64) string { return fmt.Sprintf("%.3f", joules/3600) }

func printTop(w io.Writer, tr api.TelemetryResponse) error {
	stale := ""
	if !tr.Fresh {
		stale = " (STALE: the leader has not published a sample since)"
	}
	fmt.Fprintf(w, "Rack %s, sampled by %s at %s, %.1fs ago%s\n\n", tr.Rack, tr.Member, tr.Time.UTC().Format(time.RFC3339), tr.AgeSeconds, stale)
	tw := newTable(w)
	fmt.Fprintln(tw, "NODE\tSLOT\tPOWER(W)\tENERGY(Wh)\tTEMP(°C)\tSTATUS")
	nodes := append([]telemetry.NodeSample(nil), tr.Nodes...)
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Slot < nodes[j].Slot })
	for _, n := range nodes {
		switch {
		case !n.OK:
			fmt.Fprintf(tw, "%s\t%d\t-\t-\t-\tno answer: %s\n", n.Name, n.Slot, shorten(n.Error, 60))
		default:
			status := "ok"
			if n.Stale {
				status = "STALE"
			}
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%.1f\t%s\n", n.Name, n.Slot, n.Watts, wh(n.Joules), n.Celsius, status)
		}
	}
	t := tr.Totals
	if t.OK {
		fmt.Fprintf(tw, "RACK\t-\t%.2f\t%s\t%.1f (inlet)\t\n", t.Watts, wh(t.Joules), t.InletCelsius)
	} else {
		fmt.Fprintf(tw, "RACK\t-\t-\t-\t-\tno answer: %s\n", shorten(t.Error, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var fs []string
	for _, f := range tr.Fans {
		s := fmt.Sprintf("%d: %.0f rpm", f.Fan, f.RPM)
		if f.Failed {
			s += " FAILED"
		}
		fs = append(fs, s)
	}
	if len(fs) == 0 {
		fs = []string{"none read"}
	}
	fmt.Fprintf(w, "\nFans at %.0f%%: %s\n", tr.Duty, strings.Join(fs, ", "))
	if tr.FailSafe {
		fmt.Fprintf(w, "FAIL-SAFE: fans at 100%% (%s)\n", tr.FailSafeReason)
	}
	return nil
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
