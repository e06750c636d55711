package eventlog_test

import (
	"testing"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/eventlog/eventlogtest"
	"github.com/racklet/rack/events"
)

func TestMemConformance(t *testing.T) {
	eventlogtest.Run(t, func(t *testing.T) eventlog.Log {
		m := eventlog.NewMem(0)
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}

// The suite on a log that is quiescent but not empty: like a replicated
// log, it holds its own members' events (and a node) before the suite
// starts.
func TestMemConformanceNotEmpty(t *testing.T) {
	eventlogtest.Run(t, func(t *testing.T) eventlog.Log {
		m := eventlog.NewMem(0)
		t.Cleanup(func() { _ = m.Close() })
		src := events.Source("rack1", "m1")
		var evs []events.Event
		for _, name := range []string{"m1", "m2", "m3"} {
			ev, err := events.New(src, events.MemberJoined, name, &events.MemberJoinedData{Address: name, Voter: true})
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		for _, p := range []struct {
			typ events.Type
			p   events.Payload
		}{
			{events.NodeRegistered, &events.NodeRegisteredData{Slot: 7, Member: "m1"}},
			{events.NodePowerObserved, &events.PowerObservedData{State: events.PowerOn}},
		} {
			ev, err := events.New(src, p.typ, "x7", p.p)
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		if _, err := m.Append(t.Context(), evs...); err != nil {
			t.Fatalf("filling the log: %v", err)
		}
		return m
	})
}
