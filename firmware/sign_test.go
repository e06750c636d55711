package firmware

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKey is a deterministic key from a seed byte.
func testKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

var testFields = ManifestFields{Component: ComponentBMC, Version: FirmwareVersion{1, 2, 3}, SecurityVersion: 4}

func TestSignVerify(t *testing.T) {
	key, other := testKey(1), testKey(2)
	image := bytes.Repeat([]byte("racklet firmware "), 100)
	m, err := Sign(image, testFields, key)
	if err != nil {
		t.Fatal(err)
	}
	if m.KeyID != KeyIDOf(key.Public().(ed25519.PublicKey)) || m.Size != uint32(len(image)) {
		t.Fatalf("manifest %+v", m)
	}
	trusted := NewKeyring(key.Public().(ed25519.PublicKey))
	tampered := bytes.Clone(image)
	tampered[100] ^= 1
	resigned := m
	resigned.SecurityVersion = 9 // a field changed after signing
	forged := m
	forged.Signature = ed25519.Sign(other, m.SigningBytes()) // right id, wrong key
	rmc, err := Sign(image, ManifestFields{Component: ComponentRMC, Version: FirmwareVersion{1, 0, 0}}, key)
	if err != nil {
		t.Fatal(err)
	}
	bad := m
	bad.Component = "psu"
	tests := []struct {
		name    string
		image   []byte
		m       Manifest
		trusted Keyring
		want    error
	}{
		{"good", image, m, trusted, nil},
		{"good among several keys", image, m, NewKeyring(other.Public().(ed25519.PublicKey), key.Public().(ed25519.PublicKey)), nil},
		{"tampered image", tampered, m, trusted, ErrDigestMismatch},
		{"truncated image", image[:len(image)-1], m, trusted, ErrDigestMismatch},
		{"field changed after signing", image, resigned, trusted, ErrBadSignature},
		{"signed with another key", image, forged, trusted, ErrBadSignature},
		{"unknown key", image, m, NewKeyring(other.Public().(ed25519.PublicKey)), ErrUnknownKey},
		{"no trusted keys", image, m, nil, ErrUnknownKey},
		{"wrong component", image, rmc, trusted, ErrWrongComponent},
		{"invalid component", image, bad, trusted, ErrManifest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.image, tc.m, tc.trusted, ComponentBMC)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Sign(nil, testFields, key); !errors.Is(err, ErrManifest) {
		t.Errorf("Sign of an empty image: %v", err)
	}
	if _, err := Sign(image, ManifestFields{Component: "gpu"}, key); !errors.Is(err, ErrManifest) {
		t.Errorf("Sign for an unknown component: %v", err)
	}
}

func TestManifestJSON(t *testing.T) {
	image := []byte("image")
	m, err := Sign(image, testFields, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeManifest(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if !bytes.Equal(got.SigningBytes(), m.SigningBytes()) || !bytes.Equal(got.Signature, m.Signature) {
		t.Fatalf("round trip: %+v, want %+v", got, m)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	if fields["version"] != "1.2.3" || fields["component"] != "bmc" || fields["securityVersion"] != 4.0 || len(fields) != 7 {
		t.Errorf("manifest JSON %s", b)
	}
	edit := func(f func(map[string]any)) string {
		c := map[string]any{}
		for k, v := range fields {
			c[k] = v
		}
		f(c)
		out, _ := json.Marshal(c)
		return string(out)
	}
	good := string(b)
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"array", "[]"},
		{"null", "null"},
		{"trailing data", good + " {}"},
		{"duplicate field", strings.Replace(good, `"size":`, `"size":5,"size":`, 1)},
		{"field in other case", strings.Replace(good, `"keyId"`, `"KeyID"`, 1)},
		{"unknown field", edit(func(c map[string]any) { c["extra"] = 1 })},
		{"missing field", edit(func(c map[string]any) { delete(c, "sha256") })},
		{"null field", edit(func(c map[string]any) { c["size"] = nil })},
		{"bad component", edit(func(c map[string]any) { c["component"] = "BMC" })},
		{"version with two parts", edit(func(c map[string]any) { c["version"] = "1.2" })},
		{"version with leading zero", edit(func(c map[string]any) { c["version"] = "1.02.3" })},
		{"version too large", edit(func(c map[string]any) { c["version"] = "1.2.65536" })},
		{"version with sign", edit(func(c map[string]any) { c["version"] = "+1.2.3" })},
		{"negative security version", edit(func(c map[string]any) { c["securityVersion"] = -1 })},
		{"fractional security version", edit(func(c map[string]any) { c["securityVersion"] = 1.5 })},
		{"security version as string", edit(func(c map[string]any) { c["securityVersion"] = "4" })},
		{"size 0", edit(func(c map[string]any) { c["size"] = 0 })},
		{"size too large", edit(func(c map[string]any) { c["size"] = MaxImageSize + 1 })},
		{"upper-case digest", edit(func(c map[string]any) { c["sha256"] = strings.ToUpper(c["sha256"].(string)) })},
		{"short digest", edit(func(c map[string]any) { c["sha256"] = c["sha256"].(string)[2:] })},
		{"short key id", edit(func(c map[string]any) { c["keyId"] = "abcd" })},
		{"signature not base64", edit(func(c map[string]any) { c["signature"] = "!!" })},
		{"short signature", edit(func(c map[string]any) { c["signature"] = "AAAA" })},
		{"unpadded signature", edit(func(c map[string]any) { c["signature"] = strings.TrimRight(c["signature"].(string), "=") })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeManifest(strings.NewReader(tc.in)); !errors.Is(err, ErrManifest) {
				t.Fatalf("DecodeManifest(%s): %v, want ErrManifest", tc.in, err)
			}
		})
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath, err := WriteKeyPair(dir, priv)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(privPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v, %v", st.Mode(), err)
	}
	gotPriv, err := ReadPrivateKey(privPath)
	if err != nil || !gotPriv.Equal(priv) {
		t.Fatalf("ReadPrivateKey: %v", err)
	}
	gotPub, err := ReadPublicKey(pubPath)
	if err != nil || !gotPub.Equal(priv.Public()) {
		t.Fatalf("ReadPublicKey: %v", err)
	}
	if _, _, err := WriteKeyPair(dir, priv); err == nil {
		t.Error("WriteKeyPair replaced existing keys")
	}
	if err := os.Chmod(privPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateKey(privPath); !errors.Is(err, ErrKey) {
		t.Errorf("world-readable private key: %v", err)
	}
	if _, err := ReadPublicKey(privPath); !errors.Is(err, ErrKey) {
		t.Errorf("private key read as public: %v", err)
	}
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateKey(junk); !errors.Is(err, ErrKey) {
		t.Errorf("junk private key: %v", err)
	}
	if id := KeyIDOf(priv.Public().(ed25519.PublicKey)).String(); len(id) != 16 {
		t.Errorf("key id %q", id)
	}
}

func FuzzDecodeManifest(f *testing.F) {
	m, err := Sign([]byte("image"), testFields, testKey(1))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(m)
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"component":"rmc","version":"0.0.0","securityVersion":0,"size":1,"sha256":"` + strings.Repeat("0", 64) + `","keyId":"` + strings.Repeat("a", 16) + `","signature":"` + strings.Repeat("A", 86) + `=="}`))
	f.Add([]byte(`{"component":1}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := DecodeManifest(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrManifest) {
				t.Fatalf("error %v is not ErrManifest", err)
			}
			return
		}
		// What decodes encodes, and decodes again to the same manifest.
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("accepted manifest does not encode: %v", err)
		}
		again, err := DecodeManifest(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("re-encoded manifest %s does not decode: %v", out, err)
		}
		if !bytes.Equal(again.SigningBytes(), m.SigningBytes()) || !bytes.Equal(again.Signature, m.Signature) {
			t.Fatalf("round trip changed the manifest: %+v, %+v", m, again)
		}
	})
}
