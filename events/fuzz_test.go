package events

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every error it returns is
// a validation error, and that whatever it accepts survives a round trip.
func FuzzDecode(f *testing.F) {
	ev, err := New(Source("rack1", "m1"), NodePowerDesired, "n3", &PowerDesiredData{State: PowerOn})
	if err != nil {
		f.Fatal(err)
	}
	ev.Sequence = 7
	seed, _ := Encode(ev)
	f.Add(seed)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"specversion":"1.0","data":null}`))
	f.Add([]byte(`[1,2]`))
	f.Add(bytes.Replace(seed, []byte(`"on"`), []byte(`"cycle"`), 1))
	for _, fs := range firmwareSeeds(f) {
		f.Add(fs)
	}
	for _, ts := range thermalSeeds(f) {
		f.Add(ts)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode error %v is not ErrInvalid", err)
			}
			return
		}
		out, err := Encode(got)
		if err != nil {
			t.Fatalf("Encode of a decoded event: %v", err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if again.ID != got.ID || again.Sequence != got.Sequence || again.Type != got.Type || !again.Time.Equal(got.Time) {
			t.Fatalf("round trip changed the event: %+v vs %+v", again, got)
		}
	})
}
