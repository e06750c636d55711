package boot

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
)

// refusal is a verification failure: the image must not boot. Any other
// error of verify is transient (the host did not answer, a 5xx) and is
// retried.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(format string, args ...any) error { return &refusal{fmt.Errorf(format, args...)} }

// maxManifest bounds a manifest's body.
const maxManifest = 64 << 10

// verifier checks OS images against their signed manifests.
type verifier struct {
	hc      *http.Client
	keyring firmware.Keyring
}

// newHTTPClient returns the client images are fetched with: https only
// (also after redirects), trusting roots (the system's if nil), every
// request bounded by timeout.
func newHTTPClient(roots *x509.CertPool, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: httpsRedirects}
}

func httpsRedirects(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to %s: not https", req.URL.Redacted())
	}
	if len(via) >= 5 {
		return errors.New("more than 5 redirects")
	}
	return nil
}

// verify checks the spec's image: its manifest (at Image +
// firmware.ManifestSuffix) names the spec's key and digest, is signed by
// that key, which the keyring trusts, for an OS image; the image has the
// manifest's size and SHA-256. The image is streamed, never held whole.
func (v *verifier) verify(ctx context.Context, b *state.Boot) error {
	if len(v.keyring) == 0 {
		return refuse("no OS image signing key is trusted (configure the boot reconciler's keyring)")
	}
	m, err := v.manifest(ctx, b.Image+firmware.ManifestSuffix)
	if err != nil {
		return err
	}
	if got := m.KeyID.String(); got != b.KeyID {
		return refuse("the manifest is signed with key %s, the boot spec names key %s", got, b.KeyID)
	}
	if got := events.DigestPrefix + hex.EncodeToString(m.SHA256[:]); got != b.Digest {
		return refuse("%v: the manifest says %s, the boot spec says %s", firmware.ErrDigestMismatch, got, b.Digest)
	}
	// firmware.Verify checks the manifest (form, trusted key, signature,
	// component) before the image: given no image it fails on the size,
	// and only then, once the rest passed.
	if err := firmware.Verify(nil, m, v.keyring, firmware.ComponentOS); err != nil && !errors.Is(err, firmware.ErrDigestMismatch) {
		return &refusal{err}
	}
	size, sum, err := v.digest(ctx, b.Image, int64(m.Size))
	if err != nil {
		return err
	}
	if size != int64(m.Size) {
		return refuse("verifying image: %w: image is %d bytes or more, the manifest says %d", firmware.ErrDigestMismatch, size, m.Size)
	}
	if sum != m.SHA256 {
		return refuse("verifying image: %w: sha256 %x, the manifest says %x", firmware.ErrDigestMismatch, sum, m.SHA256)
	}
	return nil
}

// manifest fetches and decodes a manifest.
func (v *verifier) manifest(ctx context.Context, url string) (firmware.Manifest, error) {
	resp, err := v.get(ctx, url)
	if err != nil {
		return firmware.Manifest{}, err
	}
	defer resp.Body.Close()
	m, err := firmware.DecodeManifest(io.LimitReader(resp.Body, maxManifest))
	if err != nil {
		if ctx.Err() != nil {
			return firmware.Manifest{}, ctx.Err()
		}
		return firmware.Manifest{}, refuse("reading the manifest %s: %w", url, err)
	}
	return m, nil
}

// digest streams the image at url through SHA-256, reading at most
// limit+1 bytes (enough to tell it is too long).
func (v *verifier) digest(ctx context.Context, url string, limit int64) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	resp, err := v.get(ctx, url)
	if err != nil {
		return 0, sum, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return 0, sum, fmt.Errorf("reading the image %s: %w", url, err)
	}
	copy(sum[:], h.Sum(nil))
	return n, sum, nil
}

// get fetches url. A 4xx answer and an untrusted certificate are
// refusals; other failures are transient.
func (v *verifier) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, refuse("fetching %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "racklet-boot-reconciler")
	resp, err := v.hc.Do(req)
	if err != nil {
		var (
			ua  x509.UnknownAuthorityError
			ci  x509.CertificateInvalidError
			hn  x509.HostnameError
			tve *tls.CertificateVerificationError
		)
		if errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &hn) || errors.As(err, &tve) {
			return nil, refuse("fetching %s: the server's certificate is not trusted: %w", url, err)
		}
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	resp.Body.Close()
	if resp.StatusCode/100 == 4 {
		return nil, refuse("fetching %s: %s", url, resp.Status)
	}
	return nil, fmt.Errorf("fetching %s: %s", url, resp.Status)
}
