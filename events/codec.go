package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxEventSize bounds an encoded event. Anything larger is rejected.
const MaxEventSize = 64 << 10

// Encode returns the event as CloudEvents structured JSON.
func Encode(e Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding event: %w", err)
	}
	return b, nil
}

// Decode parses one CloudEvents structured-JSON event and validates it.
// Unknown top-level attributes (other extensions) are ignored, as
// CloudEvents asks of consumers; everything the rack relies on is checked.
func Decode(b []byte) (Event, error) {
	if len(b) > MaxEventSize {
		return Event{}, &FieldError{Field: "event", Reason: fmt.Sprintf("is %d bytes, more than the limit of %d", len(b), MaxEventSize)}
	}
	var e Event
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		return Event{}, jsonError("event", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Event{}, &FieldError{Field: "event", Reason: "has trailing data after the JSON object"}
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// decodeData decodes an event's data into p. Unknown payload fields are
// ignored (a newer writer may add optional fields); missing and malformed
// required fields are reported by the payload's Validate.
func decodeData(data json.RawMessage, p Payload) error {
	if len(bytes.TrimSpace(data)) == 0 || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return &FieldError{Field: "data", Reason: "is required (a JSON object)"}
	}
	if err := json.Unmarshal(data, p); err != nil {
		return jsonError("data", err)
	}
	return nil
}

// jsonError turns a JSON decoding error into a FieldError naming the field.
func jsonError(prefix string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		field := te.Field
		if prefix != "event" {
			field = prefix + "." + field
		}
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be a JSON %s, not %s", JSONKind(te.Type.Kind().String()), te.Value)}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &FieldError{Field: prefix, Reason: fmt.Sprintf("is not valid JSON at byte %d: %v", se.Offset, err)}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &FieldError{Field: prefix, Reason: "is empty or truncated JSON"}
	}
	return &FieldError{Field: prefix, Reason: err.Error()}
}

// JSONKind names, for error messages, the JSON type a Go kind (as
// reflect.Kind.String gives it) is decoded from: string, boolean, object,
// array or number.
func JSONKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	}
	return "number"
}
