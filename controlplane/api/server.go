// Package api is the HTTP JSON API every control-plane member serves:
// commands (register, remove, power) are validated, turned into events and
// appended to the log; reads come from the state projection and the log,
// linearizable unless the caller asks for a stale local read (?stale=1).
//
// Routes:
//
//	GET    /v1/nodes                 the nodes ({"sequence":N,"nodes":[...]})
//	GET    /v1/nodes/{name}          one node
//	POST   /v1/nodes                 register a node ({"name","slot","member"}) → 201
//	DELETE /v1/nodes/{name}          remove a node (?reason=…)
//	PUT    /v1/nodes/{name}/power    set desired power ({"state","force"}) → 202
//	GET    /v1/firmware              firmware components: desired, observed, last step
//	GET    /v1/firmware/{name}       one component ("<node>-bmc")
//	PUT    /v1/firmware/{name}       set the desired firmware version ({"version"}) → 202
//	PUT    /v1/nodes/{name}/boot     set the boot spec ({"source","image","digest","keyId"}) → 202
//	POST   /v1/nodes/{name}/boot/stages  a node reports a boot stage ({"stage","failed","reason","imageDigest"}) → 202
//	GET    /v1/telemetry             the latest sensor sample (power, energy, °C, fans)
//	GET    /v1/fans                  fans, duty, fail-safe, fan policy and alarms
//	GET    /v1/fan-policy            the fan policy in the log
//	PUT    /v1/fan-policy            set the fan policy (events.FanPolicy) → 200
//	GET    /v1/events                list events, or follow them as server-sent events
//	GET    /v1/members               the control-plane members
//	DELETE /v1/members/{name}        remove a member
//	GET    /healthz                  the process is alive
//	GET    /readyz                   the member can serve linearizable reads
//	GET    /metrics                  Prometheus metrics (OpenMetrics negotiated)
//
// Every error is JSON {"code","message"} with a stable code (see Code*).
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/racklet/rack/controlplane/eventlog"
	"github.com/racklet/rack/controlplane/pki"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/events"
)

// Cluster is what the API needs beyond the log: membership and health. The
// Raft log implements it.
type Cluster interface {
	Members(ctx context.Context) ([]MemberInfo, error)
	RemoveMember(ctx context.Context, name string) error
	// Ready returns nil when this member can serve linearizable reads (a
	// leader is known, caught up), else why not.
	Ready(ctx context.Context) error
}

// MemberInfo is a control-plane member as the cluster sees it.
type MemberInfo struct {
	Name         string `json:"name"`
	RaftAddress  string `json:"raftAddress"`
	NATSURL      string `json:"natsURL,omitempty"`
	APIURL       string `json:"apiURL,omitempty"`
	Voter        bool   `json:"voter"`
	Leader       bool   `json:"leader"`
	AppliedIndex uint64 `json:"appliedIndex"`
	CommitIndex  uint64 `json:"commitIndex"`
}

// Limits and defaults.
const (
	// MaxBodyBytes bounds a request body; larger ones get 413.
	MaxBodyBytes = 64 << 10
	// DefaultEventLimit and MaxEventLimit bound GET /v1/events.
	DefaultEventLimit = 100
	MaxEventLimit     = 10_000
	// DefaultRequestTimeout bounds a request that is not a stream.
	DefaultRequestTimeout = 15 * time.Second
	// DefaultKeepAlive is how often a quiet event stream sends a comment.
	DefaultKeepAlive = 15 * time.Second
	// Actor is recorded on events until requests carry identities.
	Actor = "anonymous"
)

// Config configures a Server.
type Config struct {
	// Rack and Member name this member; events get source /racklet/<rack>/<member>.
	Rack, Member string
	Log          eventlog.Log
	// Cluster serves /v1/members and /readyz. If nil, /v1/members answers
	// 501 and /readyz is ready when Log.Sync succeeds.
	Cluster Cluster
	// Registry receives the API's metrics; Gatherer serves /metrics. If
	// both are nil a private registry is used for both; if only Gatherer
	// is nil, Registry is used when it is also a Gatherer.
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger

	// RequestTimeout bounds every request but event streams
	// (DefaultRequestTimeout if zero). Past it the answer is 504.
	RequestTimeout time.Duration
	// KeepAlive is the comment interval on quiet event streams
	// (DefaultKeepAlive if zero).
	KeepAlive time.Duration
	// Trust, when set, turns on authentication and authorisation (see
	// auth.go): every request but GET /healthz needs a client certificate
	// or bearer token from the rack's CA and a role the route allows.
	// Nil: open to anyone who reaches the port (tests, insecure dev mode).
	Trust *pki.Trust
	// Telemetry is the latest rack sample this member received; nil makes
	// GET /v1/telemetry answer 501 (thermal.go).
	Telemetry *telemetry.Latest
}

// Server is the API as an http.Handler.
type Server struct {
	rack, member string
	source       string
	log          *slog.Logger
	elog         eventlog.Log
	cluster      Cluster
	timeout      time.Duration
	keepAlive    time.Duration
	trust        *pki.Trust
	telemetry    *telemetry.Latest
	mux          *http.ServeMux
	duration     *prometheus.HistogramVec
}

var _ http.Handler = (*Server)(nil)

// New returns the API server of one member.
func New(cfg Config) (*Server, error) {
	if err := events.ValidateName("rack", cfg.Rack); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := events.ValidateName("member", cfg.Member); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if cfg.Log == nil {
		return nil, errors.New("api: Config.Log is required")
	}
	s := &Server{
		rack: cfg.Rack, member: cfg.Member, source: events.Source(cfg.Rack, cfg.Member),
		log: cfg.Logger, elog: cfg.Log, cluster: cfg.Cluster,
		timeout: cfg.RequestTimeout, keepAlive: cfg.KeepAlive, trust: cfg.Trust,
		telemetry: cfg.Telemetry,
		mux:       http.NewServeMux(),
	}
	if s.log == nil {
		s.log = discardLogger
	}
	if s.timeout <= 0 {
		s.timeout = DefaultRequestTimeout
	}
	if s.keepAlive <= 0 {
		s.keepAlive = DefaultKeepAlive
	}
	reg, gath := cfg.Registry, cfg.Gatherer
	if reg == nil && gath == nil {
		r := prometheus.NewRegistry()
		reg, gath = r, r
	}
	if gath == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			gath = g
		} else {
			gath = prometheus.DefaultGatherer
		}
	}
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "racklet_api_request_duration_seconds",
		Help:    "Time to serve an API request, by route pattern and status code. Event streams count once, when they end.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "code"})
	if reg != nil {
		if err := reg.Register(s.duration); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("api: registering metrics: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.HistogramVec)
			if !ok {
				return nil, fmt.Errorf("api: registering metrics: %w", err)
			}
			s.duration = existing
		}
	}

	s.handle("GET /v1/nodes", s.listNodes)
	s.handle("GET /v1/nodes/{name}", s.getNode)
	s.handle("POST /v1/nodes", s.registerNode)
	s.handle("DELETE /v1/nodes/{name}", s.removeNode)
	s.handle("PUT /v1/nodes/{name}/power", s.setPower)
	s.handle("GET /v1/firmware", s.listFirmware)
	s.handle("GET /v1/firmware/{name}", s.getFirmware)
	s.handle("PUT /v1/firmware/{name}", s.setFirmware)
	s.handle("PUT /v1/nodes/{name}/boot", s.setBoot)
	s.handle("POST /v1/nodes/{name}/boot/stages", s.reportBootStage)
	s.handle("GET /v1/telemetry", s.getTelemetry)
	s.handle("GET /v1/fans", s.getFans)
	s.handle("GET /v1/fan-policy", s.getFanPolicy)
	s.handle("PUT /v1/fan-policy", s.setFanPolicy)
	s.mux.HandleFunc("GET /v1/events", s.listEvents) // streams: no request timeout
	s.handle("GET /v1/members", s.listMembers)
	s.handle("DELETE /v1/members/{name}", s.removeMember)
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	// Go profiles for admins (RequiredRole): go tool pprof
	// https://member:7480/debug/pprof/heap with an admin certificate.
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex, …
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", boundedProfile(pprof.Profile))
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", boundedProfile(pprof.Trace))
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(gath, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelError),
	}))
	return s, nil
}

// maxProfileSeconds bounds a CPU profile or trace (?seconds=N, default 30
// as in net/http/pprof).
const maxProfileSeconds = 120

// boundedProfile refuses a CPU profile or execution trace longer than
// maxProfileSeconds, so one request cannot hold a profiler for hours.
func boundedProfile(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("seconds"); v != "" {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n <= 0 || n > maxProfileSeconds {
				writeJSON(w, http.StatusBadRequest, ErrorBody{Code: CodeInvalid, Message: fmt.Sprintf("seconds: want a number of seconds from 1 to %d, not %q", maxProfileSeconds, clip(v))})
				return
			}
		}
		h(w, r)
	}
}

// handle registers a handler that runs under the request timeout.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
		defer cancel()
		// Bound the write too, since the http.Server has no WriteTimeout
		// (event streams must outlive it). Not every writer supports it.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.timeout + 5*time.Second))
		h(w, r.WithContext(ctx))
	})
}

// ServeHTTP routes the request, records its duration, and turns the mux's
// own 404 and 405 answers into JSON errors.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	r, ok := s.authorize(sw, r)
	if !ok {
		s.duration.WithLabelValues("refused", strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
		return
	}
	// Handler only finds the pattern (for the metric); ServeHTTP routes,
	// which also sets the path values.
	_, route := s.mux.Handler(r)
	if route == "" {
		route = "unmatched"
		s.mux.ServeHTTP(&fallbackWriter{w: sw, r: r}, r)
	} else {
		s.mux.ServeHTTP(sw, r)
	}
	code := sw.status
	if code == 0 {
		code = http.StatusOK
	}
	s.duration.WithLabelValues(route, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
}

// statusWriter records the status code. Unwrap lets http.ResponseController
// reach the connection (flush, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// fallbackWriter catches the mux's plain-text 404 and 405 and answers JSON
// instead; anything else (redirects of unclean paths) passes through.
type fallbackWriter struct {
	w        http.ResponseWriter
	r        *http.Request
	replaced bool
}

func (f *fallbackWriter) Header() http.Header { return f.w.Header() }

func (f *fallbackWriter) WriteHeader(code int) {
	switch code {
	case http.StatusNotFound:
		f.replaced = true
		f.w.Header().Del("X-Content-Type-Options")
		writeJSON(f.w, code, ErrorBody{Code: CodeNotFound, Message: fmt.Sprintf("no route for %s %s", f.r.Method, f.r.URL.Path)})
	case http.StatusMethodNotAllowed:
		f.replaced = true
		writeJSON(f.w, code, ErrorBody{Code: CodeMethodNotAllowed, Message: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", f.r.Method, f.r.URL.Path, f.w.Header().Get("Allow"))})
	default:
		f.w.WriteHeader(code)
	}
}

func (f *fallbackWriter) Write(b []byte) (int, error) {
	if f.replaced {
		return len(b), nil
	}
	return f.w.Write(b)
}

// writeJSON writes v as the response body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":"internal","message":"encoding the response failed"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeBody decodes the JSON request body into v: at most MaxBodyBytes,
// application/json (or no content type), one object, no unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return invalid("Content-Type", "must be application/json, not %q", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("the request body is larger than %d bytes", MaxBodyBytes)}
		}
		return invalid("body", "reading it failed: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return invalid("body", "is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("body", "has data after the JSON object")
	}
	return nil
}

// bodyError turns a JSON decoding error into an invalid error naming the field.
func bodyError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return invalid("body", "must be a JSON object, not %s", te.Value)
		}
		return invalid(field, "must be a JSON %s, not %s", events.JSONKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return invalid("body", "is not valid JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("body", "is truncated JSON")
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalid(strings.Trim(f, `"`), "is not a known field")
	}
	return invalid("body", "%v", err)
}

// stale reports whether the request asks for a local read.
func stale(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("stale")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalid("stale", "must be a boolean (1, true, 0, false), not %q", v)
	}
	return b, nil
}

// sync makes the following read linearizable unless the request is stale.
func (s *Server) sync(r *http.Request) error {
	st, err := stale(r)
	if err != nil {
		return err
	}
	if st {
		return nil
	}
	if err := s.elog.Sync(r.Context()); err != nil {
		return fmt.Errorf("syncing the log: %w", err)
	}
	return nil
}
