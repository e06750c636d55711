package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFetch: transient failures are retried, a body beyond the limit is
// refused at once, redirects to http are refused, and without a CA
// nothing is trusted.
func TestFetch(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.URL.Path {
		case "/flaky": // fails twice, then works
			if n <= 2 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, "data")
		case "/big":
			fmt.Fprint(w, strings.Repeat("x", 100))
		case "/redirect-http":
			http.Redirect(w, r, "http://127.0.0.1/x", http.StatusFound)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	client := NewHTTPClient(Trust{CAs: newTestServer(t).pool()})
	ctx := context.Background()

	b, err := fetch(ctx, client, fastRetry, time.Minute, srv.URL+"/flaky", 10, 0)
	if err != nil || string(b) != "data" || calls.Load() != 3 {
		t.Fatalf("flaky: %q, %v after %d calls; want data after 3", b, err, calls.Load())
	}
	calls.Store(0)
	if _, err := fetch(ctx, client, fastRetry, time.Minute, srv.URL+"/big", 99, 0); !errors.Is(err, errTooLarge) || calls.Load() != 1 {
		t.Fatalf("too large: %v after %d calls; want errTooLarge at once", err, calls.Load())
	}
	if _, err := fetch(ctx, client, fastRetry, time.Minute, srv.URL+"/redirect-http", 99, 0); !errors.Is(err, ErrInsecureURL) {
		t.Fatalf("redirect to http: %v, want ErrInsecureURL", err)
	}
	// No CA configured: nothing is trusted, not even the system roots.
	if _, err := fetch(ctx, NewHTTPClient(Trust{}), fastRetry, time.Minute, srv.URL+"/big", 999, 0); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("fetch without CAs = %v, want a certificate error", err)
	}
}
