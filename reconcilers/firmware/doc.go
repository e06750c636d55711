// Package firmware is the firmware update reconciler: it drives the
// firmware each node's BMC runs towards the version desired in the rack's
// log (io.racklet.firmware.desired about "<node>-bmc"), installing signed
// images with A/B slots and anti-rollback, and records every step as an
// event. It runs in the reconciler runtime (package reconcilers) on the
// leader.
//
// # Loop
//
// Reconcile(name) — name is a firmware component ("n3-bmc") or a node
// ("n3", woken by its registration, standing for its BMC) — reads the
// state projection and:
//
//  1. Observes the BMC: the version it runs, its A/B slots and its
//     anti-rollback counter, each read bounded by Config.CallTimeout, and
//     appends io.racklet.firmware.observed when any of them changed.
//  2. Diffs. Nothing desired, the desired version refused for good
//     (below), or the device runs it confirmed: done, look again after
//     ObserveInterval. The device on trial of the desired version (an
//     update whose updater died, or lost its leadership, after the
//     reboot): resume it — health check, then confirm or roll back
//     (firmware.ResumeWith). Any other trial or switched image: roll it back
//     (step rollback), then start afresh.
//  3. Checks, before anything reaches the device: the unit is on, desired
//     on and ready (a BMC update boots it; the reconciler never powers on a
//     node the operator wants off, and does not reboot one still booting:
//     it waits); the repository (Config.Images) has the image; its
//     manifest verifies against Config.Trusted for the BMC; its security
//     version is not below the device's counter. A failure is recorded
//     once as io.racklet.firmware.refused (codes no-image, manifest,
//     signature, anti-rollback) and the request ends with a
//     reconcilers.Terminal error: the desired version is not tried again
//     until someone sets a desired version again. Then the quorum guard
//     (state.QuorumGuard), since the update reboots the unit: a node whose
//     control-plane member the cluster cannot lose now gets a refusal of
//     code quorum (recorded once) and is tried again every
//     ObserveInterval.
//  4. Updates with firmware.UpdateWith: verify manifest → check
//     anti-rollback → begin (erase the inactive slot) → write → device
//     verify → switch → reboot → health check (the unit reaches ready on
//     the new image within HealthTimeout) → confirm (the device raises
//     its counter), or rollback (and reboot into the old image). Before
//     each step io.racklet.firmware.step {status: started} is committed
//     with a fenced append (intent before action: a deposed leader cannot
//     commit it, so it never touches the device); after it, succeeded or
//     failed with the reason. All steps of one update carry one action id.
//  5. Records the outcome: a failed health check is a refusal of code
//     health-check (the image is bad; it is not tried again); a device's
//     refusal (anti-rollback, image too large) likewise; anything else
//     (the BMC stopped answering because power was pulled, a timeout) is
//     returned, so the runtime retries with backoff: the next Reconcile
//     observes the device again and, since nothing before the switch
//     touches the running slot, finds it on its old image and starts over.
//
// # One update at a time
//
// The runtime never reconciles one name twice at once, and the
// reconciler keeps a name busy across its two spellings (node and
// component). Registered with the runtime's default of one worker, it
// updates one BMC of the rack at a time: a rolling update, which also
// bounds how many units reboot at once.
//
// # BMC updates reboot the node
//
// The A/B firmware boots a switched image when the unit's main power
// comes on (sim.FirmwareBus models it so, firmware.UpdateWith's default
// reboot is a power cycle, and its health check is the unit reaching
// ready), so updating a node's BMC interrupts the node: a control-plane
// member on it goes down until its unit is ready again. Hence the quorum
// guard before an update, and state.State.FirmwareRebooting, which makes
// the guard count that member down from the reboot until the health check
// ends — for the power reconciler's guard too. When the leader updates
// the BMC of its own node, the reboot kills it; the next leader observes
// the device on trial and resumes (step 2), or finds it rolled back by
// itself and starts over.
//
// # Devices
//
// Config.Backplane's BMCs must implement Device (the image registers and
// the firmware version) and firmware.Unit: drivers/smbus's BMC does, over
// a real bus or the simulator's sim.FirmwareBus. A BMC that does not gets
// a refusal of code unsupported.
//
// # Metrics
//
// racklet_firmware_updates_total{result=succeeded|failed|refused} and
// racklet_firmware_steps_total{step,result=succeeded|failed}.
package firmware
