package firmware

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Component is what a firmware image is for.
type Component string

const (
	ComponentBMC Component = "bmc"
	ComponentRMC Component = "rmc"
	// ComponentOS is a node's operating system image (kernel and
	// initramfs), verified by the bootstrap environment before it boots.
	ComponentOS Component = "os"
)

// Valid reports whether c is a component the rack knows.
func (c Component) Valid() bool { return c == ComponentBMC || c == ComponentRMC || c == ComponentOS }

// MaxImageSize bounds a BMC or RMC firmware image (and Manifest.Size): 16 MiB.
const MaxImageSize = 16 << 20

// MaxOSImageSize bounds an OS image: 1 GiB.
const MaxOSImageSize = 1 << 30

// MaxSize is the largest image the component takes.
func (c Component) MaxSize() int {
	if c == ComponentOS {
		return MaxOSImageSize
	}
	return MaxImageSize
}

// ManifestSuffix is appended to an image's path to name its manifest.
const ManifestSuffix = ".manifest.json"

// ErrManifest: a manifest that is not well formed (decoding, or a field
// out of range before signing or verifying).
var ErrManifest = errors.New("firmware: invalid manifest")

// ManifestFields are the fields of a manifest the signer chooses; Sign
// adds the rest.
type ManifestFields struct {
	Component       Component
	Version         FirmwareVersion
	SecurityVersion uint32
}

// Manifest describes a signed firmware image. On disk it is JSON beside
// the image (path + ManifestSuffix):
//
//	{
//	  "component": "bmc",
//	  "version": "1.2.3",
//	  "securityVersion": 4,
//	  "size": 65536,
//	  "sha256": "<64 lowercase hex digits>",
//	  "keyId": "<16 lowercase hex digits>",
//	  "signature": "<ed25519 signature, standard base64, 88 characters>"
//	}
//
// The signature is ed25519 over SigningBytes, a canonical binary encoding
// of every other field, so the JSON's spelling does not matter to it.
type Manifest struct {
	ManifestFields
	Size      uint32
	SHA256    [sha256.Size]byte
	KeyID     KeyID
	Signature []byte
}

// manifestJSON is the manifest on disk. Pointers tell a missing field.
type manifestJSON struct {
	Component       *string `json:"component"`
	Version         *string `json:"version"`
	SecurityVersion *uint32 `json:"securityVersion"`
	Size            *uint32 `json:"size"`
	SHA256          *string `json:"sha256"`
	KeyID           *string `json:"keyId"`
	Signature       *string `json:"signature"`
}

// signingDomain separates manifest signatures from any other use of a key.
const signingDomain = "racklet firmware manifest v1\x00"

// SigningBytes is the canonical encoding of the signed fields: the domain
// string "racklet firmware manifest v1" and a NUL byte, the component's
// length (1 byte) and its bytes, major, minor and patch (uint16 each),
// security version, size (uint32 each), SHA-256 (32 bytes), key id (8
// bytes); integers little-endian.
func (m *Manifest) SigningBytes() []byte {
	b := []byte(signingDomain)
	b = append(b, byte(len(m.Component)))
	b = append(b, m.Component...)
	b = append(b, m.Version.Encode()...)
	b = le.AppendUint32(b, m.SecurityVersion)
	b = le.AppendUint32(b, m.Size)
	b = append(b, m.SHA256[:]...)
	return append(b, m.KeyID[:]...)
}

// Check checks the fields' ranges (not the signature).
func (m *Manifest) Check() error {
	switch {
	case !m.Component.Valid():
		return fmt.Errorf("%w: component %q is not bmc, rmc or os", ErrManifest, m.Component)
	case m.Size == 0 || int64(m.Size) > int64(m.Component.MaxSize()):
		return fmt.Errorf("%w: size %d is not in 1..%d", ErrManifest, m.Size, m.Component.MaxSize())
	case len(m.Signature) != 64:
		return fmt.Errorf("%w: signature is %d bytes, want 64", ErrManifest, len(m.Signature))
	}
	return nil
}

// MarshalJSON encodes the manifest as it is stored.
func (m Manifest) MarshalJSON() ([]byte, error) {
	if err := m.Check(); err != nil {
		return nil, err
	}
	c, v, d, k, s := string(m.Component), m.Version.String(), hex.EncodeToString(m.SHA256[:]), m.KeyID.String(), base64.StdEncoding.EncodeToString(m.Signature)
	return json.Marshal(manifestJSON{&c, &v, &m.SecurityVersion, &m.Size, &d, &k, &s})
}

// UnmarshalJSON decodes strictly, as DecodeManifest does.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	got, err := DecodeManifest(bytes.NewReader(b))
	if err != nil {
		return err
	}
	*m = got
	return nil
}

// DecodeManifest reads one manifest, strictly: one JSON object with every
// field present once, spelt exactly, no other fields and nothing after it;
// the component bmc, rmc or os; the version three decimal numbers (0..65535,
// no leading zeros); the security version and size JSON integers (size
// 1..MaxImageSize); the digest and key id lowercase hex of the right
// length; the signature canonical standard base64 of 64 bytes. Errors
// match ErrManifest.
func DecodeManifest(r io.Reader) (Manifest, error) {
	raw, err := manifestFields(r)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	var (
		m                 Manifest
		comp, ver, digest string
		keyID, sig        string
	)
	for _, f := range []struct {
		name string
		dst  any
	}{
		{"component", &comp}, {"version", &ver}, {"securityVersion", &m.SecurityVersion},
		{"size", &m.Size}, {"sha256", &digest}, {"keyId", &keyID}, {"signature", &sig},
	} {
		v, ok := raw[f.name]
		if !ok {
			return Manifest{}, fmt.Errorf("%w: field %q is missing", ErrManifest, f.name)
		}
		if err := json.Unmarshal(v, f.dst); err != nil || bytes.Equal(v, []byte("null")) {
			return Manifest{}, fmt.Errorf("%w: field %q is not a %s", ErrManifest, f.name, reflectName(f.dst))
		}
	}
	m.Component = Component(comp)
	if m.Version, err = ParseVersion(ver); err != nil {
		return Manifest{}, err
	}
	if err := decodeHex(m.SHA256[:], digest, "sha256"); err != nil {
		return Manifest{}, err
	}
	if m.KeyID, err = ParseKeyID(keyID); err != nil {
		return Manifest{}, err
	}
	m.Signature, err = base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil || base64.StdEncoding.EncodeToString(m.Signature) != sig {
		return Manifest{}, fmt.Errorf("%w: signature is not canonical standard base64", ErrManifest)
	}
	if err := m.Check(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// reflectName names the JSON type a field wants.
func reflectName(dst any) string {
	if _, ok := dst.(*string); ok {
		return "string"
	}
	return "uint32"
}

// manifestFields reads one JSON object of known, distinct keys, and
// nothing after it.
func manifestFields(r io.Reader) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(io.LimitReader(r, 1<<16))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	raw := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		if !slices.Contains(manifestKeys, k) {
			return nil, fmt.Errorf("unknown field %q", k)
		}
		if _, dup := raw[k]; dup {
			return nil, fmt.Errorf("field %q twice", k)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		raw[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the manifest object")
	}
	return raw, nil
}

var manifestKeys = []string{"component", "version", "securityVersion", "size", "sha256", "keyId", "signature"}

// decodeHex decodes exactly len(dst) bytes of lowercase hex.
func decodeHex(dst []byte, s, what string) error {
	if len(s) != 2*len(dst) || strings.ToLower(s) != s {
		return fmt.Errorf("%w: %s is not %d lowercase hex digits", ErrManifest, what, 2*len(dst))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("%w: %s is not %d lowercase hex digits", ErrManifest, what, 2*len(dst))
	}
	return nil
}

// ParseVersion parses "major.minor.patch", each a decimal number in
// 0..65535 without sign or leading zeros. Errors match ErrManifest.
func ParseVersion(s string) (FirmwareVersion, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return FirmwareVersion{}, fmt.Errorf("%w: version %q is not major.minor.patch", ErrManifest, s)
	}
	var n [3]uint16
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 16)
		if err != nil || strconv.FormatUint(v, 10) != p {
			return FirmwareVersion{}, fmt.Errorf("%w: version %q is not major.minor.patch (numbers 0..65535)", ErrManifest, s)
		}
		n[i] = uint16(v)
	}
	return FirmwareVersion{n[0], n[1], n[2]}, nil
}

// ManifestPath is where the manifest of the image at path is stored.
func ManifestPath(image string) string { return image + ManifestSuffix }

// ReadManifest reads and decodes the manifest at path.
func ReadManifest(path string) (Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("reading manifest: %w", err)
	}
	defer f.Close()
	m, err := DecodeManifest(f)
	if err != nil {
		return Manifest{}, fmt.Errorf("reading manifest %s: %w", path, err)
	}
	return m, nil
}

// WriteManifest writes m to path as indented JSON (mode 0644), replacing
// any file there.
func WriteManifest(path string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}
