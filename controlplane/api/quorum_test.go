package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/racklet/rack/events"
)

// The API refuses, with 409 quorum_guard, a power-off or cycle of a node
// hosting a member when that would leave fewer than a quorum up; force
// overrides it; nodes without a member and power-on always pass. A refusal
// leaves the log unchanged.
func TestPowerQuorumGuard(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		m := fmt.Sprintf("m%d", i)
		e.mustAppend(t, events.MemberJoined, m, &events.MemberJoinedData{Address: m, Voter: true})
		n := fmt.Sprintf("n%d", i)
		e.mustAppend(t, events.NodeRegistered, n, &events.NodeRegisteredData{Slot: i, Member: m})
		e.mustAppend(t, events.NodePowerObserved, n, &events.PowerObservedData{State: events.PowerOn})
	}
	e.mustAppend(t, events.NodeRegistered, "n4", &events.NodeRegisteredData{Slot: 4})
	// m2's node is down: one more member down would break the quorum.
	e.mustAppend(t, events.NodePowerObserved, "n2", &events.PowerObservedData{State: events.PowerOff})

	tests := []struct {
		node, body string
		status     int
		code       string
	}{
		{"n1", `{"state":"off"}`, http.StatusConflict, CodeQuorumGuard},
		{"n3", `{"state":"cycle"}`, http.StatusConflict, CodeQuorumGuard},
		{"n1", `{"state":"on"}`, http.StatusAccepted, ""},
		{"n4", `{"state":"off"}`, http.StatusAccepted, ""},
		{"n2", `{"state":"off"}`, http.StatusAccepted, ""}, // already off: no change to the quorum
		{"n1", `{"state":"off","force":true}`, http.StatusAccepted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.node+" "+tt.body, func(t *testing.T) {
			before := e.seq(t)
			r := e.do(t, http.MethodPut, "/v1/nodes/"+tt.node+"/power", tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tt.status)
			}
			if tt.code == "" {
				return
			}
			eb := r.errorBody(t)
			if eb.Code != tt.code || !strings.Contains(eb.Message, "quorum") || !strings.Contains(eb.Message, "force") {
				t.Fatalf("error %+v, want code %s and a message about quorum and force", eb, tt.code)
			}
			if after := e.seq(t); after != before {
				t.Fatalf("a refused command changed the log: %d → %d", before, after)
			}
		})
	}
}
