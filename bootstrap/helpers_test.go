package bootstrap

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/firmware"
)

// testServer is an HTTPS server that plays both the image server and the
// control plane's stage route.
type testServer struct {
	*httptest.Server
	mu      sync.Mutex
	files   map[string][]byte // path → body
	gets    map[string]int    // path → GET count
	reports map[string][]Report
	status  int // if set, the stage route answers this
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	s := &testServer{files: map[string][]byte{}, gets: map[string]int{}, reports: map[string][]Report{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /images/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b, ok := s.files[r.URL.Path]
		s.gets[r.URL.Path]++
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /v1/nodes/{node}/boot/stages", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want JSON", http.StatusUnsupportedMediaType)
			return
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		var rep Report
		if err := dec.Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := rep.Validate(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		status := s.status
		s.reports[r.PathValue("node")] = append(s.reports[r.PathValue("node")], rep)
		s.mu.Unlock()
		if status != 0 {
			http.Error(w, "refused by the test", status)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	s.Server = httptest.NewUnstartedServer(mux)
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) put(path string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = b
}

func (s *testServer) getCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[path]
}

func (s *testServer) stages(node string) []Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Report(nil), s.reports[node]...)
}

// pool trusts the server's certificate.
func (s *testServer) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}

// caPEM is the server's certificate as a CA file.
func (s *testServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// signedImage is a boot image and its manifest.
type signedImage struct {
	boot     *BootImage
	image    []byte
	manifest []byte
	m        firmware.Manifest
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// sign makes a signed boot image for component c.
func sign(t *testing.T, key ed25519.PrivateKey, c firmware.Component, boot *BootImage) signedImage {
	t.Helper()
	image, err := EncodeImage(boot)
	if err != nil {
		t.Fatal(err)
	}
	m, err := firmware.Sign(image, firmware.ManifestFields{Component: c, Version: firmware.FirmwareVersion{Major: 1, Minor: 2, Patch: 3}, SecurityVersion: 1}, key)
	if err != nil {
		t.Fatal(err)
	}
	mj, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return signedImage{boot: boot, image: image, manifest: mj, m: m}
}

func testBootImage() *BootImage {
	return &BootImage{
		Kernel:  bytes.Repeat([]byte("KERNEL"), 1000),
		Initrd:  bytes.Repeat([]byte("INITRD"), 500),
		Cmdline: `console=ttyS0 root=/dev/ram0 racklet.node=n3 quiet`,
	}
}

// serve puts img (and its manifest) at path on s.
func (s *testServer) serve(path string, img signedImage) string {
	s.put(path, img.image)
	s.put(path+firmware.ManifestSuffix, img.manifest)
	return s.URL + path
}

// closedURL is an https URL on a loopback port nobody listens on.
func closedURL(t *testing.T, path string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr + path
}

// recordingBooter is the kexec fake: it records what it was asked to boot.
type recordingBooter struct {
	mu    sync.Mutex
	calls []*BootImage
	err   error
}

func (r *recordingBooter) Boot(ctx context.Context, img *BootImage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, img)
	return r.err
}

func (r *recordingBooter) booted() []*BootImage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*BootImage(nil), r.calls...)
}

// fastRetry keeps the tests' retries short.
var fastRetry = Retry{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}

// writeTrustDir writes a trust directory: the CA and the keys.
func writeTrustDir(t *testing.T, ca []byte, keys ...ed25519.PublicKey) string {
	t.Helper()
	dir := t.TempDir()
	if ca != nil {
		if err := os.WriteFile(filepath.Join(dir, CAFile), ca, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(keys) > 0 {
		kd := filepath.Join(dir, KeysDir)
		if err := os.Mkdir(kd, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			der, err := x509.MarshalPKIXPublicKey(k)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(kd, fmt.Sprintf("key%d.pub", i))
			if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// stageList renders reports compactly for comparisons: "bootstrap",
// "image-verified", "bootstrap!" (failed).
func stageList(rs []Report) string {
	var s []string
	for _, r := range rs {
		st := string(r.Stage)
		if r.Failed {
			st += "!"
		}
		s = append(s, st)
	}
	return strings.Join(s, ",")
}

func wantErrIs(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want one matching %v", err, want)
	}
}
