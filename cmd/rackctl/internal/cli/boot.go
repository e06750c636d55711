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
	"github.com/racklet/rack/events"
)

func newBootCommand(g *globals) *cobra.Command {
	var (
		req         api.BootRequest
		source      string
		wait        bool
		waitTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "boot NODE --image URL --digest sha256:HEX --key KEYID",
		Short: "Boot a node from a signed OS image",
		Long: `Set a node's desired boot: where it boots from (--source network, the
default, or local) and the OS image (an https URL, its sha256 digest and
the id of the key that signed its manifest, as "rackctl firmware sign"
writes it beside the image: URL.manifest.json).

The command records the wish in the rack's log and returns. The boot
reconciler then fetches the manifest and the image and checks them: the
manifest must be signed by a trusted key with that id, for an OS image,
and name that digest, and the image must match it. An image that does not
verify never boots (event node.boot.refused) and the node is left alone.
Otherwise the reconciler sets the node's next boot source, power cycles it
(the quorum guard applies) and follows its stages: firmware, bootstrap,
image-verified, os, ready. A stage that takes too long marks the boot
failed (node.boot.failed, with the stage and why).

--wait follows the boot, printing each stage, until the node is ready; it
fails if the image is refused or the boot fails.

--key is the id of the key that signed the image (16 hex digits, as
rackctl firmware keygen prints it).`,
		Example: `  rackctl boot n3 --image https://images.rack/os-1.4.2.img \
      --digest sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 \
      --key 1f0e3d2c4b5a6978 --wait
  rackctl boot n3 --source local`,
		Args: exactArgs("NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			req.Source = events.BootSource(source)
			if !req.Source.Valid() {
				return &usageError{fmt.Errorf("invalid --source %q: use network or local", source)}
			}
			var missing []string
			for _, f := range []struct{ flag, v string }{{"--image", req.Image}, {"--digest", req.Digest}, {"--key", req.KeyID}} {
				if f.v == "" {
					missing = append(missing, f.flag)
				}
			}
			if len(missing) > 0 && (req.Source == events.BootNetwork || len(missing) < 3) {
				return &usageError{fmt.Errorf("%s boot needs --image, --digest and --key; missing %s", req.Source, strings.Join(missing, ", "))}
			}
			if wait && waitTimeout <= 0 {
				return &usageError{fmt.Errorf("invalid --wait-timeout %s: must be positive", waitTimeout)}
			}
			ctx, c, cancel, err := g.call(cmd)
			if err != nil {
				return err
			}
			ev, err := c.SetBoot(ctx, name, req)
			cancel()
			if err != nil {
				return err
			}
			what := string(req.Source)
			if req.Image != "" {
				what += " " + req.Image
			}
			if err := printCommand(g, ev, fmt.Sprintf("node %s: boot %s requested", name, what)); err != nil {
				return err
			}
			if !wait {
				return nil
			}
			wctx, wcancel := context.WithTimeout(cmd.Context(), waitTimeout)
			defer wcancel()
			// The node may host the member asked: follow on others then.
			if ms, err := c.Members(wctx); err == nil {
				for _, m := range ms {
					_ = c.AddEndpoints(m.APIURL)
				}
			}
			err = waitForBoot(wctx, g, c, name, ev.Sequence)
			if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
				return fmt.Errorf("timed out after %s waiting for node %s to boot%s", waitTimeout, name, bootStatus(cmd.Context(), g, c, name))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Image, "image", "", "https URL of the OS image (its manifest is URL.manifest.json)")
	f.StringVar(&req.Digest, "digest", "", "the image's digest, sha256:<64 hex digits>")
	f.StringVar(&req.KeyID, "key", "", "id of the key that signed the manifest (16 hex digits)")
	f.StringVar(&source, "source", string(events.BootNetwork), "boot source: network or local")
	f.BoolVar(&wait, "wait", false, "follow the boot until the node is ready")
	f.DurationVar(&waitTimeout, "wait-timeout", 15*time.Minute, "how long --wait waits")
	_ = cmd.RegisterFlagCompletionFunc("source", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"network", "local"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// errBooted ends the follow in waitForBoot.
var errBooted = errors.New("booted")

// waitForBoot follows node name's events after the boot spec at sequence
// seq until it is ready (nil), refused or failed (an error saying why), or
// superseded.
func waitForBoot(ctx context.Context, g *globals, c *client.Client, name string, seq uint64) error {
	table := g.output == "table"
	handle := func(ev events.Event) error {
		p, err := ev.Payload()
		if err != nil {
			return nil // a type this rackctl does not know
		}
		switch d := p.(type) {
		case *events.NodeRemovedData:
			return fmt.Errorf("node %s was removed (event %d) while booting", name, ev.Sequence)
		case *events.BootDesiredData:
			return fmt.Errorf("node %s: another boot was asked for (event %d) while waiting; not waiting any more", name, ev.Sequence)
		case *events.BootRefusedData:
			if d.Target == seq {
				return fmt.Errorf("refused: %s", d.Reason)
			}
		case *events.BootFailedData:
			if d.Target == seq || d.Target == 0 {
				return fmt.Errorf("boot failed in stage %s: %s", d.Stage, d.Reason)
			}
		case *events.BootStartedData:
			if d.Target == seq && table {
				fmt.Fprintf(g.stdout, "node %s: image verified; boot source %s set, power cycle asked\n", name, d.Source)
			}
		case *events.PowerRefusedData:
			if table {
				fmt.Fprintf(g.stdout, "node %s: power %s refused: %s\n", name, d.State, strings.TrimPrefix(d.Reason, "state: "))
			}
		case *events.BootStageData:
			if d.Target != seq && d.Target != 0 {
				return nil
			}
			if table {
				fmt.Fprintf(g.stdout, "node %s: stage %s\n", name, d.Stage)
			}
			if d.Stage == events.BootStageReady {
				return errBooted
			}
		}
		return nil
	}
	q := client.EventQuery{Since: seq + 1, Subject: name}
	err := c.FollowEvents(ctx, q, handle)
	for tries := 0; errors.Is(err, client.ErrConnection) && tries < 5 && ctx.Err() == nil; tries++ {
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
		err = c.FollowEvents(ctx, q, handle)
	}
	if errors.Is(err, errBooted) {
		if table {
			fmt.Fprintf(g.stdout, "node %s: booted\n", name)
		}
		return nil
	}
	return err
}

// bootStatus says where the node's boot stands, for a timeout message.
func bootStatus(ctx context.Context, g *globals, c *client.Client, name string) string {
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	n, err := c.Node(ctx, name, client.Stale())
	if err != nil || n.Boot == nil {
		return ""
	}
	b := n.Boot
	s := fmt.Sprintf(": boot %s", dash(b.Phase))
	if st := b.StageThisBoot(); st != "" {
		s += ", last stage " + string(st)
	}
	if n.Refusal != nil && n.Refusal.Sequence > b.CycleSequence && b.CycleSequence > 0 {
		s += "; power cycle refused: " + strings.TrimPrefix(n.Refusal.Reason, "state: ")
	}
	return s
}
