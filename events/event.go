// Package events defines the rack's event: a CloudEvents 1.0 structured-JSON
// envelope with the `sequence` extension, the typed payloads it carries, their
// validation and the codec. Everything that enters the replicated log, and
// everything published to NATS, is an Event.
package events

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// SpecVersion is the CloudEvents version of the envelope.
const SpecVersion = "1.0"

// ContentType is the only data content type the rack uses.
const ContentType = "application/json"

// TypePrefix starts every event type.
const TypePrefix = "io.racklet."

// Event is one entry of the rack's log in CloudEvents 1.0 structured JSON.
//
// Sequence is the event's number in the rack's log: 1, 2, 3, … with no holes.
// It is zero until the log applies the event; the log assigns it, never the
// writer. Time and ID are set by whoever proposes the event, so that applying
// the log is deterministic.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            Type            `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	Sequence        uint64          `json:"sequence,omitempty"`
	// Actor names who asked for the change (an identity from a certificate
	// or token, or a reconciler), for audit. Optional extension attribute.
	Actor string `json:"actor,omitempty"`
}

// New builds an event of type t about subject with payload p, stamped with a
// fresh id and the current time. source is `/racklet/<rack>/<member>`.
// The result is validated.
func New(source string, t Type, subject string, p Payload) (Event, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return Event{}, fmt.Errorf("encoding %s payload: %w", t, err)
	}
	ev := Event{
		SpecVersion:     SpecVersion,
		ID:              NewID(),
		Source:          source,
		Type:            t,
		Subject:         subject,
		Time:            time.Now().UTC().Truncate(time.Microsecond),
		DataContentType: ContentType,
		Data:            data,
	}
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Source returns the CloudEvents source of a member of a rack.
func Source(rack, member string) string { return "/racklet/" + rack + "/" + member }

// NewID returns a random 128-bit event id in hex.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("events: reading random id: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// Payload decodes and validates the event's data as its typed payload.
func (e Event) Payload() (Payload, error) {
	spec, ok := registry[e.Type]
	if !ok {
		return nil, &FieldError{Field: "type", Reason: fmt.Sprintf("unknown event type %q", string(e.Type))}
	}
	p := spec.new()
	if err := decodeData(e.Data, p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// NATSSubject returns the NATS subject the event is published on:
// racklet.<rack>.events.<type without io.racklet.>.<subject>.
func NATSSubject(rack string, e Event) string {
	return "racklet." + rack + ".events." + strings.TrimPrefix(string(e.Type), TypePrefix) + "." + e.Subject
}

// NATSWildcard returns the NATS subject that selects every event of a rack.
func NATSWildcard(rack string) string { return "racklet." + rack + ".events.>" }
