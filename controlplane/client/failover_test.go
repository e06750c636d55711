package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestFailoverToNextEndpoint(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer live.Close()

	c, err := New(deadURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddEndpoints(live.URL, deadURL, ""); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = c.Healthy(ctx)
	if !errors.Is(err, ErrConnection) {
		t.Fatalf("first call to a dead member = %v, want ErrConnection", err)
	}
	if c.URL() != live.URL {
		t.Fatalf("client moved to %s, want %s", c.URL(), live.URL)
	}
	if err := c.Healthy(ctx); err != nil {
		t.Fatalf("second call, on the live member: %v", err)
	}
	// A refusal by a live member is not a connection error.
	var ae *APIError
	if _, err := c.Node(ctx, "n1"); errors.Is(err, ErrConnection) || errors.As(err, &ae) && ae.Status == 0 {
		t.Fatalf("Node on a live server = %v", err)
	}
	if err := c.AddEndpoints("ftp://x"); err == nil {
		t.Fatal("AddEndpoints accepted an ftp URL")
	}
}
