// Package boot is the boot reconciler: it boots nodes from signed OS
// images, as the boot spec in the rack's log says (node.boot.desired:
// source network or local, image URL, sha256 digest, signing key id), and
// records how each boot goes. It runs in the reconciler runtime (package
// reconcilers) on the leader, beside the power reconciler.
//
// # Loop
//
// Reconcile(n) reads node n's boot (state.Node.Boot) and, by its phase:
//
//  1. pending — verify, then start. The image's manifest (image URL +
//     firmware.ManifestSuffix) and the image are fetched over HTTPS only,
//     trusting Config.RootCAs. The manifest must name the spec's key id and
//     digest and pass firmware.Verify's checks (well formed, signed by a key
//     Config.Keyring trusts, component os); the image, streamed through
//     SHA-256, must have the manifest's size and digest. If anything does
//     not verify (or the server answers 4xx, or its certificate is not
//     trusted) the reconciler appends node.boot.refused with the reason and
//     stops: the node is never touched. Network errors and 5xx are retried
//     with backoff. Then, intent before action, action.started
//     (boot.source.set) is committed with a fenced append, the BMC's next
//     boot source is set (drivers.BootSourceSetter), and one batch records
//     action.succeeded, a node.power.desired cycle (actor reconciler:boot)
//     and node.boot.started. The power reconciler does the cycle, with its
//     quorum guard and power budget; a refusal is its node.power.refused.
//     node.boot.started takes the cycle's sequence; a newer spec meanwhile
//     makes the state reject the whole batch (state.ErrStaleBoot), so an
//     outdated spec never cycles the node.
//  2. booting — follow. Until the cycle is done (the node's
//     CycleDoneSequence reaches the boot's CycleSequence) nothing is read;
//     then the BMC's stage (drivers.BootStager) is read every
//     Config.PollInterval and node.boot.stage appended when it changes.
//     Nodes may also report stages themselves (POST
//     /v1/nodes/{name}/boot/stages); both land in the same projection.
//     Stage ready ends the boot. A stage that lasts longer than its timeout
//     (Config.Timeouts; measured from the stage event's time) ends it with
//     node.boot.failed naming the stage and why; stage off stands for a
//     boot that never started (the cycle not done within Timeouts.Cycle,
//     with the guard's refusal in the reason, or the node asked to power
//     off meanwhile).
//  3. ready, failed, refused — nothing; a new spec starts again.
//
// A node removed (its unit pulled out) has no boot any more: nothing waits
// for it. The node.power.desired cycle is a command, like an operator's,
// and not among the reconciler's Outputs (the power reconciler reads it;
// the presence reconciler also issues it for new nodes).
//
// # Metrics
//
// On Config.Registerer: racklet_boot_results_total{result=ready|failed|refused}
// and racklet_boot_verify_duration_seconds.
package boot
