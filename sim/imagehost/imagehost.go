// Package imagehost serves signed OS images over HTTPS on loopback for
// simulated racks (tests, chaos runs): an httptest TLS server with its own
// CA, an ed25519 signing key, and images published with their manifests
// (path + firmware.ManifestSuffix), as a real image server would hold them.
// Files can also be put as they are, to serve broken images and manifests.
package imagehost

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
)

// Host is a running image server. Safe for concurrent use.
type Host struct {
	srv *httptest.Server
	key ed25519.PrivateKey

	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
}

// Image is what a boot spec names: the image's URL, digest and the id of
// the key that signed its manifest.
type Image struct {
	URL    string
	Digest string
	KeyID  string
}

// New starts a host with a fresh signing key. Close it when done.
func New() (*Host, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("imagehost: generating a key: %w", err)
	}
	h := &Host{key: key, files: map[string][]byte{}, hits: map[string]int{}}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(h.serve))
	return h, nil
}

func (h *Host) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	b, ok := h.files[r.URL.Path]
	h.hits[r.URL.Path]++
	h.mu.Unlock()
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(b)
}

// Close stops the server.
func (h *Host) Close() { h.srv.Close() }

// Roots is a pool holding the server's certificate, for the boot
// reconciler's RootCAs.
func (h *Host) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(h.srv.Certificate())
	return p
}

// Key is the signing key.
func (h *Host) Key() ed25519.PrivateKey { return h.key }

// KeyID is the signing key's id.
func (h *Host) KeyID() string { return firmware.KeyIDOf(h.key.Public().(ed25519.PublicKey)).String() }

// Keyring trusts the host's signing key.
func (h *Host) Keyring() firmware.Keyring {
	return firmware.NewKeyring(h.key.Public().(ed25519.PublicKey))
}

// URL is the https URL of path.
func (h *Host) URL(path string) string { return h.srv.URL + "/" + strings.TrimPrefix(path, "/") }

// Put serves b at path as it is.
func (h *Host) Put(path string, b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files["/"+strings.TrimPrefix(path, "/")] = append([]byte(nil), b...)
}

// Hits counts the requests for path.
func (h *Host) Hits(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits["/"+strings.TrimPrefix(path, "/")]
}

// Publish serves image at path with its manifest (component os) signed by
// key (the host's if nil) at path + firmware.ManifestSuffix.
func (h *Host) Publish(path string, image []byte, key ed25519.PrivateKey) (Image, error) {
	return h.PublishFor(path, image, key, firmware.ComponentOS)
}

// PublishFor is Publish for any component (a wrong one makes a bad boot
// image).
func (h *Host) PublishFor(path string, image []byte, key ed25519.PrivateKey, c firmware.Component) (Image, error) {
	if key == nil {
		key = h.key
	}
	m, err := firmware.Sign(image, firmware.ManifestFields{Component: c, Version: firmware.FirmwareVersion{Major: 1}, SecurityVersion: 1}, key)
	if err != nil {
		return Image{}, err
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return Image{}, err
	}
	h.Put(path, image)
	h.Put(firmware.ManifestPath(path), mb)
	sum := sha256.Sum256(image)
	return Image{URL: h.URL(path), Digest: events.DigestPrefix + hex.EncodeToString(sum[:]), KeyID: m.KeyID.String()}, nil
}

// Spec is the boot spec of img for a network boot.
func (img Image) Spec() *events.BootDesiredData {
	return &events.BootDesiredData{Source: events.BootNetwork, Image: img.URL, Digest: img.Digest, KeyID: img.KeyID}
}
