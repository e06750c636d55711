package firmware

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Repository is where the control plane finds signed images: the update
// reconciler asks it for the image of the version an operator desires.
// A Repository returns what it holds; it does not judge it: the caller
// verifies the manifest against its trusted keys (Verify), so that a bad
// signature is refused where it can be recorded.
type Repository interface {
	// Image returns the image of component c at version v and its
	// manifest. It fails with ErrNoImage if there is none, with
	// ErrManifest if the manifest cannot be decoded or names another
	// component or version than asked for, and with ErrImageSize if the
	// image is larger than the component takes.
	Image(ctx context.Context, c Component, v FirmwareVersion) ([]byte, Manifest, error)
}

// ErrNoImage: the repository has no image of that component and version.
var ErrNoImage = errors.New("firmware: no such image in the repository")

// Dir is a Repository in a directory, laid out as `rackctl firmware sign`
// leaves it:
//
//	<dir>/<component>-<major>.<minor>.<patch>.bin                 the image
//	<dir>/<component>-<major>.<minor>.<patch>.bin.manifest.json   its manifest
//
// e.g. bmc-1.2.3.bin and bmc-1.2.3.bin.manifest.json. Files are read on
// every call, so images can be added while the control plane runs. An
// image is read whole into memory: Dir serves BMC and RMC images (up to
// MaxImageSize), not OS images.
type Dir string

var _ Repository = Dir("")

// ImageFileName is the name of the image of component c at version v in
// a Dir.
func ImageFileName(c Component, v FirmwareVersion) string {
	return fmt.Sprintf("%s-%s.bin", c, v)
}

// Image implements Repository.
func (d Dir) Image(ctx context.Context, c Component, v FirmwareVersion) ([]byte, Manifest, error) {
	if err := ctx.Err(); err != nil {
		return nil, Manifest{}, err
	}
	if !c.Valid() {
		return nil, Manifest{}, fmt.Errorf("reading image: %w: component %q is not bmc, rmc or os", ErrManifest, c)
	}
	path := filepath.Join(string(d), ImageFileName(c, v))
	m, err := ReadManifest(ManifestPath(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Manifest{}, fmt.Errorf("reading image %s: %w (no manifest %s)", path, ErrNoImage, filepath.Base(ManifestPath(path)))
	}
	if err != nil {
		return nil, Manifest{}, err
	}
	if m.Component != c || m.Version != v {
		return nil, Manifest{}, fmt.Errorf("reading image %s: %w: the manifest is for %s %s", path, ErrManifest, m.Component, m.Version)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Manifest{}, fmt.Errorf("reading image %s: %w", path, ErrNoImage)
	}
	if err != nil {
		return nil, Manifest{}, fmt.Errorf("reading image: %w", err)
	}
	defer f.Close()
	limit := min(c.MaxSize(), MaxImageSize)
	image, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, Manifest{}, fmt.Errorf("reading image %s: %w", path, err)
	}
	if len(image) > limit {
		return nil, Manifest{}, fmt.Errorf("reading image %s: %w: larger than %d bytes", path, ErrImageSize, limit)
	}
	return image, m, nil
}

// ReadKeyring reads the public keys trusted to sign firmware (PEM PKIX
// ed25519 files, as `rackctl firmware keygen` writes them).
func ReadKeyring(paths ...string) (Keyring, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("reading keyring: %w: no public key files", ErrKey)
	}
	keys := make([]ed25519.PublicKey, 0, len(paths))
	for _, p := range paths {
		k, err := ReadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return NewKeyring(keys...), nil
}
