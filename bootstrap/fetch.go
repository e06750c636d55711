package bootstrap

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ErrFetch: a download that failed (after its retries), was refused by the
// server or was larger than allowed.
var ErrFetch = errors.New("bootstrap: download failed")

// errTooLarge: a body beyond the caller's limit (it also matches ErrFetch).
var errTooLarge = errors.New("larger than allowed")

// NewHTTPClient returns the client the boot environment talks HTTPS with:
// TLS 1.2 or later, server certificates checked against t.CAs at
// t.now() (never the system roots: none if t.CAs is nil), no proxy, redirects only to https,
// bounded dial, handshake and response-header times. Bodies are bounded
// by the callers' contexts.
func NewHTTPClient(t Trust) *http.Client { return newHTTPClient(t, nil) }

// NewReportClient is NewHTTPClient presenting the node's client
// certificate (cr.Cert) to a server that asks for one: the client stage
// reports go out with. Without a certificate it is NewHTTPClient. The
// token, if any, is HTTPReporter's to send.
func NewReportClient(t Trust, cr Credentials) *http.Client { return newHTTPClient(t, cr.Cert) }

func newHTTPClient(t Trust, cert *tls.Certificate) *http.Client {
	roots := t.CAs
	if roots == nil {
		roots = x509.NewCertPool() // trust nothing rather than the system roots
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:       nil,
		DialContext: dialer.DialContext,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    roots,
			Time:       t.now,
		},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       30 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("%w: more than 5 redirects", ErrFetch)
			}
			return CheckURL(req.URL.String())
		},
	}
}

// Retry is how often and how patiently an operation is retried.
type Retry struct {
	// Attempts is how many times to try (default 3).
	Attempts int
	// Backoff is the pause after the first failure, doubled after each
	// further one (default 1 s), at most MaxBackoff (default 10 s).
	Backoff, MaxBackoff time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 3
	}
	if r.Backoff <= 0 {
		r.Backoff = time.Second
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 10 * time.Second
	}
	return r
}

// do calls f up to r.Attempts times, pausing between attempts, until it
// succeeds, returns a permanent error or ctx ends. The error says how many
// attempts were made.
func (r Retry) do(ctx context.Context, f func(ctx context.Context) error) error {
	r = r.withDefaults()
	pause := r.Backoff
	var err error
	for i := 1; ; i++ {
		err = f(ctx)
		var perm *permanentError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &perm):
			return perm.err
		case i == r.Attempts:
			return fmt.Errorf("%w (after %d attempts)", err, i)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (after %d attempts, then %w)", err, i, context.Cause(ctx))
		case <-t.C:
		}
		pause = min(2*pause, r.MaxBackoff)
	}
}

// permanentError is an error not worth retrying.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// transientStatus reports whether an HTTP status is worth retrying.
func transientStatus(code int) bool {
	return code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
}

// fetch downloads url (https only) into memory, retrying transient
// failures (connection errors, 5xx) as r says. A body longer than limit
// bytes is refused; want, if positive, is the expected size (preallocated).
// Each attempt is bounded by timeout.
func fetch(ctx context.Context, c *http.Client, r Retry, timeout time.Duration, url string, limit int64, want int64) ([]byte, error) {
	if err := CheckURL(url); err != nil {
		return nil, err
	}
	var body []byte
	err := r.do(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		b, err := fetchOnce(ctx, c, url, limit, want)
		body = b
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	return body, nil
}

func fetchOnce(ctx context.Context, c *http.Client, url string, limit, want int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, &permanentError{fmt.Errorf("%w: %v", ErrFetch, err)}
	}
	resp, err := c.Do(req)
	if err != nil {
		if errors.Is(err, ErrInsecureURL) {
			return nil, &permanentError{err}
		}
		return nil, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		err := fmt.Errorf("%w: %s", ErrFetch, resp.Status)
		if transientStatus(resp.StatusCode) {
			return nil, err
		}
		return nil, &permanentError{err}
	}
	if resp.ContentLength > limit {
		return nil, &permanentError{fmt.Errorf("%w: %w: %s bytes, at most %d", ErrFetch, errTooLarge, strconv.FormatInt(resp.ContentLength, 10), limit)}
	}
	var buf bytes.Buffer
	if want > 0 && want <= limit {
		buf.Grow(int(want))
	}
	n, err := io.Copy(&buf, io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	if n > limit {
		return nil, &permanentError{fmt.Errorf("%w: %w: more than %d bytes", ErrFetch, errTooLarge, limit)}
	}
	return buf.Bytes(), nil
}
