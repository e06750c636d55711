// Package fans is the fan reconciler: on the leader, every Interval, it
// samples the rack's sensors (every node's BMC, the RMC's inlet and supply
// monitors, the fans' tachometers), drives the fans' duty from the fan
// policy, fails safe, shuts down nodes over the critical temperature, and
// publishes the sample as telemetry. It runs in the reconciler runtime
// (package reconcilers) like the power reconciler, with one name: the
// rack. Its input is io.racklet.rack.fanpolicy.set (a new policy applies
// at once); everything else is polled (RequeueAfter Interval).
//
// # Policy
//
// The policy is desired state: the last fanpolicy.set in the log (see
// events.FanPolicy), or Config.Policy while there is none. Mode curve
// interpolates duty linearly between (°C, %) points; mode pid runs a PID
// controller (anti-windup: the integral term alone never exceeds the duty
// range) towards a setpoint. Either follows the hottest node's temperature
// (source max-node, the default) or the rack inlet's (source inlet).
//
// # Fail-safe
//
// Every sample, before anything is written to the log, the duty is set:
// 100% while any alarm holds, the policy's duty otherwise. The alarms:
//
//   - fan-failed (subject fan<N>): the fan turns slower than FailRPM while
//     driven at DrivenDuty or more in this sample and the previous one;
//     (subject the rack): the fans could not be read for stale-after.
//   - sensor-missing (subject a node, or the rack for the inlet): its
//     sensors could not be read for the policy's stale-after.
//   - sensor-stale (same subjects): its readings (watts, °C, joules) have
//     not changed at all for stale-after. A live monitor has noise and a
//     growing energy count, so identical readings mean a frozen sensor.
//   - critical-temperature (subject a node): over the policy's critical
//     temperature.
//
// Alarms are threshold crossings: alarm.raised once when a condition
// starts, alarm.cleared once when it ends, never an event per sample (the
// state projection holds the raised ones, state.Thermal). A raised alarm is
// cleared only on evidence: the sensor reads again, its readings change,
// the fan turns, the node is ClearHysteresis below critical. So a new
// leader, which knows nothing of the last term's samples, keeps the fans at
// 100% for the alarms the log says are raised until it sees them end.
// Across a leader change, what the reconciler remembers (when each sensor
// last changed) starts afresh: a sensor that went stale just before is
// detected stale-after later. Meanwhile the RMC's own watchdog (a
// controller that gets no duty for a while runs the fans at 100%; the
// simulator models it) covers a rack without a leader.
//
// # Critical temperature
//
// TripSamples consecutive fresh samples over the critical temperature
// shut a node down through the power path: one batch of alarm.raised
// (reason "critical temperature 91.2 °C > 90 °C: shutting n3 down") and
// node.power.desired off, Force set, actor reconciler:fans. The power
// reconciler then powers it off like any desired off (intent before
// action). Force, because the quorum guard protects the control plane from
// operators, and a node at its critical temperature is a hardware (and
// fire) risk that outranks a member: a rack that loses quorum can be
// recovered, a burnt unit cannot. The node stays desired off until an
// operator powers it on again; powering it on while it is still over the
// critical temperature shuts it down again.
//
// # Fencing
//
// The duty write is not fenced by the log: it happens every sample (which
// also feeds the RMC's watchdog) and would flood the log as an action. A
// deposed leader that has not yet noticed may write the duty for a moment;
// the next sample of the real leader writes it again. Alarms and shutdowns
// are appended like any event; they are observations of real hardware,
// valid whoever made them.
//
// # Telemetry
//
// Each sample is handed to Config.Publish: the member publishes it on NATS
// (racklet.<rack>.telemetry) and every member keeps the latest one for GET
// /v1/telemetry and its /metrics (package telemetry). Samples never enter
// the log.
//
// # Metrics
//
// On Config.Registerer: racklet_fan_alarms_raised_total{kind},
// racklet_fan_thermal_shutdowns_total and racklet_fan_errors_total{op}.
package fans
