package devrack

import (
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/reconcilers/boot"
)

// BootConfig configures the boot and presence (hot swap) reconcilers that
// run on every member beside the power reconciler.
type BootConfig struct {
	// Keyring holds the keys trusted to sign OS images (none: every image
	// is refused). RootCAs are the CAs trusted for image servers (nil:
	// the system's).
	Keyring firmware.Keyring
	RootCAs *x509.CertPool
	// Timeouts of the boot stages (zero fields: boot.DefaultTimeouts).
	Timeouts boot.Timeouts
	// PollInterval: how often a booting node's stage is read (default
	// 100ms).
	PollInterval time.Duration
	// PresenceInterval: how often every slot's presence is read (default
	// 1s; negative: no presence reconciler). Each read is a bus
	// transaction.
	PresenceInterval time.Duration
	// MemberGrace: how long after its unit was pulled out a member is
	// removed from the Raft configuration (default 5m).
	MemberGrace time.Duration
	// DefaultPower is the desired power of an inserted unit (default on).
	DefaultPower events.PowerState
}

// memberOf names the member a unit in slot hosts.
func (r *Rack) memberOf(slot int) string {
	if slot >= 1 && slot <= len(r.hosts) {
		return r.hosts[slot-1].name
	}
	return ""
}

// prepareRejoin runs before the follower of h starts its member again
// (without holding any host's lock: it takes them one at a time). If the
// member ran before and the leader's Raft configuration no longer has it
// (the presence reconciler removed it after its unit was pulled out), its
// data dir is stale: it is wiped, and the member starts afresh and joins
// (the leader adds it as a voter) — an inserted unit becoming a member
// again. Without a running leader nothing is changed.
func (r *Rack) prepareRejoin(h *host) error {
	h.mu.Lock()
	rejoin := h.everUp && h.m == nil
	h.mu.Unlock()
	if !rejoin {
		return nil
	}
	var cfg raft.Configuration
	found := false
	for _, o := range r.hosts {
		if o == h {
			continue
		}
		o.mu.Lock()
		m := o.m
		o.mu.Unlock()
		if m == nil || !m.Log().IsLeader() {
			continue
		}
		f := m.Log().Raft().GetConfiguration()
		if f.Error() != nil {
			continue
		}
		cfg, found = f.Configuration(), true
		break
	}
	if !found {
		return nil
	}
	for _, s := range cfg.Servers {
		if string(s.ID) == h.name {
			return nil
		}
	}
	r.log.Info("member was removed from the raft configuration; starting it afresh to join", "member", h.name)
	if err := os.RemoveAll(h.cfg.DataDir); err != nil {
		return fmt.Errorf("devrack: wiping the data of %s: %w", h.name, err)
	}
	return nil
}
