package state

import (
	"fmt"
	"sort"
	"time"

	"github.com/racklet/rack/events"
)

// Thermal is the rack's fan policy and its alarms, as the log has them.
type Thermal struct {
	// Policy is the fan policy last set (nil until one is set: the fan
	// reconciler then runs its configured default).
	Policy         *events.FanPolicy `json:"policy,omitempty"`
	PolicySubject  string            `json:"policySubject,omitempty"`
	PolicySequence uint64            `json:"policySequence,omitempty"`
	PolicyAt       time.Time         `json:"policyAt,omitzero"`
	// Alarms are the alarms raised and not cleared, by AlarmKey.
	Alarms map[string]*Alarm `json:"alarms,omitempty"`
}

// Alarm is a raised alarm.
type Alarm struct {
	Kind    events.AlarmKind `json:"kind"`
	Subject string           `json:"subject"`
	Reason  string           `json:"reason"`
	Value   float64          `json:"value,omitempty"`
	Limit   float64          `json:"limit,omitempty"`
	// Sequence is the alarm.raised event's; Since its time.
	Sequence uint64    `json:"sequence"`
	Since    time.Time `json:"since"`
}

// AlarmKey identifies an alarm: one per kind and subject.
func AlarmKey(kind events.AlarmKind, subject string) string { return string(kind) + "/" + subject }

// Alarm returns the raised alarm of that kind about subject, or nil.
func (t *Thermal) Alarm(kind events.AlarmKind, subject string) *Alarm {
	if t == nil {
		return nil
	}
	return t.Alarms[AlarmKey(kind, subject)]
}

// AlarmList returns the raised alarms sorted by sequence.
func (t *Thermal) AlarmList() []*Alarm {
	if t == nil {
		return nil
	}
	out := make([]*Alarm, 0, len(t.Alarms))
	for _, a := range t.Alarms {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Sequence < out[j].Sequence })
	return out
}

func (t *Thermal) clone() *Thermal {
	if t == nil {
		return nil
	}
	c := *t
	if t.Policy != nil {
		p := *t.Policy
		p.Curve = append([]events.CurvePoint(nil), t.Policy.Curve...)
		if t.Policy.PID != nil {
			pid := *t.Policy.PID
			p.PID = &pid
		}
		c.Policy = &p
	}
	if t.Alarms != nil {
		c.Alarms = make(map[string]*Alarm, len(t.Alarms))
		for k, a := range t.Alarms {
			aa := *a
			c.Alarms[k] = &aa
		}
	}
	return &c
}

// thermalScratch is Apply's copy of the thermal state, made on first use.
type thermalScratch struct{ t *Thermal }

func (ts *thermalScratch) get(s *State) *Thermal {
	if ts.t == nil {
		ts.t = s.Thermal.clone()
		if ts.t == nil {
			ts.t = &Thermal{}
		}
	}
	return ts.t
}

// apply projects a fan policy or alarm event. Nothing is rejected: a
// policy is valid once its event is, an alarm raised again updates it, and
// clearing an alarm that is not raised changes nothing.
func (ts *thermalScratch) apply(s *State, ev events.Event, seq uint64, p events.Payload) error {
	t := ts.get(s)
	switch d := p.(type) {
	case *events.FanPolicySetData:
		pol := d.Policy
		t.Policy, t.PolicySubject, t.PolicySequence, t.PolicyAt = &pol, ev.Subject, seq, ev.Time
	case *events.AlarmRaisedData:
		if t.Alarms == nil {
			t.Alarms = map[string]*Alarm{}
		}
		key := AlarmKey(d.Kind, ev.Subject)
		since := ev.Time
		if old, ok := t.Alarms[key]; ok {
			since = old.Since
		}
		t.Alarms[key] = &Alarm{Kind: d.Kind, Subject: ev.Subject, Reason: d.Reason, Value: d.Value, Limit: d.Limit, Sequence: seq, Since: since}
	case *events.AlarmClearedData:
		delete(t.Alarms, AlarmKey(d.Kind, ev.Subject))
		if len(t.Alarms) == 0 {
			t.Alarms = nil
		}
	default:
		return fmt.Errorf("state: no thermal projection for %T", p)
	}
	return nil
}

func (ts *thermalScratch) commit(s *State) {
	if ts.t != nil {
		s.Thermal = ts.t
	}
}
