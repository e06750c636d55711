package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/events"
)

func newEventsCommand(g *globals) *cobra.Command {
	var (
		q      client.EventQuery
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List or follow the rack's event log",
		Long: `List the events of the rack's log, oldest first, from --since on.

--type is a glob over event types, with or without the io.racklet. prefix
(node.power.* selects node.power.desired and node.power.observed).
--follow keeps printing new events as they are committed, resuming after
a dropped connection, until interrupted. With -o json it prints one JSON
event per line; with -o yaml one YAML document per event.`,
		Example: `  rackctl events
  rackctl events --since 120 --limit 50
  rackctl events --subject n3 --type 'node.power.*'
  rackctl events --follow -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if q.Limit < 1 || q.Limit > api.MaxEventLimit {
				return &usageError{fmt.Errorf("invalid --limit %d: must be from 1 to %d", q.Limit, api.MaxEventLimit)}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if follow {
				return followEvents(cmd.Context(), g, c, q)
			}
			ctx, cancel := g.withTimeout(cmd.Context())
			defer cancel()
			evs, next, err := c.Events(ctx, q, g.readOpts()...)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return printStructured(g.stdout, g.output, api.EventList{Events: evs, Next: next})
			}
			return printEvents(g.stdout, evs)
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&q.Since, "since", 0, "first sequence to show (default: the start of the log)")
	f.StringVar(&q.Type, "type", "", "event type glob, e.g. 'node.power.*'")
	f.StringVar(&q.Subject, "subject", "", "only events about this object (node or member name)")
	f.IntVar(&q.Limit, "limit", api.DefaultEventLimit, fmt.Sprintf("most events to list (at most %d; ignored with --follow)", api.MaxEventLimit))
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	_ = cmd.RegisterFlagCompletionFunc("type", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var ts []string
		for _, t := range events.Types() {
			ts = append(ts, shortType(t))
		}
		return ts, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// followEvents prints events as they come until the context ends, which
// for rackctl is an interrupt: that is a normal end, not an error.
func followEvents(ctx context.Context, g *globals, c *client.Client, q client.EventQuery) error {
	if g.output == "table" {
		fmt.Fprintln(g.stdout, eventHeaderLine())
	}
	err := c.FollowEvents(ctx, q, func(ev events.Event) error {
		switch g.output {
		case "json":
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "%s\n", b)
			return err
		case "yaml":
			b, err := toYAML(ev)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "---\n%s", b)
			return err
		}
		_, err := fmt.Fprintln(g.stdout, eventLine(ev))
		return err
	}, g.readOpts()...)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}
