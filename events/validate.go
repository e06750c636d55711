package events

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// ErrInvalid is matched (errors.Is) by every validation error.
var ErrInvalid = errors.New("events: invalid event")

// FieldError says which field of an event is invalid and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "events: invalid " + e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

var nameRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// ValidName reports whether s is a valid name: [a-z0-9-]{1,63}.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidateName returns a *FieldError naming field if s is not a valid name.
func ValidateName(field, s string) error {
	if s == "" {
		return &FieldError{Field: field, Reason: "is required"}
	}
	if !ValidName(s) {
		return &FieldError{Field: field, Reason: fmt.Sprintf("%q is not a valid name: use 1 to 63 of a-z, 0-9 and -", clip(s))}
	}
	return nil
}

const maxIDLen = 128

// Validate checks the envelope and the payload. The sequence is not
// checked: it is zero before the log applies the event.
func (e Event) Validate() error {
	if e.SpecVersion != SpecVersion {
		return &FieldError{Field: "specversion", Reason: fmt.Sprintf("must be %q, not %q", SpecVersion, clip(e.SpecVersion))}
	}
	if e.ID == "" {
		return &FieldError{Field: "id", Reason: "is required"}
	}
	if len(e.ID) > maxIDLen || !utf8.ValidString(e.ID) || strings.ContainsFunc(e.ID, func(r rune) bool { return r <= ' ' }) {
		return &FieldError{Field: "id", Reason: fmt.Sprintf("must be 1 to %d printable characters", maxIDLen)}
	}
	if err := validateSource(e.Source); err != nil {
		return err
	}
	if e.Type == "" {
		return &FieldError{Field: "type", Reason: "is required"}
	}
	if !Known(e.Type) {
		return &FieldError{Field: "type", Reason: fmt.Sprintf("unknown event type %q", clip(string(e.Type)))}
	}
	if err := ValidateName("subject", e.Subject); err != nil {
		return err
	}
	if e.Time.IsZero() {
		return &FieldError{Field: "time", Reason: "is required"}
	}
	if e.DataContentType != ContentType {
		return &FieldError{Field: "datacontenttype", Reason: fmt.Sprintf("must be %q", ContentType)}
	}
	if e.Actor != "" {
		if err := validateText("actor", e.Actor, false); err != nil {
			return err
		}
	}
	_, err := e.Payload()
	return err
}

// validateSource accepts /racklet/<rack>/<member>.
func validateSource(s string) error {
	if s == "" {
		return &FieldError{Field: "source", Reason: "is required"}
	}
	parts := strings.Split(s, "/")
	if len(parts) != 4 || parts[0] != "" || parts[1] != "racklet" || !ValidName(parts[2]) || !ValidName(parts[3]) {
		return &FieldError{Field: "source", Reason: fmt.Sprintf("must be /racklet/<rack>/<member>, not %q", clip(s))}
	}
	return nil
}

// clip shortens s for error messages.
func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
