package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/controlplane/telemetry"
	"github.com/racklet/rack/events"
)

// TelemetryResponse is the body of GET /v1/telemetry: the latest sample
// this member received from the leader (over NATS), how old it is, and
// whether it is still fresh (telemetry.FreshFor).
type TelemetryResponse struct {
	telemetry.Sample
	AgeSeconds float64 `json:"ageSeconds"`
	Fresh      bool    `json:"fresh"`
}

// FansResponse is the body of GET /v1/fans.
type FansResponse struct {
	// Sequence is the log position the policy and alarms reflect.
	Sequence uint64 `json:"sequence"`
	// Policy is the fan policy in the log (nil: none set; the leader runs
	// its configured default).
	Policy *events.FanPolicy `json:"policy,omitempty"`
	// Alarms are the raised alarms.
	Alarms []*state.Alarm `json:"alarms"`
	// From the latest sample (absent if none yet): the fans, the duty set,
	// fail-safe, and when it was taken.
	Fans           []telemetry.FanSample `json:"fans"`
	Duty           float64               `json:"duty"`
	FailSafe       bool                  `json:"failSafe"`
	FailSafeReason string                `json:"failSafeReason,omitempty"`
	SampledAt      time.Time             `json:"sampledAt,omitzero"`
	Fresh          bool                  `json:"fresh"`
}

// FanPolicyResponse is the body of GET /v1/fan-policy.
type FanPolicyResponse struct {
	Policy   events.FanPolicy `json:"policy"`
	Sequence uint64           `json:"sequence"`
	SetAt    time.Time        `json:"setAt"`
}

func (s *Server) latest() (telemetry.Sample, time.Duration, bool, error) {
	if s.telemetry == nil {
		return telemetry.Sample{}, 0, false, &Error{Status: http.StatusNotImplemented, Code: CodeNotImplemented, Message: "this member does not receive telemetry"}
	}
	smp, age, ok := s.telemetry.Get()
	return smp, age, ok, nil
}

func (s *Server) getTelemetry(w http.ResponseWriter, r *http.Request) {
	smp, age, ok, err := s.latest()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !ok {
		s.writeError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: fmt.Sprintf("no telemetry sample yet: the leader's fan reconciler publishes one every interval; retry in %d seconds", RetryAfterSeconds)})
		return
	}
	writeJSON(w, http.StatusOK, TelemetryResponse{Sample: smp, AgeSeconds: age.Seconds(), Fresh: age <= telemetry.FreshFor(smp)})
}

func (s *Server) getFans(w http.ResponseWriter, r *http.Request) {
	if err := s.sync(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.elog.State(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("reading state: %w", err))
		return
	}
	resp := FansResponse{Sequence: st.Sequence, Alarms: st.Thermal.AlarmList(), Fans: []telemetry.FanSample{}}
	if resp.Alarms == nil {
		resp.Alarms = []*state.Alarm{}
	}
	if st.Thermal != nil {
		resp.Policy = st.Thermal.Policy
	}
	if smp, age, ok, err := s.latest(); err == nil && ok {
		resp.Fans, resp.Duty, resp.FailSafe, resp.FailSafeReason = smp.Fans, smp.Duty, smp.FailSafe, smp.FailSafeReason
		resp.SampledAt, resp.Fresh = smp.Time, age <= telemetry.FreshFor(smp)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) getFanPolicy(w http.ResponseWriter, r *http.Request) {
	if err := s.sync(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.elog.State(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("reading state: %w", err))
		return
	}
	if st.Thermal == nil || st.Thermal.Policy == nil {
		s.writeError(w, r, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: "no fan policy has been set; the leader runs its configured default (set one with PUT /v1/fan-policy)"})
		return
	}
	writeJSON(w, http.StatusOK, FanPolicyResponse{Policy: *st.Thermal.Policy, Sequence: st.Thermal.PolicySequence, SetAt: st.Thermal.PolicyAt})
}

// setFanPolicy validates a policy (events.FanPolicy, strict JSON), fills
// in its defaults and appends io.racklet.rack.fanpolicy.set about the rack.
func (s *Server) setFanPolicy(w http.ResponseWriter, r *http.Request) {
	var p events.FanPolicy
	if err := decodeBody(w, r, &p); err != nil {
		s.writeError(w, r, err)
		return
	}
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		s.writeError(w, r, err) // a *events.FieldError naming the field: 400
		return
	}
	ev, err := events.New(s.source, events.FanPolicySet, s.rack, &events.FanPolicySetData{Policy: p})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ev.Actor = actor(r)
	out, err := s.elog.Append(r.Context(), ev)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("appending %s: %w", events.FanPolicySet, err))
		return
	}
	if len(out) != 1 {
		s.writeError(w, r, fmt.Errorf("appending %s: the log returned %d events for 1", events.FanPolicySet, len(out)))
		return
	}
	s.log.InfoContext(r.Context(), "command committed", "type", string(events.FanPolicySet), "subject", s.rack, "sequence", out[0].Sequence, "actor", ev.Actor)
	writeJSON(w, http.StatusOK, CommandResponse{Sequence: out[0].Sequence, Event: out[0]})
}
