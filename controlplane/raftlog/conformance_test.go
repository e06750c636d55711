package raftlog

import (
	"testing"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/eventlog/eventlogtest"
)

// The event-log conformance suite on 3 members over raft's in-memory
// transport, appending through a follower (forwarded to the leader).
func TestConformance(t *testing.T) {
	eventlogtest.Run(t, func(t *testing.T) eventlog.Log {
		// Only the suite writes during a subtest: no periodic membership
		// check, which would record its made-up members as left.
		return newTestCluster(t, 3, func(c *Config) { c.MemberSyncInterval = -1 }).follower()
	})
}
