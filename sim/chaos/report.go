package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/racklet/rack/sim"
)

// Report is what a chaos run found.
type Report struct {
	Seed     uint64
	Duration time.Duration // the fault phase asked for
	Elapsed  time.Duration // the whole run
	Rounds   int
	Faults   map[sim.FaultKind]int
	FaultLog []string
	Ops      opCounts

	// 1. acknowledged appends, and those missing from some member's log.
	Acked int
	Lost  []string
	// 2. members' logs.
	LastSequence     map[string]uint64
	LogDisagreements []string
	// 3. leaders per term.
	Terms            int
	LeaderViolations []string
	// 4. linearizability.
	Lin linResult
	// 5. convergence.
	ConvergeTimeout      time.Duration
	Converged            bool
	ConvergedAfter       time.Duration
	ConvergeErr          string
	FaultConvergence     []time.Duration
	FaultConvergenceMiss int
	// 6. and 7. the reconcilers' BMC actions.
	ActionCalls, ActionsUnchecked int
	IntentChecked                 int
	IntentViolations              []string
	GuardChecked                  int
	GuardViolations               []string
	GuardExcused                  []string
	// 8. hot swap and boot (hotswap.go): units pulled out, bad boot
	// specs set and refused, and what went wrong.
	UnitPulls, BadBoots, BadBootsRefused int
	// RemovalsExcused counts pulls whose removal was not recorded while no
	// leader was seen (nobody could record it).
	RemovalsExcused   int
	HotswapViolations []string
	// 9. fans and temperature (thermal.go): fail-safe and critical
	// temperature checks, thermal shutdowns, alarms raised by kind.
	FailSafeChecks, CriticalChecks int
	FailSafeViolations             []string
	CriticalViolations             []string
	ThermalShutdowns               int
	Alarms                         map[string]int
}

// Violations lists every violated invariant; empty means the run passed.
func (r *Report) Violations() []string {
	var v []string
	add := func(what string, items []string) {
		for _, it := range items {
			v = append(v, what+": "+it)
		}
	}
	add("acknowledged event lost", r.Lost)
	add("logs disagree", r.LogDisagreements)
	add("two leaders in one term", r.LeaderViolations)
	// Every node exists from the start: "not registered" after the
	// linearizable sync a read or an off/cycle command does is a stale
	// state served as current.
	for _, u := range r.Ops.Unexpected {
		if strings.Contains(u, "not_found") {
			v = append(v, "stale state after a linearizable sync (registered node not found): "+u)
		}
	}
	if r.Lin.Result == porcupine.Illegal {
		msg := "history is not linearizable"
		if r.Lin.Visualization != "" {
			msg += " (visualization: " + r.Lin.Visualization + ")"
		}
		v = append(v, msg)
	}
	if !r.Converged {
		v = append(v, fmt.Sprintf("not converged within %v after the final heal: %s", r.ConvergeTimeout, r.ConvergeErr))
	}
	add("action before intent", r.IntentViolations)
	add("quorum guard broken", r.GuardViolations)
	add("hot swap or boot", r.HotswapViolations)
	add("fans not at 100% in fail-safe", r.FailSafeViolations)
	add("node on above the critical temperature", r.CriticalViolations)
	return v
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

func verdict(bad int) string {
	if bad == 0 {
		return "ok"
	}
	return "VIOLATED"
}

// Write prints the report block.
func (r *Report) Write(w io.Writer) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	p("==================== chaos report ====================")
	p("seed                      %d", r.Seed)
	p("fault phase / whole run   %v / %v (%d rounds)", r.Duration, ms(r.Elapsed), r.Rounds)
	kinds := slices.Sorted(maps.Keys(r.Faults))
	var fk []string
	total := 0
	for _, k := range kinds {
		fk = append(fk, fmt.Sprintf("%s=%d", k, r.Faults[k]))
		total += r.Faults[k]
	}
	p("faults                    %d: %s", total, strings.Join(fk, " "))
	o := r.Ops
	p("client writes             %d acked, %d refused (4xx; %d by the quorum guard), %d unknown outcome (timeout/5xx/conn)",
		o.WritesAcked, o.WritesRefused, o.WritesQuorumGuard, o.WritesUnknown)
	if len(o.RefusedBy) > 0 {
		var rb []string
		for _, k := range slices.Sorted(maps.Keys(o.RefusedBy)) {
			rb = append(rb, fmt.Sprintf("%s=%d", k, o.RefusedBy[k]))
		}
		p("  refusals by code        %s", strings.Join(rb, " "))
	}
	p("client reads              %d ok, %d failed", o.ReadsOK, o.ReadsFailed)
	p("1 acked events lost       %d of %d acknowledged   [%s]", len(r.Lost), r.Acked, verdict(len(r.Lost)))
	names := slices.Sorted(maps.Keys(r.LastSequence))
	var seqs []string
	for _, n := range names {
		seqs = append(seqs, fmt.Sprintf("%s@%d", n, r.LastSequence[n]))
	}
	p("2 members' logs agree     %s; %d disagreements   [%s]", strings.Join(seqs, " "), len(r.LogDisagreements), verdict(len(r.LogDisagreements)))
	p("3 one leader per term     %d terms with a leader seen, %d with two   [%s]", r.Terms, len(r.LeaderViolations), verdict(len(r.LeaderViolations)))
	lin := string(r.Lin.Result)
	if r.Lin.Result == porcupine.Unknown {
		lin += " (checker timed out: inconclusive)"
	}
	p("4 linearizable            %s: %d ops checked (%d writes of unknown outcome)   [%s]", lin, r.Lin.Ops, r.Lin.Unknown, verdict(boolInt(r.Lin.Result == porcupine.Illegal)))
	if r.Lin.Visualization != "" {
		p("  visualization           %s", r.Lin.Visualization)
	}
	if r.Lin.Err != "" {
		p("  visualization failed    %s", r.Lin.Err)
	}
	conv := fmt.Sprintf("after %v (bound %v)", ms(r.ConvergedAfter), r.ConvergeTimeout)
	if !r.Converged {
		conv = fmt.Sprintf("NOT within %v: %s", r.ConvergeTimeout, r.ConvergeErr)
	}
	p("5 converged after heal    %s   [%s]", conv, verdict(boolInt(!r.Converged)))
	fc := r.FaultConvergence
	maxd := time.Duration(0)
	for _, d := range fc {
		maxd = max(maxd, d)
	}
	p("  per-fault convergence   %d samples: p50 %v, p99 %v, max %v; %d not within the sample bound",
		len(fc), ms(percentile(fc, 0.5)), ms(percentile(fc, 0.99)), ms(maxd), r.FaultConvergenceMiss)
	p("6 action before intent    %d violations in %d BMC actions checked (%d calls, %d uncheckable)   [%s]",
		len(r.IntentViolations), r.IntentChecked, r.ActionCalls, r.ActionsUnchecked, verdict(len(r.IntentViolations)))
	p("7 quorum guard            %d violations in %d member-unit downs checked; %d excused (chaos pulled power not yet observed)   [%s]",
		len(r.GuardViolations), r.GuardChecked, len(r.GuardExcused), verdict(len(r.GuardViolations)))
	p("8 hot swap and boot       %d units pulled out (%d removals not recorded for want of a leader), %d bad images set (%d refused), %d expected 404s of pulled nodes; %d violations   [%s]",
		r.UnitPulls, r.RemovalsExcused, r.BadBoots, r.BadBootsRefused, o.SwappedNotFound, len(r.HotswapViolations), verdict(len(r.HotswapViolations)))
	var al []string
	for _, k := range slices.Sorted(maps.Keys(r.Alarms)) {
		al = append(al, fmt.Sprintf("%s=%d", k, r.Alarms[k]))
	}
	p("9 fans and temperature    fail-safe: %d violations in %d checks; critical: %d violations in %d hot samples; %d thermal shutdowns; alarms %s   [%s]",
		len(r.FailSafeViolations), r.FailSafeChecks, len(r.CriticalViolations), r.CriticalChecks, r.ThermalShutdowns,
		strings.Join(al, " "), verdict(len(r.FailSafeViolations)+len(r.CriticalViolations)))
	for _, list := range []struct {
		what  string
		items []string
	}{
		{"lost", r.Lost}, {"log disagreement", r.LogDisagreements}, {"leaders", r.LeaderViolations},
		{"intent", r.IntentViolations}, {"quorum guard", r.GuardViolations}, {"excused", r.GuardExcused},
		{"hot swap or boot", r.HotswapViolations},
		{"fail-safe", r.FailSafeViolations}, {"critical temperature", r.CriticalViolations},
		{"unexpected client answer", r.Ops.Unexpected},
	} {
		for i, it := range list.items {
			if i == 10 {
				p("  %s: … %d more", list.what, len(list.items)-10)
				break
			}
			p("  %s: %s", list.what, it)
		}
	}
	v := r.Violations()
	if len(v) == 0 {
		p("RESULT                    PASS")
	} else {
		p("RESULT                    FAIL: %d violations (seed %d)", len(v), r.Seed)
	}
	p("======================================================")
	_, _ = io.WriteString(w, b.String())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
