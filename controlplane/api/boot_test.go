package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/events"
)

const (
	bootURL    = "https://images.rack/os/1.4.2.img"
	bootDigest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	bootKey    = "0123456789abcdef"
)

func TestSetBoot(t *testing.T) {
	e := newEnv(t)
	e.mustAppend(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1})
	good := `{"image":"` + bootURL + `","digest":"` + bootDigest + `","keyId":"` + bootKey + `"}`
	for _, tt := range []struct {
		name, path, body string
		status           int
		code, mention    string
	}{
		{"network", "/v1/nodes/n1/boot", good, 202, "", ""},
		{"local bare", "/v1/nodes/n1/boot", `{"source":"local"}`, 202, "", ""},
		{"unknown node", "/v1/nodes/n9/boot", good, 404, CodeNotFound, `"n9"`},
		{"bad name", "/v1/nodes/N1/boot", good, 400, CodeInvalid, "name"},
		{"no image", "/v1/nodes/n1/boot", `{"source":"network"}`, 400, CodeInvalid, "invalid image: is required"},
		{"http", "/v1/nodes/n1/boot", strings.Replace(good, "https:", "http:", 1), 400, CodeInvalid, "must be an https URL"},
		{"digest", "/v1/nodes/n1/boot", strings.Replace(good, "sha256:", "sha1:", 1), 400, CodeInvalid, "invalid digest"},
		{"key", "/v1/nodes/n1/boot", strings.Replace(good, bootKey, "XYZ", 1), 400, CodeInvalid, "invalid keyId"},
		{"source", "/v1/nodes/n1/boot", `{"source":"usb"}`, 400, CodeInvalid, "invalid source"},
		{"unknown field", "/v1/nodes/n1/boot", `{"image":"x","kernel":"y"}`, 400, CodeInvalid, "kernel"},
		{"local half", "/v1/nodes/n1/boot", `{"source":"local","image":"` + bootURL + `"}`, 400, CodeInvalid, "invalid digest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := e.seq(t)
			r := e.do(t, "PUT", tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.status != 202 {
				if eb := r.errorBody(t); eb.Code != tt.code || !strings.Contains(eb.Message, tt.mention) {
					t.Errorf("error %+v, want %s mentioning %q", eb, tt.code, tt.mention)
				}
				if e.seq(t) != before {
					t.Error("a rejected command reached the log")
				}
				return
			}
			var cr CommandResponse
			mustJSON(t, r.body, &cr)
			if cr.Event.Type != events.NodeBootDesired || cr.Sequence != before+1 {
				t.Errorf("response %+v", cr)
			}
		})
	}
	r := e.do(t, "GET", "/v1/nodes/n1", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"boot":{"source":"local"`) || !strings.Contains(string(r.body), `"phase":"pending"`) {
		t.Errorf("GET node: %d %s", r.status, r.body)
	}
}

func TestReportBootStage(t *testing.T) {
	e := newEnv(t)
	e.mustAppend(t, events.NodeRegistered, "n1", &events.NodeRegisteredData{Slot: 1})
	spec := e.mustAppend(t, events.NodeBootDesired, "n1", &events.BootDesiredData{Source: events.BootNetwork, Image: bootURL, Digest: bootDigest, KeyID: bootKey})
	other := "sha256:" + strings.Repeat("0", 64)
	for _, tt := range []struct {
		name, path, body string
		status           int
		recorded         bool
		typ              events.Type
		code, mention    string
	}{
		{"firmware", "/v1/nodes/n1/boot/stages", `{"stage":"firmware"}`, 202, true, events.NodeBootStage, "", ""},
		{"firmware again", "/v1/nodes/n1/boot/stages", `{"stage":"firmware"}`, 202, false, "", "", ""},
		{"verified", "/v1/nodes/n1/boot/stages", `{"stage":"image-verified","imageDigest":"` + bootDigest + `"}`, 202, true, events.NodeBootStage, "", ""},
		{"failed", "/v1/nodes/n1/boot/stages", `{"stage":"os","failed":true,"reason":"kernel panic"}`, 202, true, events.NodeBootFailed, "", ""},
		{"other image", "/v1/nodes/n1/boot/stages", `{"stage":"os","imageDigest":"` + other + `"}`, 409, false, "", CodeConflict, "its boot spec"},
		{"failed no reason", "/v1/nodes/n1/boot/stages", `{"stage":"os","failed":true}`, 400, false, "", CodeInvalid, "invalid reason: is required when failed"},
		{"reason not failed", "/v1/nodes/n1/boot/stages", `{"stage":"os","reason":"x"}`, 400, false, "", CodeInvalid, "only for failed"},
		{"no stage", "/v1/nodes/n1/boot/stages", `{}`, 400, false, "", CodeInvalid, "invalid stage: is required"},
		{"off", "/v1/nodes/n1/boot/stages", `{"stage":"off"}`, 400, false, "", CodeInvalid, "invalid stage"},
		{"bad digest", "/v1/nodes/n1/boot/stages", `{"stage":"os","imageDigest":"sha256:x"}`, 400, false, "", CodeInvalid, "invalid imageDigest"},
		{"control chars", "/v1/nodes/n1/boot/stages", `{"stage":"os","failed":true,"reason":"a\u0000b"}`, 400, false, "", CodeInvalid, "invalid reason"},
		{"unknown node", "/v1/nodes/n9/boot/stages", `{"stage":"os"}`, 404, false, "", CodeNotFound, `"n9"`},
		{"get", "/v1/nodes/n1/boot/stages", "", 405, false, "", CodeMethodNotAllowed, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := e.seq(t)
			method := "POST"
			if tt.name == "get" {
				method = "GET"
			}
			r := e.do(t, method, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.status != 202 {
				if eb := r.errorBody(t); eb.Code != tt.code || !strings.Contains(eb.Message, tt.mention) {
					t.Errorf("error %+v, want %s mentioning %q", eb, tt.code, tt.mention)
				}
				if e.seq(t) != before {
					t.Error("a rejected report reached the log")
				}
				return
			}
			var resp BootStageResponse
			mustJSON(t, r.body, &resp)
			if resp.Recorded != tt.recorded {
				t.Fatalf("response %+v, want recorded %v", resp, tt.recorded)
			}
			if !tt.recorded {
				if e.seq(t) != before || resp.Sequence != before || resp.Event != nil {
					t.Errorf("an unchanged stage was recorded: %+v", resp)
				}
				return
			}
			ev := resp.Event
			if ev == nil || ev.Type != tt.typ || ev.Sequence != before+1 || resp.Sequence != ev.Sequence {
				t.Fatalf("response %+v", resp)
			}
			p, err := ev.Payload()
			if err != nil {
				t.Fatal(err)
			}
			switch d := p.(type) {
			case *events.BootStageData:
				if d.Target != spec.Sequence || d.Via != events.ViaNode {
					t.Errorf("stage %+v", d)
				}
			case *events.BootFailedData:
				if d.Target != spec.Sequence || d.Reason != "kernel panic" || d.Stage != events.BootStageOS {
					t.Errorf("failure %+v", d)
				}
			}
		})
	}
	st, _ := e.log.State(context.Background())
	if b := st.Nodes["n1"].Boot; b.Phase != "failed" || b.ImageDigest != bootDigest || b.FailedStage != events.BootStageOS {
		t.Errorf("boot %+v", b)
	}
}

// FuzzBootBodies: arbitrary bodies on the boot routes never get a 5xx, and
// a rejected one never reaches the log.
func FuzzBootBodies(f *testing.F) {
	for _, s := range []string{
		`{"image":"` + bootURL + `","digest":"` + bootDigest + `","keyId":"` + bootKey + `"}`, `{"source":"local"}`,
		`{"stage":"firmware"}`, `{"stage":"os","failed":true,"reason":"x"}`, `{"stage":"os","imageDigest":"` + bootDigest + `"}`,
		`{"image":"https://a/b?c"}`, `{"stage":1}`, `null`, `{`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	mem := eventlog.NewMem(0)
	defer mem.Close()
	srv, err := New(Config{Rack: "rack1", Member: "m1", Log: mem})
	if err != nil {
		f.Fatal(err)
	}
	reg, _ := events.New(events.Source("rack1", "m1"), events.NodeRegistered, "n3", &events.NodeRegisteredData{Slot: 3})
	if _, err := mem.Append(context.Background(), reg); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string, stage bool) {
		before, _ := mem.State(context.Background())
		method, path := http.MethodPut, "/v1/nodes/n3/boot"
		if stage {
			method, path = http.MethodPost, "/v1/nodes/n3/boot/stages"
		}
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		after, _ := mem.State(context.Background())
		if rec.Code/100 != 2 && after.Sequence != before.Sequence {
			t.Fatalf("%s %s %q: %d, but the log grew", method, path, body, rec.Code)
		}
	})
}
