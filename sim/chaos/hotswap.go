package chaos

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/reconcilers/boot"
	"github.com/racklet/rack/sim/devrack"
	"github.com/racklet/rack/sim/imagehost"
)

// Hot swap and boot faults:
//
//   - unit-pull: a unit is pulled out of its slot and put back after the
//     hold. It is put back only once the node's removal is in the log
//     (bounded by removalBound), so the presence reconciler's removal and
//     re-registration are both checked. A unit that was on when pulled (or
//     off only because chaos had cut its power) is
//     powered on at once when put back, by hand (its BMC, out of band), as
//     an operator would: a member's unit inserted into a rack that has no
//     quorum without it would otherwise wait forever for a leader to power
//     it on. While a node is out (from the pull
//     until a member is seen to have applied its registration again), the
//     clients' 404s for it are expected. The re-registration sets the
//     node's desired power to on: it enters the linearizability history as
//     a put by a pseudo-client, from the insertion to the moment it was
//     seen applied.
//   - bad-boot: a boot spec whose image's manifest has a broken signature
//     is set on a node. The image must never boot: no node.boot.started,
//     no boot stage and no power cycle by the boot reconciler for it.
//
// Invariants checked at the end: every pulled unit's node was removed
// from the log while the unit was out, unless no leader was seen in the
// last leaderWindow of the wait (then nobody could record it); every bad
// boot spec never started (and was refused, unless its node was removed
// first).

// removalBound is how long a pulled unit may stay out waiting for its
// node's removal to be recorded.
const removalBound = 15 * time.Second

// leaderWindow: a removal not recorded is a violation only if a leader
// was seen within this long before the unit was put back.
const leaderWindow = 5 * time.Second

// swap is one pull of a unit.
type swap struct {
	slot       int
	node       string
	pulledAt   time.Time
	fromSeq    uint64 // the log position before the pull
	removedSeq uint64 // the node.removed found, 0 until then
	insertedAt time.Time
	settledAt  time.Time // the registration seen applied after the insert
	recorded   bool      // its pseudo-put is in the history
}

// hotswap is the engine's state of unit pulls and bad boots.
type hotswap struct {
	mu       sync.Mutex
	swaps    []*swap
	images   *imagehost.Host
	bad      imagehost.Image
	badBoots []badBoot
	pulls    int
	excused  int // removals not recorded while no leader was seen
	viol     []string
}

type badBoot struct {
	node string
	id   string // the node.boot.desired event's id
	seq  uint64
}

// newHotswap starts an image host with a badly signed image.
func newHotswap() (*hotswap, error) {
	h, err := imagehost.New()
	if err != nil {
		return nil, err
	}
	image := []byte("an OS image whose manifest signature is broken")
	bad, err := h.Publish("os/bad.img", image, nil)
	if err != nil {
		h.Close()
		return nil, err
	}
	m, err := firmware.Sign(image, firmware.ManifestFields{Component: firmware.ComponentOS, Version: firmware.FirmwareVersion{Major: 1}, SecurityVersion: 1}, h.Key())
	if err != nil {
		h.Close()
		return nil, err
	}
	m.Signature[0] ^= 1
	mb, err := m.MarshalJSON()
	if err != nil {
		h.Close()
		return nil, err
	}
	h.Put("os/bad.img"+firmware.ManifestSuffix, mb)
	return &hotswap{images: h, bad: bad}, nil
}

// bootConfig is the devrack boot configuration of a chaos run: members are
// never removed (the grace period outlasts the run), presence is polled
// fast.
func (hs *hotswap) bootConfig() devrack.BootConfig {
	return devrack.BootConfig{
		Keyring: hs.images.Keyring(), RootCAs: hs.images.Roots(),
		PresenceInterval: 100 * time.Millisecond, MemberGrace: time.Hour,
	}
}

// lastSequence is the highest sequence any running member applied.
func (e *engine) lastSequence() uint64 {
	var last uint64
	for _, m := range e.r.Members() {
		last = max(last, m.Log().Store().LastSequence())
	}
	return last
}

// pull pulls the unit of slot out; it returns how to put it back, and
// when that may be done (once the node's removal is in a member's log).
func (e *engine) pull(slot int, until time.Time) *active {
	hs := e.hs
	from := e.lastSequence()
	// On, or off only for the moment because chaos cut its slot's or the
	// rack's power (it would power on when that returns): either way the
	// operator powers it on when putting it back.
	wasOn := false
	if u, err := e.r.Sim.Unit(slot); err == nil {
		wasOn = u.Power == drivers.PowerOn || u.Resume
	}
	if err := e.r.Sim.RemoveUnit(slot); err != nil {
		e.logFault("pull unit %d: %v", slot, err)
		return nil
	}
	e.checker.setRemoved(slot, true)
	sw := &swap{slot: slot, node: devrack.NodeName(slot), pulledAt: time.Now(), fromSeq: from}
	hs.mu.Lock()
	hs.swaps = append(hs.swaps, sw)
	hs.pulls++
	hs.mu.Unlock()
	return &active{
		desc: fmt.Sprintf("unit-pull %d", slot), until: until,
		ready: func() bool { return e.removalSeen(sw) || time.Since(until) > removalBound },
		heal: func() {
			if !e.removalSeen(sw) {
				hs.mu.Lock()
				if e.leaders.seenSince(time.Now().Add(-leaderWindow)) {
					hs.viol = append(hs.viol, fmt.Sprintf("unit pulled out of slot %d at t=%v, out for %v: node %s was never removed",
						slot, sw.pulledAt.Sub(e.start).Round(time.Millisecond), time.Since(sw.pulledAt).Round(time.Millisecond), sw.node))
				} else {
					hs.excused++
				}
				hs.mu.Unlock()
			}
			if err := e.r.Sim.InsertUnit(slot); err != nil {
				e.logFault("insert unit %d: %v", slot, err)
			}
			if wasOn {
				e.powerOnByHand(slot)
			}
			hs.mu.Lock()
			sw.insertedAt = time.Now()
			hs.mu.Unlock()
			e.checker.setRemoved(slot, false)
		},
	}
}

// powerOnByHand powers a unit on through its BMC, out of band.
func (e *engine) powerOnByHand(slot int) {
	b, err := e.r.Sim.Backplane().BMC(slot)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = b.SetPower(ctx, drivers.PowerOn)
		cancel()
	}
	if err != nil {
		e.logFault("power on unit %d by hand: %v", slot, err)
	}
}

// seenSince reports whether a member was seen leading at t or later.
func (s *leaderSampler) seenSince(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.lastAt.Before(t)
}

// removalSeen looks for the node.removed of a pull in a member's log.
func (e *engine) removalSeen(sw *swap) bool {
	e.hs.mu.Lock()
	if sw.removedSeq > 0 {
		e.hs.mu.Unlock()
		return true
	}
	e.hs.mu.Unlock()
	for _, m := range e.r.Members() {
		evs, err := m.Log().Store().Read(sw.fromSeq+1, 0)
		if err != nil {
			continue
		}
		for _, ev := range evs {
			if ev.Type == events.NodeRemoved && ev.Subject == sw.node {
				e.hs.mu.Lock()
				sw.removedSeq = ev.Sequence
				e.hs.mu.Unlock()
				return true
			}
		}
	}
	return false
}

// trackSwaps notes when the node of a unit put back is registered again
// (seen applied by a running member) and records its desired power on in
// the history.
func (e *engine) trackSwaps() {
	hs := e.hs
	hs.mu.Lock()
	var open []*swap
	for _, sw := range hs.swaps {
		// A unit put back without its node removed (no leader) is not
		// looked at for long.
		if !sw.insertedAt.IsZero() && sw.settledAt.IsZero() && (sw.removedSeq > 0 || time.Since(sw.insertedAt) < removalBound) {
			open = append(open, sw)
		}
	}
	hs.mu.Unlock()
	for _, sw := range open {
		// A removal read before the insert may commit after it (then the
		// node is registered again after it too).
		if !e.removalSeen(sw) {
			continue
		}
		for _, m := range e.r.Members() {
			st := m.Log().Store().State()
			if n, ok := st.Nodes[sw.node]; ok && n.RegisteredSequence > sw.removedSeq {
				now := time.Now()
				hs.mu.Lock()
				sw.settledAt = now
				hs.mu.Unlock()
				e.recordSwapPut(sw, int64(now.Sub(e.hist.start)), outOK)
				break
			}
		}
	}
}

// recordSwapPut adds the re-registration's desired power on to the
// history, once.
func (e *engine) recordSwapPut(sw *swap, ret int64, res outcome) {
	e.hs.mu.Lock()
	if sw.recorded {
		e.hs.mu.Unlock()
		return
	}
	sw.recorded = true
	call := int64(sw.insertedAt.Sub(e.hist.start))
	e.hs.mu.Unlock()
	e.hist.add(histOp{client: e.cfg.Clients + 1, in: regInput{Node: sw.node, Put: true, Value: initialDesired, Asked: "insert"}, call: call, ret: ret, result: res})
}

// settleSwaps waits (bounded) for every unit put back to be registered
// again; those that are not get an unknown outcome in the history.
func (e *engine) settleSwaps(ctx context.Context, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		e.trackSwaps()
		if e.openSwaps() == 0 {
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
	e.hs.mu.Lock()
	var left []*swap
	for _, sw := range e.hs.swaps {
		if !sw.insertedAt.IsZero() && sw.removedSeq > 0 && !sw.recorded {
			left = append(left, sw)
		}
	}
	e.hs.mu.Unlock()
	for _, sw := range left {
		e.recordSwapPut(sw, math.MaxInt64/2, outUnknown)
	}
}

func (e *engine) openSwaps() int {
	e.hs.mu.Lock()
	defer e.hs.mu.Unlock()
	n := 0
	for _, sw := range e.hs.swaps {
		if sw.removedSeq > 0 && sw.settledAt.IsZero() {
			n++
		}
	}
	return n
}

// churning reports whether node was out (pulled, or put back but not yet
// seen registered) at some time between call and ret (history times): a
// 404 for it then is expected.
func (e *engine) churning(node string, call, ret int64) bool {
	e.hs.mu.Lock()
	defer e.hs.mu.Unlock()
	for _, sw := range e.hs.swaps {
		if sw.node != node {
			continue
		}
		from := int64(sw.pulledAt.Sub(e.hist.start))
		to := int64(math.MaxInt64)
		if !sw.settledAt.IsZero() {
			to = int64(sw.settledAt.Sub(e.hist.start))
		}
		if call <= to && ret >= from {
			return true
		}
	}
	return false
}

// badBoot sets a boot spec with a badly signed image on node, through a
// running member.
func (e *engine) badBoot(node string) *active {
	c, via := e.clientFor(0)
	if c == nil {
		e.logFault("bad-boot %s: no member running", node)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	ev, err := c.SetBoot(ctx, node, bootRequest(e.hs.bad))
	if err != nil {
		e.logFault("bad-boot %s via %s: %v", node, via, err)
		return nil
	}
	e.hs.mu.Lock()
	e.hs.badBoots = append(e.hs.badBoots, badBoot{node: node, id: ev.ID, seq: ev.Sequence})
	e.hs.mu.Unlock()
	return &active{desc: fmt.Sprintf("bad-boot %s (event %d)", node, ev.Sequence), until: time.Now(), heal: func() {}}
}

// checkHotswap checks the invariants on the longest log among the running
// members: every bad boot spec never started, never reached a stage, and
// was refused unless its node was removed (or given another spec) first.
func (e *engine) checkHotswap() (pulls, excused, badBoots, refused int, viol []string) {
	hs := e.hs
	hs.mu.Lock()
	viol = append(viol, hs.viol...)
	pulls, excused = hs.pulls, hs.excused
	bad := append([]badBoot(nil), hs.badBoots...)
	hs.mu.Unlock()
	var log []events.Event
	for _, m := range e.r.Members() {
		if evs, err := m.Log().Store().Read(0, 0); err == nil && len(evs) > len(log) {
			log = evs
		}
	}
	for _, b := range bad {
		i := b.seq - 1
		if len(log) == 0 || log[0].Sequence != 1 || int(i) >= len(log) || log[i].ID != b.id {
			viol = append(viol, fmt.Sprintf("bad boot of %s (event %d): not at its sequence in the log", b.node, b.seq))
			continue
		}
		wasRefused, superseded := false, false
		for _, ev := range log[i+1:] {
			if ev.Subject != b.node || superseded {
				continue
			}
			p, err := ev.Payload()
			if err != nil {
				continue
			}
			switch d := p.(type) {
			case *events.BootRefusedData:
				wasRefused = wasRefused || d.Target == b.seq
			case *events.BootStartedData:
				if d.Target == b.seq {
					viol = append(viol, fmt.Sprintf("bad image on %s (spec %d) started booting (event %d)", b.node, b.seq, ev.Sequence))
				}
			case *events.BootStageData:
				if d.Target == b.seq {
					viol = append(viol, fmt.Sprintf("bad image on %s (spec %d) reached stage %s (event %d)", b.node, b.seq, d.Stage, ev.Sequence))
				}
			case *events.PowerDesiredData:
				if ev.Actor == boot.Actor {
					viol = append(viol, fmt.Sprintf("the boot reconciler cycled %s (event %d) while its spec was a bad image (%d)", b.node, ev.Sequence, b.seq))
				}
			case *events.BootDesiredData, *events.NodeRemovedData:
				superseded = true
			}
		}
		if wasRefused {
			refused++
		} else if !superseded {
			viol = append(viol, fmt.Sprintf("bad image on %s (spec %d) was never refused", b.node, b.seq))
		}
	}
	return pulls, excused, len(bad), refused, viol
}

func bootRequest(img imagehost.Image) api.BootRequest {
	return api.BootRequest{Source: events.BootNetwork, Image: img.URL, Digest: img.Digest, KeyID: img.KeyID}
}
