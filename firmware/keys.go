package firmware

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Signing keys are ed25519, stored in the formats OpenSSL and Go's crypto
// libraries read and write: the private key as a PEM "PRIVATE KEY" block
// holding PKCS#8 (what `openssl genpkey -algorithm ed25519` writes), in a
// file only its owner may read (mode 0600); the public key as a PEM
// "PUBLIC KEY" block holding PKIX SubjectPublicKeyInfo (`openssl pkey
// -pubout`).

// ErrKey: a key file that cannot be used (not PEM, not ed25519, or a
// private key readable by others).
var ErrKey = errors.New("firmware: unusable key")

// KeyID names a public key: the first 8 bytes of the SHA-256 of the raw
// 32-byte ed25519 public key, written as 16 lowercase hex digits.
type KeyID [8]byte

// KeyIDOf is the id of a public key.
func KeyIDOf(pub ed25519.PublicKey) KeyID {
	sum := sha256.Sum256(pub)
	return KeyID(sum[:8])
}

func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// ParseKeyID parses 16 lowercase hex digits. Errors match ErrManifest.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	return id, decodeHex(id[:], s, "key id")
}

// Keyring holds the public keys trusted to sign firmware, by id.
type Keyring map[KeyID]ed25519.PublicKey

// NewKeyring trusts the keys given.
func NewKeyring(keys ...ed25519.PublicKey) Keyring {
	k := Keyring{}
	for _, pub := range keys {
		k[KeyIDOf(pub)] = pub
	}
	return k
}

// Key file names written by WriteKeyPair.
const (
	PrivateKeyFile = "firmware-signing.key"
	PublicKeyFile  = "firmware-signing.pub"
)

// WriteKeyPair writes a key pair into dir as PrivateKeyFile (0600) and
// PublicKeyFile (0644). It refuses to replace existing files.
func WriteKeyPair(dir string, priv ed25519.PrivateKey) (privPath, pubPath string, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", fmt.Errorf("encoding private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return "", "", fmt.Errorf("encoding public key: %w", err)
	}
	privPath, pubPath = filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile)
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return "", "", err
	}
	return privPath, pubPath, nil
}

// writeNew creates path with data and mode; it fails if path exists.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing key %s: %w", path, err)
	}
	return nil
}

// pemBlock reads the one PEM block of type typ in path.
func pemBlock(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("reading key %s: %w: no PEM %q block", path, ErrKey, typ)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, fmt.Errorf("reading key %s: %w: more than one PEM block", path, ErrKey)
	}
	return blk.Bytes, nil
}

// ReadPrivateKey reads an ed25519 private key (PEM PKCS#8). Like ssh, it
// refuses a file that its group or others may access.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("reading key %s: %w: mode %04o lets others read it, want 0600", path, ErrKey, st.Mode().Perm())
	}
	der, err := pemBlock(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w: %v", path, ErrKey, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("reading key %s: %w: %T is not ed25519", path, ErrKey, k)
	}
	return priv, nil
}

// ReadPublicKey reads an ed25519 public key (PEM PKIX).
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	der, err := pemBlock(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w: %v", path, ErrKey, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("reading key %s: %w: %T is not ed25519", path, ErrKey, k)
	}
	return pub, nil
}
