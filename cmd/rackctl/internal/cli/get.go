package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

func newGetCommand(g *globals) *cobra.Command {
	get := &cobra.Command{
		Use:   "get",
		Short: "Show nodes, members or firmware",
		Example: `  rackctl get nodes
  rackctl get node n3 -o json
  rackctl get members --stale`,
	}
	get.AddCommand(&cobra.Command{
		Use:   "nodes",
		Short: "List the nodes with their desired and observed power",
		Long: `List the registered nodes, sorted by slot.

DESIRED is what was asked for (cycle while a power cycle is the latest
request), OBSERVED what the node's BMC last reported, SEEN how long ago.`,
		Example: `  rackctl get nodes
  rackctl get nodes -o yaml`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			nodes, err := c.Nodes(ctx, g.readOpts()...)
			if err != nil {
				return err
			}
			if g.output != "table" {
				if nodes == nil {
					nodes = []*state.Node{}
				}
				return printStructured(g.stdout, g.output, nodes)
			}
			return printNodes(g.stdout, g.now(), nodes)
		},
	})
	get.AddCommand(&cobra.Command{
		Use:     "node NAME",
		Short:   "Show one node",
		Example: `  rackctl get node n3`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			n, err := c.Node(ctx, args[0], g.readOpts()...)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return printStructured(g.stdout, g.output, n)
			}
			return printNodes(g.stdout, g.now(), []*state.Node{n})
		},
	})
	get.AddCommand(newGetFirmwareCommand(g))
	get.AddCommand(newGetFansCommand(g))
	get.AddCommand(&cobra.Command{
		Use:     "members",
		Short:   "List the control-plane members",
		Example: `  rackctl get members`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			ms, err := c.Members(ctx)
			if err != nil {
				return err
			}
			if g.output != "table" {
				if ms == nil {
					ms = []api.MemberInfo{}
				}
				return printStructured(g.stdout, g.output, ms)
			}
			return printMembers(g.stdout, ms)
		},
	})
	return get
}

// describeRecent is how many of a node's events describe shows.
const describeRecent = 20

// NodeDescription is what `describe node` shows with -o json|yaml.
type NodeDescription struct {
	Node   *state.Node    `json:"node"`
	Events []events.Event `json:"events"`
	// EventsNote says why events are missing, if they are.
	EventsNote string `json:"eventsNote,omitempty"`
}

func newDescribeCommand(g *globals) *cobra.Command {
	describe := &cobra.Command{
		Use:   "describe",
		Short: "Show an object in detail, with its recent events",
	}
	describe.AddCommand(&cobra.Command{
		Use:   "node NAME",
		Short: "Show a node's state and its recent events",
		Example: `  rackctl describe node n3
  rackctl describe node n3 -o yaml`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			n, err := c.Node(ctx, args[0], g.readOpts()...)
			if err != nil {
				return err
			}
			d := NodeDescription{Node: n, Events: []events.Event{}}
			// The node's events since it was registered, keeping the last few.
			q := client.EventQuery{Since: n.RegisteredSequence, Subject: n.Name, Limit: api.MaxEventLimit}
			for range 100 {
				evs, next, err := c.Events(ctx, q, g.readOpts()...)
				var ae *client.APIError
				if errors.As(err, &ae) && ae.Code == api.CodeCompacted {
					d.EventsNote = "older events were compacted: " + ae.Message
					break
				}
				if err != nil {
					return err
				}
				d.Events = append(d.Events, evs...)
				if len(d.Events) > describeRecent {
					d.Events = d.Events[len(d.Events)-describeRecent:]
				}
				if len(evs) < q.Limit || next <= q.Since {
					break
				}
				q.Since = next
			}
			if g.output != "table" {
				return printStructured(g.stdout, g.output, d)
			}
			return printDescription(g, d)
		},
	})
	return describe
}

func printDescription(g *globals, d NodeDescription) error {
	n := d.Node
	tw := newTable(g.stdout)
	fmt.Fprintf(tw, "Name:\t%s\n", n.Name)
	fmt.Fprintf(tw, "Slot:\t%s\n", slot(n))
	fmt.Fprintf(tw, "Member:\t%s\n", dash(n.Member))
	des := desired(n)
	if n.DesiredSequence != 0 {
		des += fmt.Sprintf(" (sequence %d", n.DesiredSequence)
		if n.Force {
			des += ", forced"
		}
		des += ")"
	}
	fmt.Fprintf(tw, "Desired power:\t%s\n", des)
	obs := dash(string(n.Observed))
	if n.ObservedSequence != 0 {
		obs += fmt.Sprintf(" (sequence %d, %s, %s ago)", n.ObservedSequence, n.ObservedAt.UTC().Format("2006-01-02T15:04:05Z"), age(g.now(), n.ObservedAt))
	}
	fmt.Fprintf(tw, "Observed power:\t%s\n", obs)
	if a := n.LastAction; a != nil {
		la := fmt.Sprintf("%s %s by %s (action %s, sequence %d)", a.Operation, a.Status, a.Reconciler, a.ID, a.Sequence)
		if a.Reason != "" {
			la += ": " + a.Reason
		}
		fmt.Fprintf(tw, "Last action:\t%s\n", la)
	} else {
		fmt.Fprintf(tw, "Last action:\t-\n")
	}
	fmt.Fprintf(tw, "Registered:\tsequence %d\n", n.RegisteredSequence)
	fmt.Fprintf(tw, "Last event:\tsequence %d\n", n.Sequence)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, "Events:")
	if d.EventsNote != "" {
		fmt.Fprintf(g.stdout, "  (%s)\n", d.EventsNote)
	}
	if len(d.Events) == 0 {
		fmt.Fprintln(g.stdout, "  <none>")
		return nil
	}
	tw = newTable(g.stdout)
	fmt.Fprintln(tw, "  "+eventHeader)
	for _, ev := range d.Events {
		fmt.Fprintln(tw, "  "+strings.Join(eventColumns(ev), "\t"))
	}
	return tw.Flush()
}
