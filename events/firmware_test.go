package events

import (
	"errors"
	"strings"
	"testing"
)

// firmwareSeeds are encoded firmware events for FuzzDecode's corpus.
func firmwareSeeds(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, c := range []struct {
		t Type
		p Payload
	}{
		{FirmwareDesired, &FirmwareDesiredData{Version: "1.2.3"}},
		{FirmwareObserved, &FirmwareObservedData{Version: "1.0.0", Slot: FirmwareSlotB, Trial: true, SecurityVersion: 4}},
		{FirmwareStep, &FirmwareStepData{Action: "u1", Step: "write", Status: StepStarted, Version: "1.2.3", Attempt: 2, Target: 9}},
		{FirmwareStep, &FirmwareStepData{Action: "u1", Step: "health-check", Status: StepFailed, Version: "1.2.3", Reason: "unit not ready", Retry: true}},
		{FirmwareRefused, &FirmwareRefusedData{Version: "0.9.0", Code: RefusedAntiRollback, Reason: "security version 1 is below 3", Target: 9}},
	} {
		ev, err := New(Source("rack1", "m1"), c.t, "n3-bmc", c.p)
		if err != nil {
			f.Fatal(err)
		}
		b, err := Encode(ev)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestFirmwarePayloads(t *testing.T) {
	long := strings.Repeat("x", maxText+1)
	tests := []struct {
		name  string
		p     Payload
		field string // "" = valid
	}{
		{"desired", &FirmwareDesiredData{Version: "1.2.3"}, ""},
		{"desired max", &FirmwareDesiredData{Version: "65535.0.65535"}, ""},
		{"desired empty", &FirmwareDesiredData{}, "data.version"},
		{"desired two parts", &FirmwareDesiredData{Version: "1.2"}, "data.version"},
		{"desired leading zero", &FirmwareDesiredData{Version: "1.02.3"}, "data.version"},
		{"desired too big", &FirmwareDesiredData{Version: "1.65536.0"}, "data.version"},
		{"desired sign", &FirmwareDesiredData{Version: "+1.2.3"}, "data.version"},
		{"desired v prefix", &FirmwareDesiredData{Version: "v1.2.3"}, "data.version"},
		{"observed", &FirmwareObservedData{Version: "1.0.0", Slot: "a", SecurityVersion: 1}, ""},
		{"observed trial", &FirmwareObservedData{Version: "1.0.0", Slot: "b", Trial: true}, ""},
		{"observed no slot", &FirmwareObservedData{Version: "1.0.0"}, "data.slot"},
		{"observed slot c", &FirmwareObservedData{Version: "1.0.0", Slot: "c"}, "data.slot"},
		{"observed bad version", &FirmwareObservedData{Version: "x", Slot: "a"}, "data.version"},
		{"step started", &FirmwareStepData{Action: "u1", Step: "begin", Status: "started", Version: "1.0.0"}, ""},
		{"step failed", &FirmwareStepData{Action: "u1", Step: "write", Status: "failed", Version: "1.0.0", Reason: "power lost", Retry: true}, ""},
		{"step failed without reason", &FirmwareStepData{Action: "u1", Step: "write", Status: "failed", Version: "1.0.0"}, "data.reason"},
		{"step succeeded with reason", &FirmwareStepData{Action: "u1", Step: "write", Status: "succeeded", Version: "1.0.0", Reason: "x"}, "data.reason"},
		{"step unknown", &FirmwareStepData{Action: "u1", Step: "flash", Status: "started", Version: "1.0.0"}, "data.step"},
		{"step status", &FirmwareStepData{Action: "u1", Step: "begin", Status: "done", Version: "1.0.0"}, "data.status"},
		{"step no action", &FirmwareStepData{Step: "begin", Status: "started", Version: "1.0.0"}, "data.action"},
		{"step no version", &FirmwareStepData{Action: "u1", Step: "begin", Status: "started"}, "data.version"},
		{"step negative attempt", &FirmwareStepData{Action: "u1", Step: "begin", Status: "started", Version: "1.0.0", Attempt: -1}, "data.attempt"},
		{"step reason too long", &FirmwareStepData{Action: "u1", Step: "begin", Status: "failed", Version: "1.0.0", Reason: long}, "data.reason"},
		{"refused", &FirmwareRefusedData{Version: "1.0.0", Code: "signature", Reason: "bad signature"}, ""},
		{"refused unknown code", &FirmwareRefusedData{Version: "1.0.0", Code: "nope", Reason: "x"}, "data.code"},
		{"refused no reason", &FirmwareRefusedData{Version: "1.0.0", Code: "quorum"}, "data.reason"},
		{"refused control character", &FirmwareRefusedData{Version: "1.0.0", Code: "quorum", Reason: "a\nb"}, "data.reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want a FieldError for %s", err, tt.field)
			}
		})
	}
}

// Every firmware event type decodes to its payload after a round trip.
func TestFirmwareRoundTrip(t *testing.T) {
	for _, typ := range []Type{FirmwareDesired, FirmwareObserved, FirmwareStep, FirmwareRefused} {
		if !Known(typ) {
			t.Fatalf("%s is not in the registry", typ)
		}
	}
	ev, err := New(Source("rack1", "m1"), FirmwareStep, "n3-bmc", &FirmwareStepData{Action: "u1", Step: "confirm", Status: StepSucceeded, Version: "2.0.1", Target: 4})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	p, err := back.Payload()
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := p.(*FirmwareStepData); !ok || *d != (FirmwareStepData{Action: "u1", Step: "confirm", Status: StepSucceeded, Version: "2.0.1", Target: 4}) {
		t.Fatalf("round trip gave %#v", p)
	}
	if got := NATSSubject("rack1", back); got != "racklet.rack1.events.firmware.step.n3-bmc" {
		t.Fatalf("NATS subject %s", got)
	}
}
