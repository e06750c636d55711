package firmware

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
)

// Why Verify rejects an image; check with errors.Is. ErrDigestMismatch
// (also the device's refusal of a received image, see imageregs.go) and
// ErrManifest are the others.
var (
	// ErrBadSignature: the manifest's signature does not verify with the
	// key it names.
	ErrBadSignature = errors.New("firmware: bad signature")
	// ErrUnknownKey: the manifest names a key that is not trusted.
	ErrUnknownKey = errors.New("firmware: unknown signing key")
	// ErrWrongComponent: the image is for another component.
	ErrWrongComponent = errors.New("firmware: wrong component")
)

// Sign makes the manifest of image with fields f, signed with key.
func Sign(image []byte, f ManifestFields, key ed25519.PrivateKey) (Manifest, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Manifest{}, fmt.Errorf("signing: %w: private key is %d bytes", ErrKey, len(key))
	}
	if len(image) == 0 || len(image) > f.Component.MaxSize() {
		return Manifest{}, fmt.Errorf("signing: %w: image is %d bytes, want 1..%d", ErrManifest, len(image), f.Component.MaxSize())
	}
	m := Manifest{
		ManifestFields: f,
		Size:           uint32(len(image)),
		SHA256:         sha256.Sum256(image),
		KeyID:          KeyIDOf(key.Public().(ed25519.PublicKey)),
	}
	m.Signature = ed25519.Sign(key, m.SigningBytes())
	if err := m.Check(); err != nil {
		return Manifest{}, fmt.Errorf("signing: %w", err)
	}
	return m, nil
}

// Verify checks that image is what m describes for component want: m is
// well formed (ErrManifest), signed by a key in trusted (ErrUnknownKey)
// with a good signature (ErrBadSignature), for want (ErrWrongComponent),
// and image has m's size and SHA-256 (ErrDigestMismatch).
func Verify(image []byte, m Manifest, trusted Keyring, want Component) error {
	if err := m.Check(); err != nil {
		return fmt.Errorf("verifying image: %w", err)
	}
	pub, ok := trusted[m.KeyID]
	if !ok {
		return fmt.Errorf("verifying image: %w: key %s is not trusted", ErrUnknownKey, m.KeyID)
	}
	if !ed25519.Verify(pub, m.SigningBytes(), m.Signature) {
		return fmt.Errorf("verifying image: %w: manifest not signed by key %s", ErrBadSignature, m.KeyID)
	}
	if m.Component != want {
		return fmt.Errorf("verifying image: %w: image is for the %s, not the %s", ErrWrongComponent, m.Component, want)
	}
	if uint64(len(image)) != uint64(m.Size) {
		return fmt.Errorf("verifying image: %w: image is %d bytes, manifest says %d", ErrDigestMismatch, len(image), m.Size)
	}
	if sum := sha256.Sum256(image); subtle.ConstantTimeCompare(sum[:], m.SHA256[:]) != 1 {
		return fmt.Errorf("verifying image: %w: sha256 %x, manifest says %x", ErrDigestMismatch, sum, m.SHA256)
	}
	return nil
}
