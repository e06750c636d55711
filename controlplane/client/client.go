// Package client is a typed Go client for the control plane's HTTP API
// (package api), used by rackctl and by integration tests.
//
//	c, err := client.New("http://127.0.0.1:7480")
//	nodes, err := c.Nodes(ctx)
//	ev, err := c.SetPower(ctx, "n3", events.PowerOff, false)
//	var ae *client.APIError
//	if errors.As(err, &ae) && ae.Code == api.CodeNotFound { … }
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// APIError is an error answer of the server.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

// Client talks to a control-plane member. Given several endpoints (any
// member serves the whole API), it moves to the next one when the one in
// use cannot be reached; a call that failed so is not repeated by the
// client (a write's outcome would be unknown), but the next call, and an
// event stream's reconnection, go to the next member.
type Client struct {
	mu        sync.Mutex
	bases     []*url.URL // bases[cur] is in use
	cur       int
	hc        *http.Client
	userAgent string
	token     string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses hc instead of a client of its own. It should have no
// Timeout (that would cut event streams): bound calls with their context.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithTLS talks HTTPS with cfg: the rack's CA as RootCAs and, for mutual
// TLS, the client's certificate (rackctl pki issue client). It replaces
// the transport's TLS settings; use it after WithHTTPClient, if both.
func WithTLS(cfg *tls.Config) Option {
	return func(c *Client) {
		tr, ok := c.hc.Transport.(*http.Transport)
		if !ok || tr == nil {
			tr = http.DefaultTransport.(*http.Transport).Clone()
		} else {
			tr = tr.Clone()
		}
		tr.TLSClientConfig = cfg
		hc := *c.hc
		hc.Transport = tr
		c.hc = &hc
	}
}

// WithBearerToken sends "Authorization: Bearer token" (rackctl pki token)
// on every request.
func WithBearerToken(token string) Option { return func(c *Client) { c.token = token } }

// setHeaders sets the headers every request carries.
func (c *Client) setHeaders(req *http.Request) {
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// ReadOption modifies a read.
type ReadOption func(url.Values)

// Stale makes a read local to the member asked: faster, and possible
// without a leader, but it may miss the latest commits.
func Stale() ReadOption { return func(v url.Values) { v.Set("stale", "1") } }

// New returns a client of the API at baseURL (e.g. http://127.0.0.1:7480).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := parseBase(baseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{bases: []*url.URL{u}, hc: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, userAgent: "racklet-client"}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func parseBase(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil {
		return nil, fmt.Errorf("client: parsing server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q: want http://host:port or https://host:port", s)
	}
	return u, nil
}

// AddEndpoints adds other members' API URLs to move to when the one in use
// cannot be reached. Duplicates and empty strings are skipped.
func (c *Client) AddEndpoints(urls ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range urls {
		if s == "" {
			continue
		}
		u, err := parseBase(s)
		if err != nil {
			return err
		}
		dup := false
		for _, b := range c.bases {
			dup = dup || b.String() == u.String()
		}
		if !dup {
			c.bases = append(c.bases, u)
		}
	}
	return nil
}

func (c *Client) base() *url.URL {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bases[c.cur]
}

// URL returns the base URL of the member in use.
func (c *Client) URL() string { return c.base().String() }

func (c *Client) url(path string, q url.Values) string {
	b := c.base()
	u := *b
	u.Path = strings.TrimRight(b.Path, "/") + path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func readQuery(opts []ReadOption) url.Values {
	q := url.Values{}
	for _, o := range opts {
		o(q)
	}
	return q
}

// do sends a request and decodes a 2xx JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), body)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	c.setHeaders(req)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readAPIError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
	}
	return nil
}

// ErrConnection is matched (errors.Is) by errors of a member that could
// not be reached: the request may be tried on another member.
var ErrConnection = errors.New("client: member unreachable")

// connError wraps a transport failure with the server's URL (and moves to
// the next endpoint, if any, unless the caller's context ended). A
// context's own error stays matchable with errors.Is.
func (c *Client) connError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	c.mu.Lock()
	failed := c.bases[c.cur]
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		c.cur = (c.cur + 1) % len(c.bases)
	}
	c.mu.Unlock()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("contacting %s: %w", failed, err)
	}
	return fmt.Errorf("contacting %s: %w (%w)", failed, err, ErrConnection)
}

// readAPIError turns a non-2xx answer into an *APIError.
func readAPIError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb api.ErrorBody
	if err := json.Unmarshal(b, &eb); err == nil && eb.Code != "" {
		return &APIError{Status: resp.StatusCode, Code: eb.Code, Message: eb.Message}
	}
	// Not our server's answer (a proxy?): keep what it said.
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode), Message: msg}
}

// Nodes returns the registered nodes, sorted by slot then name.
func (c *Client) Nodes(ctx context.Context, opts ...ReadOption) ([]*state.Node, error) {
	var nl api.NodeList
	if err := c.do(ctx, http.MethodGet, "/v1/nodes", readQuery(opts), nil, &nl); err != nil {
		return nil, err
	}
	return nl.Nodes, nil
}

// Node returns one node.
func (c *Client) Node(ctx context.Context, name string, opts ...ReadOption) (*state.Node, error) {
	var n state.Node
	if err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(name), readQuery(opts), nil, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// RegisterNode registers a node and returns the committed event.
func (c *Client) RegisterNode(ctx context.Context, req api.RegisterNodeRequest) (events.Event, error) {
	var cr api.CommandResponse
	if err := c.do(ctx, http.MethodPost, "/v1/nodes", nil, req, &cr); err != nil {
		return events.Event{}, err
	}
	return cr.Event, nil
}

// RemoveNode removes a node, with an optional reason, and returns the
// committed event.
func (c *Client) RemoveNode(ctx context.Context, name, reason string) (events.Event, error) {
	q := url.Values{}
	if reason != "" {
		q.Set("reason", reason)
	}
	var cr api.CommandResponse
	if err := c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(name), q, nil, &cr); err != nil {
		return events.Event{}, err
	}
	return cr.Event, nil
}

// SetPower sets a node's desired power (on, off or cycle) and returns the
// committed event; its Sequence says where in the log it is.
func (c *Client) SetPower(ctx context.Context, name string, st events.PowerState, force bool) (events.Event, error) {
	var cr api.CommandResponse
	if err := c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(name)+"/power", nil, api.PowerRequest{State: st, Force: force}, &cr); err != nil {
		return events.Event{}, err
	}
	return cr.Event, nil
}

// Members returns the control-plane members.
func (c *Client) Members(ctx context.Context) ([]api.MemberInfo, error) {
	var ml api.MemberList
	if err := c.do(ctx, http.MethodGet, "/v1/members", nil, nil, &ml); err != nil {
		return nil, err
	}
	return ml.Members, nil
}

// RemoveMember removes a control-plane member.
func (c *Client) RemoveMember(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/members/"+url.PathEscape(name), nil, nil, nil)
}

// Ready returns nil if the member can serve linearizable reads, else an
// *APIError saying why not (or a connection error).
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil)
}

// Healthy returns nil if the member's process answers.
func (c *Client) Healthy(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil, nil)
}
