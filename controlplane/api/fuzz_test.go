package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/racklet/rack/controlplane/eventlog"
)

// FuzzCommandBodies feeds arbitrary bodies to the write routes: the answer
// is never a 5xx, and a rejected command never reaches the log.
func FuzzCommandBodies(f *testing.F) {
	for _, s := range []string{
		`{"name":"n3","slot":3,"member":"m3"}`, `{"state":"cycle","force":true}`, `{"name":`, `[]`, `null`,
		`{"name":"n3","x":1}`, `{"state":"on"} {}`, `{"slot":1e400}`, "\x00", `{"name":"\u00e9"}`,
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
	f.Fuzz(func(t *testing.T, body string, power bool) {
		before, _ := mem.State(context.Background())
		method, path := http.MethodPost, "/v1/nodes"
		if power {
			method, path = http.MethodPut, "/v1/nodes/n3/power"
		}
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		after, _ := mem.State(context.Background())
		if rec.Code >= 400 && after.Sequence != before.Sequence {
			t.Fatalf("rejected (%d) but the log moved from %d to %d", rec.Code, before.Sequence, after.Sequence)
		}
	})
}
