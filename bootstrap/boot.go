package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/racklet/rack/firmware"
)

// Booter hands over to a verified image's kernel.
type Booter interface {
	// Boot loads img's kernel, initramfs and command line and starts the
	// kernel. When it succeeds it does not return (another kernel runs);
	// an error means the boot environment still runs.
	Boot(ctx context.Context, img *BootImage) error
}

// DryRun is a Booter that only logs what it would boot (racklet-init
// -dry-run).
type DryRun struct{ Logger *slog.Logger }

var _ Booter = DryRun{}

// Boot implements Booter.
func (d DryRun) Boot(ctx context.Context, img *BootImage) error {
	if d.Logger != nil {
		d.Logger.Info("dry run: not booting", "kernel", len(img.Kernel), "initrd", len(img.Initrd), "cmdline", img.Cmdline)
	}
	return nil
}

// Bootstrap is one run of the boot environment: fetch the boot image and
// its manifest over HTTPS, verify them, report the stages, hand over.
type Bootstrap struct {
	Config Config
	Trust  Trust
	// Client downloads (NewHTTPClient(Trust) if nil).
	Client   *http.Client
	Reporter Reporter
	Booter   Booter
	Logger   *slog.Logger
	// Retry bounds the attempts of each download (default 3 from 1 s).
	Retry Retry
	// ManifestTimeout bounds one attempt to fetch the manifest (default
	// 30 s), ImageTimeout one attempt to fetch the image (default 10 min).
	ManifestTimeout, ImageTimeout time.Duration
	// ReportTimeout bounds each stage report, its retries included
	// (default 30 s); an undelivered report is logged and the boot goes
	// on.
	ReportTimeout time.Duration
}

// maxManifest bounds a manifest download (firmware.DecodeManifest reads
// at most 64 KiB).
const maxManifest = 64 << 10

// Run reports stage bootstrap, fetches and verifies the image, reports
// image-verified with its digest and boots it. When anything fails it
// reports the stage it was in as failed, with the error as the reason,
// and returns the error; it never boots an image that did not verify.
func (b *Bootstrap) Run(ctx context.Context) error {
	log := b.logger()
	if b.Reporter == nil || b.Booter == nil {
		return fmt.Errorf("%w: bootstrap needs a Reporter and a Booter", ErrConfig)
	}
	log.Info("bootstrap started", "node", b.Config.Node, "image", b.Config.Image)
	b.report(ctx, Report{Stage: StageBootstrap})
	img, digest, err := b.Verified(ctx)
	if err != nil {
		log.Error("boot image refused", "err", err)
		b.report(ctx, failure(StageBootstrap, err, ""))
		return err
	}
	log.Info("boot image verified", "digest", digest.String(), "kernel", len(img.Kernel), "initrd", len(img.Initrd), "cmdline", img.Cmdline)
	b.report(ctx, Report{Stage: StageImageVerified, ImageDigest: digest.String()})
	if err := b.Booter.Boot(ctx, img); err != nil {
		err = fmt.Errorf("handing over to the kernel: %w", err)
		log.Error("kexec failed", "err", err)
		b.report(ctx, failure(StageImageVerified, err, digest.String()))
		return err
	}
	return nil
}

// Verified fetches the manifest and the image and returns the image's
// payload once the manifest is signed by a trusted key (narrowed by
// Config.KeyID), is for the os component, names Config.Digest if that is
// set, and the image has its size and SHA-256. Signature and component
// are checked before the image is downloaded.
func (b *Bootstrap) Verified(ctx context.Context) (*BootImage, Digest, error) {
	if err := b.Config.Validate(); err != nil {
		return nil, Digest{}, err
	}
	manURL, err := manifestURL(b.Config.Image)
	if err != nil {
		return nil, Digest{}, err
	}
	client := b.Client
	if client == nil {
		client = NewHTTPClient(b.Trust)
	}
	raw, err := fetch(ctx, client, b.Retry, or(b.ManifestTimeout, 30*time.Second), manURL, maxManifest, 0)
	if err != nil {
		return nil, Digest{}, fmt.Errorf("fetching the manifest: %w", err)
	}
	m, err := firmware.DecodeManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, Digest{}, fmt.Errorf("reading the manifest: %w", err)
	}
	// Verify checks the manifest (form, key, signature, component) before
	// the image; with no image, passing those ends in a size mismatch.
	if err := firmware.Verify(nil, m, b.Trust.Keys, firmware.ComponentOS); !errors.Is(err, firmware.ErrDigestMismatch) {
		return nil, Digest{}, fmt.Errorf("image manifest refused: %w", err)
	}
	if want := b.Config.Digest; want != nil && Digest(m.SHA256) != *want {
		return nil, Digest{}, fmt.Errorf("image manifest refused: %w: it names %s, racklet.digest wants %s", firmware.ErrDigestMismatch, Digest(m.SHA256), *want)
	}
	b.logger().Info("manifest verified", "version", m.Version.String(), "securityVersion", m.SecurityVersion, "size", m.Size, "key", m.KeyID.String())

	image, err := fetch(ctx, client, b.Retry, or(b.ImageTimeout, 10*time.Minute), b.Config.Image, int64(m.Size), int64(m.Size))
	if errors.Is(err, errTooLarge) {
		err = fmt.Errorf("%w: image is larger than its manifest says (%d bytes): %w", firmware.ErrDigestMismatch, m.Size, err)
	}
	if err != nil {
		return nil, Digest{}, fmt.Errorf("fetching the image: %w", err)
	}
	if err := firmware.Verify(image, m, b.Trust.Keys, firmware.ComponentOS); err != nil {
		return nil, Digest{}, err
	}
	img, err := DecodeImage(image)
	if err != nil {
		return nil, Digest{}, err
	}
	return img, Digest(m.SHA256), nil
}

// report delivers r within ReportTimeout; a failure is logged, not fatal.
func (b *Bootstrap) report(ctx context.Context, r Report) {
	ctx, cancel := context.WithTimeout(ctx, or(b.ReportTimeout, 30*time.Second))
	defer cancel()
	if err := b.Reporter.Report(ctx, r); err != nil {
		b.logger().Warn("stage report not delivered", "stage", r.Stage, "failed", r.Failed, "err", err)
		return
	}
	b.logger().Info("stage reported", "stage", r.Stage, "failed", r.Failed)
}

func (b *Bootstrap) logger() *slog.Logger {
	if b.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Logger
}

// manifestURL is the URL of the manifest of the image at image: its path
// with firmware.ManifestSuffix appended (a query stays a query).
func manifestURL(image string) (string, error) {
	if err := CheckURL(image); err != nil {
		return "", err
	}
	u, err := url.Parse(image)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrConfig, err)
	}
	u.Path += firmware.ManifestSuffix
	if u.RawPath != "" {
		u.RawPath += firmware.ManifestSuffix
	}
	return u.String(), nil
}

// or is d, or def if d is not positive.
func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
