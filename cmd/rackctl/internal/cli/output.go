package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// printStructured prints v as JSON or YAML (using the JSON field names).
func printStructured(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding JSON: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		b, err := toYAML(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("no structured output %q", format)
}

// toYAML encodes v as YAML with the field names of its JSON encoding.
func toYAML(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(numbers(generic)); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// numbers turns json.Numbers into integers or floats, so YAML shows them
// as numbers and not strings.
func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return string(x)
	}
	return v
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// desired shows a node's desired power, "cycle" while a cycle is the
// latest request.
func desired(n *state.Node) string {
	if n.CycleSequence != 0 && n.CycleSequence == n.DesiredSequence {
		return string(events.PowerCycle)
	}
	return dash(string(n.Desired))
}

func lastAction(n *state.Node) string {
	if n.LastAction == nil {
		return "-"
	}
	return n.LastAction.Operation + " " + n.LastAction.Status
}

// age is a short duration like kubectl's: 42s, 5m, 3h, 12d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func slot(n *state.Node) string {
	if n.Slot == 0 {
		return "-"
	}
	return fmt.Sprint(n.Slot)
}

// printNodes prints nodes as a table. SEEN is how long ago the node's
// power was last observed.
func printNodes(w io.Writer, now time.Time, nodes []*state.Node) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tSLOT\tMEMBER\tDESIRED\tOBSERVED\tLAST-ACTION\tSEEN")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, slot(n), dash(n.Member), desired(n), dash(string(n.Observed)), lastAction(n), age(now, n.ObservedAt))
	}
	return tw.Flush()
}

func printMembers(w io.Writer, ms []api.MemberInfo) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tLEADER\tVOTER\tRAFT-ADDRESS\tAPI-URL\tAPPLIED\tCOMMIT")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", m.Name, yesNo(m.Leader), yesNo(m.Voter), dash(m.RaftAddress), dash(m.APIURL), m.AppliedIndex, m.CommitIndex)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func shortType(t events.Type) string { return strings.TrimPrefix(string(t), events.TypePrefix) }

// eventColumns are an event's table cells.
func eventColumns(ev events.Event) []string {
	data := string(ev.Data)
	var buf bytes.Buffer
	if json.Compact(&buf, ev.Data) == nil {
		data = buf.String()
	}
	return []string{fmt.Sprint(ev.Sequence), ev.Time.UTC().Format(time.RFC3339), shortType(ev.Type), ev.Subject, data}
}

const eventHeader = "SEQ\tTIME\tTYPE\tSUBJECT\tDATA"

func printEvents(w io.Writer, evs []events.Event) error {
	tw := newTable(w)
	fmt.Fprintln(tw, eventHeader)
	for _, ev := range evs {
		fmt.Fprintln(tw, strings.Join(eventColumns(ev), "\t"))
	}
	return tw.Flush()
}

// eventLine formats one event for a followed table, in fixed-width
// columns (a stream cannot be aligned after the fact).
func eventLine(ev events.Event) string {
	c := eventColumns(ev)
	return fmt.Sprintf("%-7s %-20s %-22s %-10s %s", c[0], c[1], c[2], c[3], c[4])
}

func eventHeaderLine() string {
	return fmt.Sprintf("%-7s %-20s %-22s %-10s %s", "SEQ", "TIME", "TYPE", "SUBJECT", "DATA")
}
