package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

func TestFirmwareRoutes(t *testing.T) {
	e := newEnv(t)
	e.mustAppend(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1})
	e.mustAppend(t, events.NodeRegistered, "n2", &events.NodeRegisteredData{Slot: 2})
	e.mustAppend(t, events.FirmwareObserved, "n2-bmc", &events.FirmwareObservedData{Version: "1.0.0", Slot: "a", SecurityVersion: 1})

	// Set: 202 with the event.
	r := e.do(t, "PUT", "/v1/firmware/n1-bmc", `{"version":"1.2.3"}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	var cr CommandResponse
	if err := json.Unmarshal(r.body, &cr); err != nil {
		t.Fatal(err)
	}
	if cr.Event.Type != events.FirmwareDesired || cr.Event.Subject != "n1-bmc" || cr.Sequence != e.seq(t) || cr.Event.Actor != Actor {
		t.Fatalf("response %+v", cr)
	}

	// List, by slot.
	r = e.do(t, "GET", "/v1/firmware", "")
	var list FirmwareList
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != http.StatusOK {
		t.Fatalf("GET list = %d %s (%v)", r.status, r.body, err)
	}
	if list.Sequence != e.seq(t) || len(list.Firmware) != 2 || list.Firmware[0].Name != "n1-bmc" || list.Firmware[0].Desired != "1.2.3" ||
		list.Firmware[1].Observed == nil || list.Firmware[1].Observed.Version != "1.0.0" {
		t.Fatalf("list %s", r.body)
	}

	// One, and a registered node's BMC not seen yet (stale read too).
	var f state.Firmware
	for _, c := range []struct{ path, want string }{
		{"/v1/firmware/n1-bmc", "1.2.3"},
		{"/v1/firmware/n2-bmc?stale=1", ""},
	} {
		r = e.do(t, "GET", c.path, "")
		f = state.Firmware{}
		if err := json.Unmarshal(r.body, &f); err != nil || r.status != http.StatusOK || f.Desired != c.want || f.Node == "" || f.Component != "bmc" {
			t.Fatalf("GET %s = %d %s", c.path, r.status, r.body)
		}
	}
	e.mustAppend(t, events.NodeRegistered, "n3", &events.NodeRegisteredData{Slot: 3})
	r = e.do(t, "GET", "/v1/firmware/n3-bmc", "")
	f = state.Firmware{}
	if err := json.Unmarshal(r.body, &f); err != nil || r.status != http.StatusOK || f.Name != "n3-bmc" || f.Node != "n3" || f.Observed != nil {
		t.Fatalf("GET unseen = %d %s", r.status, r.body)
	}
}

func TestFirmwareBadInput(t *testing.T) {
	e := newEnv(t)
	e.mustAppend(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1})
	before := e.seq(t)
	tests := []struct {
		method, path, body string
		status             int
		code, mention      string
	}{
		{"PUT", "/v1/firmware/n1-bmc", `{"version":"1.2"}`, 400, CodeInvalid, "version"},
		{"PUT", "/v1/firmware/n1-bmc", `{"version":"v1.2.3"}`, 400, CodeInvalid, "version"},
		{"PUT", "/v1/firmware/n1-bmc", `{"version":"1.2.65536"}`, 400, CodeInvalid, "version"},
		{"PUT", "/v1/firmware/n1-bmc", `{}`, 400, CodeInvalid, "version"},
		{"PUT", "/v1/firmware/n1-bmc", `{"version":1}`, 400, CodeInvalid, "version"},
		{"PUT", "/v1/firmware/n1-bmc", `{"version":"1.2.3","force":true}`, 400, CodeInvalid, "force"},
		{"PUT", "/v1/firmware/n1-bmc", ``, 400, CodeInvalid, "body"},
		{"PUT", "/v1/firmware/n1", `{"version":"1.2.3"}`, 400, CodeInvalid, "<node>-bmc"},
		{"PUT", "/v1/firmware/rmc", `{"version":"1.2.3"}`, 400, CodeInvalid, "RMC"},
		{"PUT", "/v1/firmware/N1-bmc", `{"version":"1.2.3"}`, 400, CodeInvalid, "name"},
		{"PUT", "/v1/firmware/n9-bmc", `{"version":"1.2.3"}`, 404, CodeNotFound, `"n9"`},
		{"GET", "/v1/firmware/n9-bmc", ``, 404, CodeNotFound, `"n9"`},
		{"GET", "/v1/firmware/n1", ``, 400, CodeInvalid, "<node>-bmc"},
		{"GET", "/v1/firmware?stale=maybe", ``, 400, CodeInvalid, "stale"},
		{"DELETE", "/v1/firmware/n1-bmc", ``, 405, CodeMethodNotAllowed, "DELETE"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.body, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			eb := r.errorBody(t)
			if eb.Code != tt.code || !strings.Contains(eb.Message, tt.mention) {
				t.Fatalf("error %+v, want code %s mentioning %q", eb, tt.code, tt.mention)
			}
		})
	}
	if e.seq(t) != before {
		t.Fatalf("bad input reached the log: sequence %d, was %d", e.seq(t), before)
	}
}

// FuzzFirmwareCommand feeds arbitrary names and bodies to PUT
// /v1/firmware/{name}: never a 5xx, a rejection never reaches the log, and
// what is accepted is a valid desired version of a registered node's BMC.
func FuzzFirmwareCommand(f *testing.F) {
	for _, s := range []struct{ name, body string }{
		{"n3-bmc", `{"version":"1.2.3"}`}, {"n3-bmc", `{"version":"01.2.3"}`}, {"n3", `{"version":"1.2.3"}`},
		{"rmc", `{}`}, {"n9-bmc", `{"version":"0.0.0"}`}, {"n3-bmc", `{"version":"1.2.3"} x`}, {"-bmc", `null`},
		{"n3-bmc", `{"version":"65535.65535.65535"}`}, {"n3-bmc", "\x00"},
	} {
		f.Add(s.name, s.body)
	}
	mem := eventlog.NewMem(0)
	defer mem.Close()
	srv, err := New(Config{Rack: "rack1", Member: "m1", Log: mem})
	if err != nil {
		f.Fatal(err)
	}
	ev, err := events.New(events.Source("rack1", "m1"), events.NodeRegistered, "n3", &events.NodeRegisteredData{Slot: 3})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := mem.Append(context.Background(), ev); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, body string) {
		before, _ := mem.State(context.Background())
		req := httptest.NewRequest(http.MethodPut, "/v1/firmware/x", strings.NewReader(body))
		req.URL.Path = "/v1/firmware/" + url.PathEscape(name)
		req.URL.RawPath = ""
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("PUT %q %q: %d %s", name, body, rec.Code, rec.Body)
		}
		after, _ := mem.State(context.Background())
		switch {
		case rec.Code >= 300 && after.Sequence != before.Sequence:
			t.Fatalf("rejected (%d) but the log moved from %d to %d", rec.Code, before.Sequence, after.Sequence)
		case rec.Code == http.StatusAccepted:
			f := after.Firmware["n3-bmc"]
			if name != "n3-bmc" || f == nil || !events.ValidVersion(f.Desired) || f.DesiredSequence != after.Sequence {
				t.Fatalf("accepted %q %q: %+v", name, body, f)
			}
		}
	})
}
