package eventlog_test

import (
	"testing"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/eventlog/eventlogtest"
)

func TestMemConformance(t *testing.T) {
	eventlogtest.Run(t, func(t *testing.T) eventlog.Log {
		m := eventlog.NewMem(0)
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}
