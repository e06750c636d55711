package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTPReporter(t *testing.T) {
	s := newTestServer(t)
	client := NewHTTPClient(Trust{CAs: s.pool()})
	ctx := context.Background()
	r := &HTTPReporter{Client: client, APIs: []string{s.URL}, Node: "n3", Retry: fastRetry}
	reports := []Report{
		{Stage: StageBootstrap},
		{Stage: StageImageVerified, ImageDigest: goodDigest},
		{Stage: StageBootstrap, Failed: true, Reason: "image signature does not verify: bad"},
	}
	for _, rep := range reports {
		if err := r.Report(ctx, rep); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.stages("n3"); len(got) != 3 || got[0] != reports[0] || got[1] != reports[1] || got[2] != reports[2] {
		t.Fatalf("the control plane got %+v, want %+v", got, reports)
	}

	// Failover: the first member is down, the second takes it.
	r.APIs = []string{closedURL(t, ""), s.URL + "/"}
	if err := r.Report(ctx, Report{Stage: StageBootstrap}); err != nil {
		t.Fatalf("failover: %v", err)
	}
	if n := len(s.stages("n3")); n != 4 {
		t.Fatalf("after failover the control plane has %d reports, want 4", n)
	}

	// Invalid reports are not sent.
	for _, bad := range []Report{
		{Stage: "os"},
		{Stage: StageBootstrap, Failed: true},
		{Stage: StageImageVerified, ImageDigest: "sha256:00"},
		{Stage: StageBootstrap, Failed: true, Reason: strings.Repeat("x", MaxReason+1)},
		{Stage: StageBootstrap, Failed: true, Reason: "a\rb"},
		{Stage: StageBootstrap, Reason: "not failed"},
	} {
		if err := r.Report(ctx, bad); !errors.Is(err, ErrReport) {
			t.Errorf("Report(%+v) = %v, want ErrReport", bad, err)
		}
	}
	if n := len(s.stages("n3")); n != 4 {
		t.Fatalf("invalid reports reached the control plane (%d reports)", n)
	}
}

// TestHTTPReporterBounded: retries stop after the attempts (5xx), at once
// on a refusal (4xx), and when the context ends.
func TestHTTPReporterBounded(t *testing.T) {
	var calls atomic.Int32
	status := atomic.Int32{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(int(status.Load()))
		fmt.Fprint(w, `{"code":"test","message":"no"}`)
	}))
	defer srv.Close()
	pool := newTestServer(t).pool() // httptest servers share a certificate
	r := &HTTPReporter{Client: NewHTTPClient(Trust{CAs: pool}), APIs: []string{srv.URL, srv.URL}, Node: "n3", Retry: fastRetry}
	ctx := context.Background()

	status.Store(http.StatusServiceUnavailable)
	err := r.Report(ctx, Report{Stage: StageBootstrap})
	if !errors.Is(err, ErrReport) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("Report against 503s = %v, want ErrReport after 3 attempts", err)
	}
	if n := calls.Load(); n != 6 {
		t.Errorf("%d requests, want 3 rounds over 2 APIs = 6", n)
	}

	calls.Store(0)
	status.Store(http.StatusBadRequest)
	err = r.Report(ctx, Report{Stage: StageBootstrap})
	if !errors.Is(err, ErrReport) || !strings.Contains(err.Error(), `"message":"no"`) {
		t.Fatalf("Report against 400 = %v, want ErrReport with the server's message", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d requests for a refusal, want 1", n)
	}

	// A context that ends stops the retries.
	status.Store(http.StatusServiceUnavailable)
	slow := &HTTPReporter{Client: r.Client, APIs: r.APIs, Node: "n3", Retry: Retry{Attempts: 1000, Backoff: time.Hour}}
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := slow.Report(ctx, Report{Stage: StageBootstrap}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Report with an ending context = %v, want DeadlineExceeded", err)
	}
}

func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(Report{Stage: StageBootstrap})
	if err != nil || string(b) != `{"stage":"bootstrap","failed":false}` {
		t.Errorf("started report = %s, %v", b, err)
	}
	b, _ = json.Marshal(failure(StageBootstrap, errors.New("a\nb\r\x00c\td"), ""))
	if string(b) != `{"stage":"bootstrap","failed":true,"reason":"a; b  c\td"}` {
		t.Errorf("failed report = %s", b)
	}
	long := failure(StageBootstrap, errors.New(strings.Repeat("é", MaxReason)), "")
	if err := long.Validate(); err != nil || len(long.Reason) > MaxReason {
		t.Errorf("a long reason was not cut to a valid one: %d bytes, %v", len(long.Reason), err)
	}
}

func TestRecorder(t *testing.T) {
	rec := &Recorder{Err: errors.New("down")}
	if err := rec.Report(context.Background(), Report{Stage: StageBootstrap}); err == nil {
		t.Error("Recorder.Err not returned")
	}
	if err := rec.Report(context.Background(), Report{Stage: "nope"}); !errors.Is(err, ErrReport) {
		t.Errorf("invalid report recorded: %v", err)
	}
	if got := rec.Reports(); len(got) != 1 || got[0].Stage != StageBootstrap {
		t.Errorf("reports %+v", got)
	}
}
