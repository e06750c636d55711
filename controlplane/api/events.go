package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/racklet/rack/events"
)

// EventList is the body of GET /v1/events.
type EventList struct {
	Events []events.Event `json:"events"`
	// Next is the `since` that continues the listing.
	Next uint64 `json:"next"`
}

// EventStreamType is the media type of a followed event stream.
const EventStreamType = "text/event-stream"

// readBatch is how many events a listing reads from the log at a time.
const readBatch = 1000

// eventFilter selects events by type glob and subject.
type eventFilter struct {
	typeGlob string // full glob, io.racklet.…; "" for any
	subject  string // "" for any
}

func (f eventFilter) match(ev events.Event) bool {
	if f.subject != "" && ev.Subject != f.subject {
		return false
	}
	if f.typeGlob != "" {
		ok, _ := path.Match(f.typeGlob, string(ev.Type))
		return ok
	}
	return true
}

// eventQuery is GET /v1/events' query, parsed and checked.
type eventQuery struct {
	since  uint64
	limit  int
	filter eventFilter
}

func parseEventQuery(r *http.Request) (eventQuery, error) {
	q := r.URL.Query()
	eq := eventQuery{since: 1, limit: DefaultEventLimit}
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return eq, invalid("since", "must be a sequence number (0 or more), not %q", clip(v))
		}
		eq.since = max(n, 1)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxEventLimit {
			return eq, invalid("limit", "must be a number from 1 to %d, not %q", MaxEventLimit, clip(v))
		}
		eq.limit = n
	}
	if v := q.Get("type"); v != "" {
		glob := v
		if !strings.HasPrefix(glob, events.TypePrefix) {
			glob = events.TypePrefix + glob
		}
		if _, err := path.Match(glob, ""); err != nil || strings.Contains(glob, "/") {
			return eq, invalid("type", "%q is not a valid glob (use *, ? and [...] as in node.power.*)", clip(v))
		}
		eq.filter.typeGlob = glob
	}
	if v := q.Get("subject"); v != "" {
		if err := events.ValidateName("subject", v); err != nil {
			return eq, err
		}
		eq.filter.subject = v
	}
	return eq, nil
}

// wantsStream reports whether the client asked for server-sent events.
func wantsStream(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == EventStreamType {
			return true
		}
	}
	return false
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	if wantsStream(r) {
		s.followEvents(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	r = r.WithContext(ctx)
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.timeout + 5*time.Second))

	q, err := parseEventQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.sync(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	out := EventList{Events: []events.Event{}, Next: q.since}
	for from := q.since; len(out.Events) < q.limit; {
		batch, err := s.elog.Read(ctx, from, readBatch)
		if err != nil {
			s.writeError(w, r, fmt.Errorf("reading events from %d: %w", from, err))
			return
		}
		if len(batch) == 0 {
			break
		}
		for _, ev := range batch {
			from = ev.Sequence + 1
			out.Next = from
			if q.filter.match(ev) {
				out.Events = append(out.Events, ev)
				if len(out.Events) == q.limit {
					break
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// followEvents streams events from the query's since (or Last-Event-ID+1)
// as server-sent events until the client goes away.
func (s *Server) followEvents(w http.ResponseWriter, r *http.Request) {
	q, err := parseEventQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			s.writeError(w, r, invalid("Last-Event-ID", "must be a sequence number, not %q", clip(v)))
			return
		}
		q.since = id + 1
	}
	rc := http.NewResponseController(w)
	// A stream outlives the server's ReadTimeout. net/http clears the read
	// deadline itself once a body-less request is read (its background
	// read); clear it here too so a stream never depends on that.
	_ = rc.SetReadDeadline(time.Time{})
	ctx := r.Context()

	// Check before the headers go out, so these still get a status.
	{
		sctx, cancel := context.WithTimeout(ctx, s.timeout)
		err := s.sync(r.WithContext(sctx))
		if err == nil {
			_, err = s.elog.Read(sctx, q.since, 1)
		}
		cancel()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
	}

	h := w.Header()
	h.Set("Content-Type", EventStreamType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) error {
		// A client that stops reading is dropped after two keep-alives.
		_ = rc.SetWriteDeadline(time.Now().Add(2 * s.keepAlive))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write(fmt.Appendf(nil, "retry: 1000\n: following from %d\n\n", q.since)); err != nil {
		return
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evc := make(chan events.Event)
	errc := make(chan error, 1)
	go func() {
		errc <- s.elog.Watch(ctx, q.since, func(ev events.Event) error {
			if !q.filter.match(ev) {
				return nil
			}
			select {
			case evc <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	tick := time.NewTicker(s.keepAlive)
	defer tick.Stop()
	// A stream lives as long as its credentials: checked again when the
	// revocation list changes and at every keep-alive (expiry).
	var revocations <-chan struct{}
	if s.trust != nil {
		ch := make(chan struct{}, 1)
		stop := s.trust.OnRevocations(func() {
			select {
			case ch <- struct{}{}:
			default:
			}
		})
		defer stop()
		revocations = ch
	}
	stillValid := func() bool {
		if s.trust == nil {
			return true
		}
		_, aerr := s.authenticate(r)
		if aerr == nil {
			return true
		}
		s.log.WarnContext(ctx, "event stream ended: credentials no longer valid", "remote", r.RemoteAddr, "reason", aerr.Message)
		b, _ := json.Marshal(ErrorBody{Code: aerr.Code, Message: aerr.Message})
		_ = write(fmt.Appendf(nil, "event: error\ndata: %s\n\n", b))
		cancel()
		<-errc
		return false
	}
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-errc
			return
		case <-revocations:
			if !stillValid() {
				return
			}
		case ev := <-evc:
			b, err := json.Marshal(ev)
			if err != nil {
				s.log.ErrorContext(ctx, "encoding event", "sequence", ev.Sequence, "err", err)
				cancel()
				<-errc
				return
			}
			if err := write(fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", ev.Sequence, ev.Type, b)); err != nil {
				cancel()
				<-errc
				return
			}
		case <-tick.C:
			if !stillValid() {
				return
			}
			if err := write([]byte(": keep-alive\n\n")); err != nil {
				cancel()
				<-errc
				return
			}
		case err := <-errc:
			// The log ended the watch (closed, compacted under us): say
			// why as an error event, then end the stream.
			if ctx.Err() != nil || err == nil {
				return
			}
			e := toError(err)
			if !errors.Is(err, context.Canceled) {
				s.log.WarnContext(ctx, "event stream ended", "code", e.Code, "err", err)
			}
			b, _ := json.Marshal(ErrorBody{Code: e.Code, Message: e.Message})
			_ = write(fmt.Appendf(nil, "event: error\ndata: %s\n\n", b))
			return
		}
	}
}
