package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/events"
)

// printCommand prints a committed command's event: the event itself with
// -o json|yaml, else msg.
func printCommand(g *globals, ev events.Event, msg string) error {
	if g.output != "table" {
		return printStructured(g.stdout, g.output, api.CommandResponse{Sequence: ev.Sequence, Event: ev})
	}
	_, err := fmt.Fprintf(g.stdout, "%s (sequence %d)\n", msg, ev.Sequence)
	return err
}

func newRegisterCommand(g *globals) *cobra.Command {
	register := &cobra.Command{
		Use:   "register",
		Short: "Register an object with the rack",
	}
	var req api.RegisterNodeRequest
	node := &cobra.Command{
		Use:   "node NAME",
		Short: "Register a node (a compute unit in a slot)",
		Long: `Register a node so the control plane manages it. NAME is 1 to 63 of
a-z, 0-9 and -. --member names the control-plane member running on the
node, if any (powering such a node off is guarded by the quorum check).`,
		Example: `  rackctl register node n3 --slot 3
  rackctl register node n1 --slot 1 --member m1`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			r := req
			r.Name = args[0]
			ev, err := c.RegisterNode(ctx, r)
			if err != nil {
				return err
			}
			return printCommand(g, ev, fmt.Sprintf("node %s registered", r.Name))
		},
	}
	node.Flags().IntVar(&req.Slot, "slot", 0, fmt.Sprintf("the node's slot, 1 to %d (0: unknown)", api.MaxSlot))
	node.Flags().StringVar(&req.Member, "member", "", "the control-plane member that runs on the node")
	register.AddCommand(node)
	return register
}

func newRemoveCommand(g *globals) *cobra.Command {
	remove := &cobra.Command{
		Use:   "remove",
		Short: "Remove an object from the rack",
	}
	var reason string
	node := &cobra.Command{
		Use:     "node NAME",
		Short:   "Stop managing a node",
		Example: `  rackctl remove node n3 --reason "sent for repair"`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			ev, err := c.RemoveNode(ctx, args[0], reason)
			if err != nil {
				return err
			}
			return printCommand(g, ev, fmt.Sprintf("node %s removed", args[0]))
		},
	}
	node.Flags().StringVar(&reason, "reason", "", "why, for the log")
	member := &cobra.Command{
		Use:     "member NAME",
		Short:   "Remove a control-plane member from the cluster",
		Example: `  rackctl remove member m3`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			if err := c.RemoveMember(ctx, args[0]); err != nil {
				return err
			}
			if g.output != "table" {
				return printStructured(g.stdout, g.output, map[string]string{"removed": args[0]})
			}
			_, err = fmt.Fprintf(g.stdout, "member %s removed\n", args[0])
			return err
		},
	}
	remove.AddCommand(node, member)
	return remove
}
