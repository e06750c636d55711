package member

import (
	"testing"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/eventlog/eventlogtest"
)

// The event-log conformance suite on the real stack: 3 members, each with
// its embedded NATS server, Raft over NATS and bolt files, used through a
// follower.
func TestConformanceRaftOverNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	eventlogtest.Run(t, func(t *testing.T) eventlog.Log {
		// Only the suite writes during a subtest: no periodic membership
		// check, which would record its made-up members as left.
		return newTestRack(t, 3, func(c *Config) { c.MemberSyncInterval = -1 }).follower().Log()
	})
}
