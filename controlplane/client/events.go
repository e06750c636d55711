package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/events"
)

// EventQuery selects events.
type EventQuery struct {
	// Since is the first sequence wanted (0 or 1: from the start).
	Since uint64
	// Type is a glob over event types, full (io.racklet.node.power.*) or
	// short (node.power.*).
	Type string
	// Subject selects the events of one object.
	Subject string
	// Limit bounds a listing (server default 100, at most 10000); a
	// follow ignores it.
	Limit int
}

func (q EventQuery) values(opts []ReadOption) url.Values {
	v := readQuery(opts)
	if q.Since > 0 {
		v.Set("since", strconv.FormatUint(q.Since, 10))
	}
	if q.Type != "" {
		v.Set("type", q.Type)
	}
	if q.Subject != "" {
		v.Set("subject", q.Subject)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Events lists events matching q, and the Since that continues the listing.
func (c *Client) Events(ctx context.Context, q EventQuery, opts ...ReadOption) ([]events.Event, uint64, error) {
	var el api.EventList
	if err := c.do(ctx, http.MethodGet, "/v1/events", q.values(opts), nil, &el); err != nil {
		return nil, 0, err
	}
	return el.Events, el.Next, nil
}

// Reconnection backoff of FollowEvents.
const (
	followMinBackoff = 100 * time.Millisecond
	followMaxBackoff = 5 * time.Second
)

// errStreamEnded is a stream that ended without an error: reconnect.
var errStreamEnded = errors.New("the event stream ended")

// FollowEvents calls fn with every event matching q, in order, from
// q.Since on, as they are committed, until ctx ends (it returns ctx.Err())
// or fn returns an error (returned as is).
//
// If the connection drops, or the member answers 503 (no leader, shutting
// down), it reconnects with backoff and resumes after the last event it
// delivered (Last-Event-ID), so fn sees no event twice and none is missed.
// If the very first connection fails, or the server rejects the query,
// it returns that error.
func (c *Client) FollowEvents(ctx context.Context, q EventQuery, fn func(events.Event) error, opts ...ReadOption) error {
	var last uint64 // sequence of the last event delivered; 0 if none
	connected := false
	backoff := followMinBackoff
	for {
		prev := last
		err := c.followOnce(ctx, q, last, fn, &last, &connected)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fe *fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		var ae *APIError
		switch {
		case errors.As(err, &ae) && ae.Status != http.StatusServiceUnavailable:
			return err
		case !connected:
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, followMaxBackoff)
		if last > prev {
			backoff = followMinBackoff // progress was made; try again soon
		}
	}
}

// fnError carries the callback's error out unchanged.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// followOnce runs one connection of FollowEvents.
func (c *Client) followOnce(ctx context.Context, q EventQuery, resumeAfter uint64, fn func(events.Event) error, last *uint64, connected *bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v1/events", q.values(nil)), nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	c.setHeaders(req)
	req.Header.Set("Accept", api.EventStreamType)
	if resumeAfter > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(resumeAfter, 10))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readAPIError(resp)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, api.EventStreamType) {
		return fmt.Errorf("following events at %s: the answer is %q, not an event stream", c.base(), ct)
	}
	*connected = true
	return readStream(resp.Body, func(id, typ, data string) error {
		if typ == "error" {
			var eb api.ErrorBody
			if err := json.Unmarshal([]byte(data), &eb); err != nil || eb.Code == "" {
				return fmt.Errorf("the event stream failed: %s", data)
			}
			st := http.StatusInternalServerError
			switch eb.Code {
			case api.CodeUnavailable:
				st = http.StatusServiceUnavailable
			case api.CodeCompacted:
				st = http.StatusGone
			}
			return &APIError{Status: st, Code: eb.Code, Message: eb.Message}
		}
		ev, err := events.Decode([]byte(data))
		if err != nil {
			return fmt.Errorf("decoding streamed event %s: %w", id, err)
		}
		if ev.Sequence <= *last && *last > 0 {
			return nil // already delivered
		}
		if err := fn(ev); err != nil {
			return &fnError{err}
		}
		*last = ev.Sequence
		return nil
	})
}

// readStream parses server-sent events from r and calls fn for each event
// with data. It returns fn's error, the read error, or errStreamEnded.
func readStream(r io.Reader, fn func(id, typ, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), events.MaxEventSize*2)
	var id, typ string
	var data strings.Builder
	hasData := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData {
				if err := fn(id, typ, data.String()); err != nil {
					return err
				}
			}
			typ, hasData = "", false
			data.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // comment (keep-alive)
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the event stream: %w", err)
	}
	return errStreamEnded
}
