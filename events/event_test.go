package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func validEvent(t *testing.T) Event {
	t.Helper()
	ev, err := New(Source("rack1", "m1"), NodePowerDesired, "n3", &PowerDesiredData{State: PowerOff})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return ev
}

func TestRoundTrip(t *testing.T) {
	ev := validEvent(t)
	ev.Sequence = 42
	b, err := Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(%s): %v", b, err)
	}
	if got.ID != ev.ID || got.Sequence != 42 || got.Type != ev.Type || !got.Time.Equal(ev.Time) || string(got.Data) != string(ev.Data) {
		t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", got, ev)
	}
	p, err := got.Payload()
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := p.(*PowerDesiredData); !ok || d.State != PowerOff {
		t.Fatalf("payload = %#v", p)
	}
	// The envelope uses the CloudEvents attribute names.
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data", "sequence"} {
		if _, ok := m[k]; !ok {
			t.Errorf("encoded event lacks %q: %s", k, b)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := validEvent(t)
	mutate := func(f func(m map[string]any)) string {
		b, _ := Encode(good)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		f(m)
		out, _ := json.Marshal(m)
		return string(out)
	}
	tests := []struct {
		name, in, field string
	}{
		{"empty", "", "event"},
		{"not json", "{nope", "event"},
		{"array", "[]", "event"},
		{"trailing", mutate(func(map[string]any) {}) + "{}", "event"},
		{"wrong specversion", mutate(func(m map[string]any) { m["specversion"] = "0.3" }), "specversion"},
		{"no id", mutate(func(m map[string]any) { delete(m, "id") }), "id"},
		{"id with space", mutate(func(m map[string]any) { m["id"] = "a b" }), "id"},
		{"bad source", mutate(func(m map[string]any) { m["source"] = "/elsewhere/x" }), "source"},
		{"unknown type", mutate(func(m map[string]any) { m["type"] = "io.racklet.node.exploded" }), "type"},
		{"bad subject", mutate(func(m map[string]any) { m["subject"] = "N3" }), "subject"},
		{"long subject", mutate(func(m map[string]any) { m["subject"] = strings.Repeat("a", 64) }), "subject"},
		{"no time", mutate(func(m map[string]any) { delete(m, "time") }), "time"},
		{"bad time", mutate(func(m map[string]any) { m["time"] = "yesterday" }), "event"},
		{"content type", mutate(func(m map[string]any) { m["datacontenttype"] = "text/plain" }), "datacontenttype"},
		{"no data", mutate(func(m map[string]any) { delete(m, "data") }), "data"},
		{"null data", mutate(func(m map[string]any) { m["data"] = nil }), "data"},
		{"data wrong type", mutate(func(m map[string]any) { m["data"] = map[string]any{"state": 7} }), "data.state"},
		{"data bad state", mutate(func(m map[string]any) { m["data"] = map[string]any{"state": "sideways"} }), "data.state"},
		{"data missing state", mutate(func(m map[string]any) { m["data"] = map[string]any{} }), "data.state"},
		{"sequence negative", mutate(func(m map[string]any) { m["sequence"] = -1 }), "sequence"},
		{"too big", `{"id":"` + strings.Repeat("x", MaxEventSize) + `"}`, "event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%.80s) succeeded, want an error naming %q", tt.in, tt.field)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Fatalf("error names field %q, want %q (%v)", fe.Field, tt.field, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("errors.Is(%v, ErrInvalid) = false", err)
			}
		})
	}
}

func TestPayloadValidation(t *testing.T) {
	src := Source("rack1", "m1")
	tests := []struct {
		name  string
		typ   Type
		p     Payload
		field string // "" = valid
	}{
		{"registered", NodeRegistered, &NodeRegisteredData{Slot: 3, Member: "m3"}, ""},
		{"registered bad member", NodeRegistered, &NodeRegisteredData{Member: "M 3"}, "data.member"},
		{"registered bad slot", NodeRegistered, &NodeRegisteredData{Slot: -1}, "data.slot"},
		{"removed", NodeRemoved, &NodeRemovedData{}, ""},
		{"removed control char", NodeRemoved, &NodeRemovedData{Reason: "a\x00b"}, "data.reason"},
		{"desired cycle", NodePowerDesired, &PowerDesiredData{State: PowerCycle, Force: true}, ""},
		{"observed cycle", NodePowerObserved, &PowerObservedData{State: PowerCycle}, "data.state"},
		{"observed on", NodePowerObserved, &PowerObservedData{State: PowerOn}, ""},
		{"started", ActionStarted, &ActionStartedData{Action: "a1", Reconciler: "power", Operation: "power.off"}, ""},
		{"started no action", ActionStarted, &ActionStartedData{Reconciler: "power", Operation: "power.off"}, "data.action"},
		{"started bad reconciler", ActionStarted, &ActionStartedData{Action: "a", Reconciler: "", Operation: "x"}, "data.reconciler"},
		{"succeeded", ActionSucceeded, &ActionSucceededData{Action: "a1"}, ""},
		{"failed no reason", ActionFailed, &ActionFailedData{Action: "a1"}, "data.reason"},
		{"failed long reason", ActionFailed, &ActionFailedData{Action: "a1", Reason: strings.Repeat("x", 2000)}, "data.reason"},
		{"joined", MemberJoined, &MemberJoinedData{Address: "m2", Voter: true}, ""},
		{"joined no address", MemberJoined, &MemberJoinedData{}, "data.address"},
		{"left", MemberLeft, &MemberLeftData{Reason: "removed"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(src, tt.typ, "x1", tt.p)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("New error = %v, want a FieldError on %q", err, tt.field)
			}
		})
	}
}

func TestNATSSubject(t *testing.T) {
	ev := Event{Type: NodePowerObserved, Subject: "n3"}
	if got, want := NATSSubject("rack1", ev), "racklet.rack1.events.node.power.observed.n3"; got != want {
		t.Fatalf("NATSSubject = %q, want %q", got, want)
	}
	if got := NATSWildcard("rack1"); got != "racklet.rack1.events.>" {
		t.Fatalf("NATSWildcard = %q", got)
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{"n3": true, "a-b-0": true, "": false, "N3": false, "a_b": false, "a.b": false, strings.Repeat("a", 63): true, strings.Repeat("a", 64): false} {
		if got := ValidName(s); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestTimeIsUTC(t *testing.T) {
	ev := validEvent(t)
	if ev.Time.Location() != time.UTC {
		t.Fatalf("time %v is not UTC", ev.Time)
	}
}

func TestFitText(t *testing.T) {
	long := strings.Repeat("é", 700) // 1400 bytes
	cases := map[string]struct{ in, want string }{
		"short":             {"bmc timeout", "bmc timeout"},
		"control chars":     {"a\nb\x00c\td", "a b c\td"},
		"invalid utf-8":     {"a\xffb", "a?b"},
		"cut at a rune":     {long, strings.Repeat("é", 500) + "…"},
		"empty stays empty": {"", ""},
	}
	for name, c := range cases {
		got := FitText(c.in)
		if got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
		if err := validateText("data.reason", got, false); err != nil {
			t.Errorf("%s: the fitted text does not validate: %v", name, err)
		}
	}
}
