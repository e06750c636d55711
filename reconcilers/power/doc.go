// Package power is the power reconciler: it drives every node's power, as
// its BMC reports it, towards the power desired in the rack's log, and
// records what it observes and does there. It runs in the reconciler
// runtime (package reconcilers) on the leader.
//
// # Loop
//
// Reconcile(n) reads the state projection and, for node n:
//
//  1. Observes: reads the power of the BMC in n's slot (each call bounded
//     by Config.CallTimeout) and appends node.power.observed only when it
//     differs from the state's Observed, so the log gets changes, not
//     samples.
//  2. Diffs: a pending power cycle (state.Node.CyclePending) wants
//     power.cycle, unless an off was asked for after the cycle (the later
//     wish wins; cycling an off unit later just powers it on, which
//     completes the cycle); otherwise a Desired that differs from the
//     observed power wants power.on or power.off. Drift (someone pulled the
//     slot or switched the unit out of band) is just observed != desired,
//     and is driven back.
//  3. Checks safety: the quorum guard (state.State.QuorumGuard) for off and
//     cycle of a node that is on, unless the wish was forced; a refusal is
//     recorded once per desired sequence as node.power.refused and nothing
//     is done. The power budget (below) for on and cycle.
//  4. Acts, intent before action: action.started is committed first, with
//     eventlog.Fenced's AppendFenced when the log has it, so a member that
//     lost leadership cannot commit it and therefore never touches the
//     hardware (Reconcile returns the error, eventlog.ErrNotLeader). Only
//     then is the BMC told (SetPower or PowerCycle). Success appends
//     action.succeeded and, if the BMC now reports another power,
//     node.power.observed, in one batch; failure appends action.failed
//     (Retry set for unreachable and timeout) and returns the error so the
//     runtime backs off.
//
// Every Reconcile ends with RequeueAfter Config.ObserveInterval, so every
// node is observed at least that often. Reconcile is idempotent: with
// nothing changed in the log or the hardware it appends nothing.
//
// # Unreachable BMCs
//
// Failed BMC calls are counted per node (in memory; consecutive; reset by
// any successful call). Below Config.FailuresBeforeUnreachable the error is
// returned and the runtime retries with exponential backoff. At that count
// node.unreachable (reason, count) is appended once, and from then on the
// node is retried every Config.UnreachableRetry without an error, so the
// backoff does not grow further. The first successful call afterwards
// appends node.reachable.
//
// # Power budget (staggered power-on)
//
// With Config.BudgetWatts > 0, powering units on is staggered so that the
// modelled draw of the rack's units never exceeds the budget. The model:
// a unit that is on draws Config.UnitWatts (its steady, worst boot stage
// draw); for Config.InrushWindow after power-on it draws
// Config.InrushWatts instead (capacitors charging). A unit counts as on if
// the state observed it on or this reconciler powered it on (or is about to)
// and has not observed it off since. A power-on or cycle of unit u is
// admitted only if
//
//	on·UnitWatts + inrush·(InrushWatts − UnitWatts) + InrushWatts ≤ BudgetWatts
//
// where on counts the other units that are on and inrush those of them
// powered on within the last InrushWindow (or being powered on right now).
// The window is measured from the moment the BMC call returned, which is
// no earlier than the moment the unit powered on. Admission reserves the
// unit's inrush under a mutex shared by all nodes, so concurrent workers
// cannot overcommit. A unit that is not admitted is retried when the
// earliest inrush window ends (Config.ObserveInterval if it waits for no
// inrush, i.e. the steady draw alone leaves no room). Standby draw and
// the rack's own overhead are not in the model: budget for them outside
// BudgetWatts.
//
// # Metrics
//
// On Config.Registerer: racklet_power_actions_total{operation,result}
// (result succeeded or failed), racklet_power_refusals_total and
// racklet_power_budget_waits_total.
package power
