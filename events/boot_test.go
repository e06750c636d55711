package events

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

const (
	goodURL    = "https://images.rack/os/1.4.2.img"
	goodDigest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	goodKey    = "0123456789abcdef"
)

func TestBootPayloads(t *testing.T) {
	for _, tt := range []struct {
		name  string
		p     Payload
		field string // "" if valid
	}{
		{"network", &BootDesiredData{Source: BootNetwork, Image: goodURL, Digest: goodDigest, KeyID: goodKey}, ""},
		{"local bare", &BootDesiredData{Source: BootLocal}, ""},
		{"local with image", &BootDesiredData{Source: BootLocal, Image: goodURL, Digest: goodDigest, KeyID: goodKey}, ""},
		{"local half", &BootDesiredData{Source: BootLocal, Image: goodURL}, "data.digest"},
		{"no source", &BootDesiredData{Image: goodURL, Digest: goodDigest, KeyID: goodKey}, "data.source"},
		{"usb", &BootDesiredData{Source: "usb"}, "data.source"},
		{"network bare", &BootDesiredData{Source: BootNetwork}, "data.image"},
		{"http", &BootDesiredData{Source: BootNetwork, Image: "http://images.rack/os.img", Digest: goodDigest, KeyID: goodKey}, "data.image"},
		{"query", &BootDesiredData{Source: BootNetwork, Image: goodURL + "?v=1", Digest: goodDigest, KeyID: goodKey}, "data.image"},
		{"fragment", &BootDesiredData{Source: BootNetwork, Image: goodURL + "#x", Digest: goodDigest, KeyID: goodKey}, "data.image"},
		{"user info", &BootDesiredData{Source: BootNetwork, Image: "https://u:p@images.rack/os.img", Digest: goodDigest, KeyID: goodKey}, "data.image"},
		{"no host", &BootDesiredData{Source: BootNetwork, Image: "https:///os.img", Digest: goodDigest, KeyID: goodKey}, "data.image"},
		{"directory", &BootDesiredData{Source: BootNetwork, Image: "https://images.rack/os/", Digest: goodDigest, KeyID: goodKey}, "data.image"},
		{"space", &BootDesiredData{Source: BootNetwork, Image: "https://images.rack/o s.img", Digest: goodDigest, KeyID: goodKey}, "data.image"},
		{"long", &BootDesiredData{Source: BootNetwork, Image: "https://images.rack/" + strings.Repeat("a", MaxURL), Digest: goodDigest, KeyID: goodKey}, "data.image"},
		{"digest upper", &BootDesiredData{Source: BootNetwork, Image: goodURL, Digest: strings.ToUpper(goodDigest), KeyID: goodKey}, "data.digest"},
		{"digest md5", &BootDesiredData{Source: BootNetwork, Image: goodURL, Digest: "md5:d41d8cd98f00b204e9800998ecf8427e", KeyID: goodKey}, "data.digest"},
		{"digest short", &BootDesiredData{Source: BootNetwork, Image: goodURL, Digest: goodDigest[:70], KeyID: goodKey}, "data.digest"},
		{"key short", &BootDesiredData{Source: BootNetwork, Image: goodURL, Digest: goodDigest, KeyID: "0123"}, "data.keyId"},
		{"key not hex", &BootDesiredData{Source: BootNetwork, Image: goodURL, Digest: goodDigest, KeyID: "0123456789abcdeg"}, "data.keyId"},
		{"started", &BootStartedData{Target: 3, Source: BootNetwork}, ""},
		{"started no target", &BootStartedData{Source: BootNetwork}, "data.target"},
		{"stage", &BootStageData{Stage: BootStageImageVerified, Target: 3, ImageDigest: goodDigest, Via: ViaNode}, ""},
		{"stage off", &BootStageData{Stage: BootStageOff}, "data.stage"},
		{"stage none", &BootStageData{}, "data.stage"},
		{"stage via", &BootStageData{Stage: BootStageOS, Via: "smoke"}, "data.via"},
		{"stage digest", &BootStageData{Stage: BootStageOS, ImageDigest: "sha256:x"}, "data.imageDigest"},
		{"failed", &BootFailedData{Stage: BootStageBootstrap, Reason: "timeout"}, ""},
		{"failed off", &BootFailedData{Stage: BootStageOff, Reason: "cycle refused"}, ""},
		{"failed no reason", &BootFailedData{Stage: BootStageOS}, "data.reason"},
		{"failed stage", &BootFailedData{Stage: "kernel", Reason: "x"}, "data.stage"},
		{"refused", &BootRefusedData{Reason: "bad signature", Target: 4}, ""},
		{"refused no target", &BootRefusedData{Reason: "bad signature"}, "data.target"},
		{"refused control", &BootRefusedData{Reason: "a\x00b", Target: 4}, "data.reason"},
		{"inserted", &NodeInsertedData{Slot: 3}, ""},
		{"inserted slot 0", &NodeInsertedData{}, "data.slot"},
		{"inserted slot big", &NodeInsertedData{Slot: 1025}, "data.slot"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			var fe *FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
				t.Fatalf("Validate = %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
	for _, typ := range []Type{NodeBootDesired, NodeBootStarted, NodeBootStage, NodeBootFailed, NodeBootRefused, NodeInserted} {
		if !Known(typ) {
			t.Errorf("%s is not registered", typ)
		}
	}
}

// FuzzBootEvent decodes boot events: never a panic, every error a
// validation error, and what is accepted keeps the boot invariants (an
// https image URL without query, a sha256 digest, a 16 hex key id, a known
// stage).
func FuzzBootEvent(f *testing.F) {
	for _, c := range []struct {
		t Type
		p Payload
	}{
		{NodeBootDesired, &BootDesiredData{Source: BootNetwork, Image: goodURL, Digest: goodDigest, KeyID: goodKey}},
		{NodeBootDesired, &BootDesiredData{Source: BootLocal}},
		{NodeBootStarted, &BootStartedData{Target: 9, Source: BootLocal}},
		{NodeBootStage, &BootStageData{Stage: BootStageReady, Target: 9, Via: ViaBMC}},
		{NodeBootFailed, &BootFailedData{Stage: BootStageBootstrap, Reason: "no progress", Target: 9}},
		{NodeBootRefused, &BootRefusedData{Reason: "bad signature", Target: 9}},
		{NodeInserted, &NodeInsertedData{Slot: 7}},
	} {
		ev, err := New(Source("rack1", "m1"), c.t, "n3", c.p)
		if err != nil {
			f.Fatal(err)
		}
		b, err := Encode(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode error %v is not ErrInvalid", err)
			}
			return
		}
		p, err := ev.Payload()
		if err != nil {
			t.Fatalf("a decoded event's payload: %v", err)
		}
		switch d := p.(type) {
		case *BootDesiredData:
			if !d.Source.Valid() {
				t.Fatalf("source %q accepted", d.Source)
			}
			if d.Image != "" {
				u, err := url.Parse(d.Image)
				if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.User != nil {
					t.Fatalf("image %q accepted", d.Image)
				}
				if !strings.HasPrefix(d.Digest, DigestPrefix) || len(d.Digest) != len(DigestPrefix)+64 || len(d.KeyID) != 16 {
					t.Fatalf("digest %q key %q accepted", d.Digest, d.KeyID)
				}
			} else if d.Source == BootNetwork {
				t.Fatal("a network boot without an image accepted")
			}
		case *BootStageData:
			if !d.Stage.Valid() {
				t.Fatalf("stage %q accepted", d.Stage)
			}
		case *BootFailedData:
			if !d.Stage.Valid() && d.Stage != BootStageOff || d.Reason == "" {
				t.Fatalf("failure %+v accepted", d)
			}
		}
	})
}
