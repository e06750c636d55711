package bootstrap

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/racklet/rack/firmware"
)

// Trust is what the boot environment trusts, read from the initramfs.
type Trust struct {
	// Keys may sign OS images.
	Keys firmware.Keyring
	// CAs are the roots HTTPS servers' certificates must chain to.
	CAs *x509.CertPool
	// Epoch is the earliest time the clock may show (zero: none). A node
	// without a real-time clock boots in 1970, when no certificate is
	// valid yet; TLS then checks certificates at Epoch instead.
	Epoch time.Time
}

// LoadTrust reads the trust anchors in dir (DefaultTrustDir if empty):
// dir/CAFile (required), dir/KeysDir/*.pub (at least one) and dir/EpochFile
// (optional). If only is set, the keyring is narrowed to that key, which
// must be among them. Errors match ErrConfig or firmware.ErrKey.
func LoadTrust(dir string, only *firmware.KeyID) (Trust, error) {
	if dir == "" {
		dir = DefaultTrustDir
	}
	var t Trust
	var err error
	if t.CAs, err = LoadCAs(dir); err != nil {
		return Trust{}, err
	}

	keysDir := filepath.Join(dir, KeysDir)
	entries, err := os.ReadDir(keysDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Trust{}, fmt.Errorf("%w: reading the trusted keys: %v", ErrConfig, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".pub") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	t.Keys = firmware.Keyring{}
	for _, n := range names {
		pub, err := firmware.ReadPublicKey(filepath.Join(keysDir, n))
		if err != nil {
			return Trust{}, fmt.Errorf("reading the trusted keys: %w", err)
		}
		t.Keys[firmware.KeyIDOf(pub)] = pub
	}
	if len(t.Keys) == 0 {
		return Trust{}, fmt.Errorf("%w: no trusted image signing keys (*.pub) in %s", ErrConfig, keysDir)
	}
	if only != nil {
		pub, ok := t.Keys[*only]
		if !ok {
			return Trust{}, fmt.Errorf("%w: key %s (racklet.key) is not among the trusted keys in %s", ErrConfig, *only, keysDir)
		}
		t.Keys = firmware.Keyring{*only: pub}
	}

	b, err := os.ReadFile(filepath.Join(dir, EpochFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return Trust{}, fmt.Errorf("%w: reading the epoch: %v", ErrConfig, err)
	default:
		if t.Epoch, err = ParseEpoch(b); err != nil {
			return Trust{}, err
		}
	}
	return t, nil
}

// LoadCAs reads dir/CAFile (dir DefaultTrustDir if empty): the CA
// certificates HTTPS servers must chain to.
func LoadCAs(dir string) (*x509.CertPool, error) {
	if dir == "" {
		dir = DefaultTrustDir
	}
	pem, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the CA certificates: %v", ErrConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrConfig, filepath.Join(dir, CAFile))
	}
	return pool, nil
}

// ParseEpoch parses an epoch file: one RFC 3339 time, optionally followed
// by a newline.
func ParseEpoch(b []byte) (time.Time, error) {
	s := strings.TrimSuffix(string(b), "\n")
	if len(s) > 64 {
		return time.Time{}, fmt.Errorf("%w: epoch is longer than 64 bytes", ErrConfig)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: epoch %q is not an RFC 3339 time", ErrConfig, clip(s))
	}
	return t.UTC(), nil
}

// now is the time TLS checks certificates at: the clock, or the epoch if
// the clock is behind it.
func (t Trust) now() time.Time {
	n := time.Now()
	if n.Before(t.Epoch) {
		return t.Epoch
	}
	return n
}
