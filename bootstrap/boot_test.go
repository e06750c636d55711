package bootstrap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/firmware"
)

// TestRun runs the boot environment against a local HTTPS server that
// serves the images and takes the stage reports, with the kexec step
// recorded instead of done.
func TestRun(t *testing.T) {
	trusted, stranger := newKey(t), newKey(t)
	good := sign(t, trusted, firmware.ComponentOS, testBootImage())

	tampered := bytes.Clone(good.image)
	tampered[len(tampered)/2] ^= 0x01

	// A manifest naming the trusted key, signed by another.
	forged := sign(t, stranger, firmware.ComponentOS, testBootImage())
	forged.m.KeyID = firmware.KeyIDOf(pubOf(trusted))
	forgedJSON, err := json.Marshal(forged.m)
	if err != nil {
		t.Fatal(err)
	}
	notATar := signedImage{}
	{
		raw := []byte("this is not a boot image")
		m, err := firmware.Sign(raw, firmware.ManifestFields{Component: firmware.ComponentOS, Version: firmware.FirmwareVersion{Major: 1}}, trusted)
		if err != nil {
			t.Fatal(err)
		}
		mj, _ := json.Marshal(m)
		notATar = signedImage{image: raw, manifest: mj, m: m}
	}
	otherDigest := Digest(sha256.Sum256([]byte("another image")))

	type setup struct {
		s      *testServer
		cfg    *Config
		booter *recordingBooter
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, s setup) // serve files, change the config
		wantErr error                       // nil: booted
		stages  string                      // what the control plane saw
		reason  string                      // in the failure's reason
		// imageGets is how often the image itself was fetched (-1: any).
		imageGets int
	}{
		{
			name:      "good image",
			prepare:   func(t *testing.T, s setup) { s.cfg.Image = s.s.serve("/images/os.img", good) },
			stages:    "bootstrap,image-verified",
			imageGets: 1,
		},
		{
			name: "tampered image",
			prepare: func(t *testing.T, s setup) {
				s.cfg.Image = s.s.serve("/images/os.img", good)
				s.s.put("/images/os.img", tampered)
			},
			wantErr: firmware.ErrDigestMismatch, stages: "bootstrap,bootstrap!", reason: "digest mismatch", imageGets: 1,
		},
		{
			name: "image longer than its manifest says",
			prepare: func(t *testing.T, s setup) {
				s.cfg.Image = s.s.serve("/images/os.img", good)
				s.s.put("/images/os.img", append(bytes.Clone(good.image), 0))
			},
			wantErr: firmware.ErrDigestMismatch, stages: "bootstrap,bootstrap!", reason: "larger than its manifest", imageGets: 1,
		},
		{
			name: "signed by a key that is not trusted",
			prepare: func(t *testing.T, s setup) {
				s.cfg.Image = s.s.serve("/images/os.img", sign(t, stranger, firmware.ComponentOS, testBootImage()))
			},
			wantErr: firmware.ErrUnknownKey, stages: "bootstrap,bootstrap!", reason: "unknown signing key",
			imageGets: 0, // refused before the download
		},
		{
			name: "manifest names a trusted key but another signed it",
			prepare: func(t *testing.T, s setup) {
				s.cfg.Image = s.s.serve("/images/os.img", forged)
				s.s.put("/images/os.img"+firmware.ManifestSuffix, forgedJSON)
			},
			wantErr: firmware.ErrBadSignature, stages: "bootstrap,bootstrap!", reason: "bad signature", imageGets: 0,
		},
		{
			name: "manifest for the wrong component",
			prepare: func(t *testing.T, s setup) {
				s.cfg.Image = s.s.serve("/images/os.img", sign(t, trusted, firmware.ComponentBMC, testBootImage()))
			},
			wantErr: firmware.ErrWrongComponent, stages: "bootstrap,bootstrap!", reason: "image is for the bmc, not the os", imageGets: 0,
		},
		{
			name:    "unreachable image server",
			prepare: func(t *testing.T, s setup) { s.cfg.Image = closedURL(t, "/images/os.img") },
			wantErr: ErrFetch, stages: "bootstrap,bootstrap!", reason: "after 3 attempts", imageGets: 0,
		},
		{
			name:    "no manifest (404 is not retried)",
			prepare: func(t *testing.T, s setup) { s.cfg.Image = s.s.URL + "/images/missing.img" },
			wantErr: ErrFetch, stages: "bootstrap,bootstrap!", reason: "404 Not Found", imageGets: 0,
		},
		{
			name: "http image URL refused",
			prepare: func(t *testing.T, s setup) {
				s.cfg.Image = strings.Replace(s.s.serve("/images/os.img", good), "https://", "http://", 1)
			},
			wantErr: ErrInsecureURL, stages: "bootstrap,bootstrap!", reason: "only https is allowed", imageGets: 0,
		},
		{
			name:    "tftp image URL refused",
			prepare: func(t *testing.T, s setup) { s.cfg.Image = "tftp://127.0.0.1/os.img" },
			wantErr: ErrInsecureURL, stages: "bootstrap,bootstrap!", reason: "uses tftp", imageGets: 0,
		},
		{
			name: "digest other than racklet.digest",
			prepare: func(t *testing.T, s setup) {
				s.cfg.Image = s.s.serve("/images/os.img", good)
				s.cfg.Digest = &otherDigest
			},
			wantErr: firmware.ErrDigestMismatch, stages: "bootstrap,bootstrap!", reason: "racklet.digest wants " + otherDigest.String(), imageGets: 0,
		},
		{
			name: "digest as racklet.digest says",
			prepare: func(t *testing.T, s setup) {
				s.cfg.Image = s.s.serve("/images/os.img", good)
				d := Digest(good.m.SHA256)
				s.cfg.Digest = &d
			},
			stages: "bootstrap,image-verified", imageGets: 1,
		},
		{
			name:    "signed payload that is not a boot image",
			prepare: func(t *testing.T, s setup) { s.cfg.Image = s.s.serve("/images/os.img", notATar) },
			wantErr: ErrImage, stages: "bootstrap,bootstrap!", reason: "invalid boot image", imageGets: 1,
		},
		{
			name: "kexec fails",
			prepare: func(t *testing.T, s setup) {
				s.cfg.Image = s.s.serve("/images/os.img", good)
				s.booter.err = errors.New("kexec_file_load: operation not permitted")
			},
			wantErr: errAny, stages: "bootstrap,image-verified,image-verified!", reason: "handing over to the kernel: kexec_file_load", imageGets: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t)
			trust := Trust{Keys: firmware.NewKeyring(pubOf(trusted)), CAs: s.pool()}
			client := NewHTTPClient(trust)
			cfg := &Config{Node: "n3", APIs: []string{s.URL}}
			booter := &recordingBooter{}
			tc.prepare(t, setup{s, cfg, booter})
			b := &Bootstrap{
				Config: *cfg, Trust: trust, Client: client, Booter: booter, Retry: fastRetry,
				Reporter: &HTTPReporter{Client: client, APIs: cfg.APIs, Node: cfg.Node, Retry: fastRetry},
			}
			err := b.Run(context.Background())
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Run: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("Run = %v, want an error matching %v", err, tc.wantErr)
			}
			got := s.stages("n3")
			if stageList(got) != tc.stages {
				t.Fatalf("stages %q, want %q (%+v)", stageList(got), tc.stages, got)
			}
			last := got[len(got)-1]
			if tc.wantErr != nil && !strings.Contains(last.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", last.Reason, tc.reason)
			}
			if n := s.getCount("/images/os.img"); tc.imageGets >= 0 && n != tc.imageGets {
				t.Errorf("image fetched %d times, want %d", n, tc.imageGets)
			}
			if n := s.getCount("/images/missing.img" + firmware.ManifestSuffix); n > 1 {
				t.Errorf("a missing manifest was asked for %d times, want once (404 is final)", n)
			}

			booted := booter.booted()
			if tc.wantErr != nil && tc.wantErr != errAny {
				if len(booted) != 0 {
					t.Fatalf("kexec called %d times for an image that did not verify", len(booted))
				}
				return
			}
			// Booted (or tried to): the verified image, once, after
			// image-verified was reported with its digest.
			if len(booted) != 1 {
				t.Fatalf("kexec called %d times, want 1", len(booted))
			}
			want := testBootImage()
			if !bytes.Equal(booted[0].Kernel, want.Kernel) || !bytes.Equal(booted[0].Initrd, want.Initrd) || booted[0].Cmdline != want.Cmdline {
				t.Errorf("kexec got kernel %d bytes, initrd %d bytes, cmdline %q; want %d, %d, %q",
					len(booted[0].Kernel), len(booted[0].Initrd), booted[0].Cmdline, len(want.Kernel), len(want.Initrd), want.Cmdline)
			}
			if d := got[1].ImageDigest; d != Digest(sha256.Sum256(good.image)).String() {
				t.Errorf("image-verified digest %q, want the image's sha256", d)
			}
		})
	}
}

// errAny stands for "some error" in TestRun.
var errAny = errors.New("any error")

// TestRunControlPlaneDown shows that stage reports do not hold the boot
// up: with no control plane reachable, a good image still boots, after a
// bounded wait.
func TestRunControlPlaneDown(t *testing.T) {
	key := newKey(t)
	s := newTestServer(t)
	trust := Trust{Keys: firmware.NewKeyring(pubOf(key)), CAs: s.pool()}
	client := NewHTTPClient(trust)
	apis := []string{closedURL(t, ""), closedURL(t, "")}
	booter := &recordingBooter{}
	b := &Bootstrap{
		Config: Config{Node: "n3", APIs: apis, Image: s.serve("/images/os.img", sign(t, key, firmware.ComponentOS, testBootImage()))},
		Trust:  trust, Client: client, Booter: booter, Retry: fastRetry,
		Reporter: &HTTPReporter{Client: client, APIs: apis, Node: "n3", Retry: fastRetry},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(booter.booted()); n != 1 {
		t.Fatalf("kexec called %d times, want 1", n)
	}
}

// TestRunWithRecorder uses the recording Reporter: the stages in order,
// with the digest, and nothing else.
func TestRunWithRecorder(t *testing.T) {
	key := newKey(t)
	s := newTestServer(t)
	img := sign(t, key, firmware.ComponentOS, testBootImage())
	rec := &Recorder{}
	b := &Bootstrap{
		Config:   Config{Node: "n3", APIs: []string{s.URL}, Image: s.serve("/images/os.img", img)},
		Trust:    Trust{Keys: firmware.NewKeyring(pubOf(key)), CAs: s.pool()},
		Reporter: rec, Booter: &recordingBooter{}, Retry: fastRetry,
	}
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []Report{{Stage: StageBootstrap}, {Stage: StageImageVerified, ImageDigest: Digest(img.m.SHA256).String()}}
	if got := rec.Reports(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("reports %+v, want %+v", got, want)
	}
	if len(s.stages("n3")) != 0 {
		t.Fatal("the recorder posted to the server")
	}
}

// TestRunUntrustedServer: a server whose certificate does not chain to the
// configured CA is refused (TLS), so nothing is fetched from it.
func TestRunUntrustedServer(t *testing.T) {
	key := newKey(t)
	s := newTestServer(t)
	rec := &Recorder{}
	booter := &recordingBooter{}
	b := &Bootstrap{
		Config:   Config{Node: "n3", APIs: []string{s.URL}, Image: s.serve("/images/os.img", sign(t, key, firmware.ComponentOS, testBootImage()))},
		Trust:    Trust{Keys: firmware.NewKeyring(pubOf(key)), CAs: otherCA(t)},
		Reporter: rec, Booter: booter, Retry: fastRetry,
	}
	err := b.Run(context.Background())
	wantErrIs(t, err, ErrFetch)
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error %v does not blame the certificate", err)
	}
	if got := stageList(rec.Reports()); got != "bootstrap,bootstrap!" || len(booter.booted()) != 0 {
		t.Fatalf("stages %q, %d boots; want a failed bootstrap and no boot", got, len(booter.booted()))
	}
}

// otherCA is a pool holding a CA that signed nothing the tests serve.
func otherCA(t *testing.T) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(cert)
	return p
}

func TestManifestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://h/os.img":              "https://h/os.img.manifest.json",
		"https://h:8443/a/b/os.img?x=1": "https://h:8443/a/b/os.img.manifest.json?x=1",
		"https://h/a%2Fb/os.img":        "https://h/a%2Fb/os.img.manifest.json",
	} {
		got, err := manifestURL(in)
		if err != nil || got != want {
			t.Errorf("manifestURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := manifestURL("http://h/os.img"); !errors.Is(err, ErrInsecureURL) {
		t.Errorf("manifestURL(http) = %v, want ErrInsecureURL", err)
	}
}
