// Package initramfs builds the boot environment's initramfs with u-root's
// image builder (github.com/u-root/mkuimage, the library behind the u-root
// command): u-root's default root file system (/dev with console, null,
// tty and urandom nodes, /proc, /sys, /tmp, /etc, ...), the racklet-init
// program at /bin/racklet-init with /init a symlink to it (u-root's
// layout), the trust anchors (and, for one node's initramfs, that node's
// credentials) under /etc/racklet, and /etc/resolv.conf a
// symlink to /proc/net/pnp, where the kernel's ip=dhcp writes the name
// servers. The result is a newc cpio archive, as the kernel takes it.
//
// racklet-init is compiled with `go build` (CGO_ENABLED=0, static, -trimpath,
// stripped) from the module it lives in, using Go's build cache; u-root's
// binary builder would force a full rebuild (`go build -a`) every time.
package initramfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"

	"github.com/racklet/rack/bootstrap"
	"github.com/racklet/rack/firmware"
)

// ErrOptions: options that cannot make an initramfs.
var ErrOptions = errors.New("initramfs: invalid options")

// Package is the boot environment's main package.
const Package = "github.com/racklet/rack/bootstrap/cmd/racklet-init"

// Paths in the archive.
const (
	InitPath   = "init"
	BinaryPath = "bin/racklet-init"
)

// Options say what goes into the initramfs.
type Options struct {
	// Output is the cpio archive to write (replaced atomically).
	Output string
	// ModuleDir is a directory of the module that holds Package, where
	// `go build` runs (default: the working directory).
	ModuleDir string
	// Go is the go command (default: "go" on $PATH).
	Go string
	// GOARCH is the target architecture (default: the host's).
	GOARCH string
	// Config is a racklet-init configuration file (JSON) to include as
	// /etc/racklet/bootstrap.json; optional (the kernel command line can
	// say everything).
	Config string
	// CA is the PEM file of the CA certificates HTTPS servers must chain
	// to (the rack CA's ca.crt), included as /etc/racklet/ca.crt.
	CA string
	// Keys are the public keys trusted to sign OS images (PEM, as
	// `rackctl firmware keygen` writes them), included as
	// /etc/racklet/keys/<key id>.pub.
	Keys []string
	// Epoch is written to /etc/racklet/epoch, the earliest time the
	// node's clock may show (default: now).
	Epoch time.Time
	// Token, NodeCert and NodeKey are one node's credentials for its stage
	// reports (optional; the certificate and key go together): the files
	// `rackctl pki token node NAME --out FILE` and `rackctl pki issue node
	// NAME` write, included as /etc/racklet/token, /etc/racklet/node.crt
	// and /etc/racklet/node.key, mode 0600. An initramfs with them belongs
	// to that node and must be kept from others.
	Token, NodeCert, NodeKey string
	// Logger gets the builder's progress (default: discard).
	Logger *slog.Logger
}

// Build compiles racklet-init and writes the initramfs to o.Output.
func Build(ctx context.Context, o Options) error {
	if o.Output == "" {
		return fmt.Errorf("%w: no output file", ErrOptions)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.GOARCH == "" {
		o.GOARCH = runtime.GOARCH
	}
	if o.Go == "" {
		o.Go = "go"
	}
	if o.Epoch.IsZero() {
		o.Epoch = time.Now()
	}
	tmp, err := os.MkdirTemp("", "racklet-initramfs-")
	if err != nil {
		return fmt.Errorf("building the initramfs: %w", err)
	}
	defer os.RemoveAll(tmp)

	files, err := trustFiles(tmp, o)
	if err != nil {
		return err
	}
	bin := filepath.Join(tmp, "racklet-init")
	start := time.Now()
	if err := goBuild(ctx, o, bin); err != nil {
		return err
	}
	log.Info("built racklet-init", "arch", o.GOARCH, "took", time.Since(start).Round(time.Millisecond))
	files = append(files, bin+":"+BinaryPath)

	out, err := filepath.Abs(o.Output)
	if err != nil {
		return fmt.Errorf("building the initramfs: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("building the initramfs: %w", err)
	}
	part := out + ".part"
	uimageTmp := filepath.Join(tmp, "uimage")
	if err := os.Mkdir(uimageTmp, 0o700); err != nil {
		return fmt.Errorf("building the initramfs: %w", err)
	}
	env := golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH(o.GOARCH))
	l := &llog.Logger{Level: slog.LevelInfo, Sink: func(level slog.Level, format string, v ...any) {
		log.Log(ctx, level, "u-root: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
	}}
	err = uimage.Create(l,
		uimage.WithReplaceEnv(env),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithFiles(files...),
		uimage.WithInit("/"+BinaryPath),
		uimage.WithSymlink("etc/resolv.conf", "/proc/net/pnp"),
		uimage.WithSkipLDD(), // racklet-init is static
		uimage.WithTempDir(uimageTmp),
		uimage.WithCPIOOutput(part),
	)
	if err != nil {
		os.Remove(part)
		return fmt.Errorf("building the initramfs with u-root: %w", err)
	}
	if err := os.Rename(part, out); err != nil {
		os.Remove(part)
		return fmt.Errorf("building the initramfs: %w", err)
	}
	log.Info("wrote the initramfs", "file", out)
	return nil
}

// goBuild compiles Package for linux/o.GOARCH, static and stripped.
func goBuild(ctx context.Context, o Options, bin string) error {
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, Package)
	cmd.Dir = o.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building racklet-init: %w\n%s", err, out)
	}
	return nil
}

// trustFiles checks the configuration and trust anchors and returns them
// as u-root extra files ("host path:archive path"), with the epoch
// written into dir.
func trustFiles(dir string, o Options) ([]string, error) {
	var files []string
	if o.Config != "" {
		f, err := os.Open(o.Config)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrOptions, err)
		}
		_, err = bootstrap.DecodeConfig(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrOptions, o.Config, err)
		}
		files = append(files, o.Config+":"+archivePath(bootstrap.DefaultConfigFile))
	}
	trustDir := archivePath(bootstrap.DefaultTrustDir)
	if o.CA != "" {
		// LoadCAs wants the file in a trust directory; check a copy.
		b, err := os.ReadFile(o.CA)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrOptions, err)
		}
		check := filepath.Join(dir, "ca-check")
		if err := os.MkdirAll(check, 0o700); err != nil {
			return nil, fmt.Errorf("building the initramfs: %w", err)
		}
		if err := os.WriteFile(filepath.Join(check, bootstrap.CAFile), b, 0o644); err != nil {
			return nil, fmt.Errorf("building the initramfs: %w", err)
		}
		if _, err := bootstrap.LoadCAs(check); err != nil {
			return nil, fmt.Errorf("%w: CA %s: %v", ErrOptions, o.CA, err)
		}
		files = append(files, o.CA+":"+filepath.Join(trustDir, bootstrap.CAFile))
	}
	seen := map[firmware.KeyID]bool{}
	for _, k := range o.Keys {
		pub, err := firmware.ReadPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrOptions, err)
		}
		id := firmware.KeyIDOf(pub)
		if seen[id] {
			continue
		}
		seen[id] = true
		files = append(files, k+":"+filepath.Join(trustDir, bootstrap.KeysDir, id.String()+".pub"))
	}
	creds, err := credentialFiles(dir, o)
	if err != nil {
		return nil, err
	}
	files = append(files, creds...)
	epoch := filepath.Join(dir, "epoch")
	if err := os.WriteFile(epoch, []byte(o.Epoch.UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("building the initramfs: %w", err)
	}
	files = append(files, epoch+":"+filepath.Join(trustDir, bootstrap.EpochFile))
	for _, f := range files {
		if strings.Count(f, ":") != 1 {
			return nil, fmt.Errorf("%w: %q: u-root cannot take a path with a colon", ErrOptions, f)
		}
	}
	return files, nil
}

// credentialFiles copies the node's credentials into dir (mode 0600, the
// mode they get in the archive), checks them as racklet-init will
// (bootstrap.LoadCredentials) and returns them as u-root extra files.
func credentialFiles(dir string, o Options) ([]string, error) {
	if o.Token == "" && o.NodeCert == "" && o.NodeKey == "" {
		return nil, nil
	}
	if (o.NodeCert == "") != (o.NodeKey == "") {
		return nil, fmt.Errorf("%w: the node's certificate and key go together", ErrOptions)
	}
	check := filepath.Join(dir, "credentials")
	if err := os.MkdirAll(check, 0o700); err != nil {
		return nil, fmt.Errorf("building the initramfs: %w", err)
	}
	trustDir := archivePath(bootstrap.DefaultTrustDir)
	var files []string
	for from, name := range map[string]string{o.Token: bootstrap.TokenFile, o.NodeCert: bootstrap.NodeCertFile, o.NodeKey: bootstrap.NodeKeyFile} {
		if from == "" {
			continue
		}
		b, err := os.ReadFile(from)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrOptions, err)
		}
		to := filepath.Join(check, name)
		if err := os.WriteFile(to, b, 0o600); err != nil {
			return nil, fmt.Errorf("building the initramfs: %w", err)
		}
		files = append(files, to+":"+filepath.Join(trustDir, name))
	}
	if _, err := bootstrap.LoadCredentials(bootstrap.Config{TrustDir: check}); err != nil {
		return nil, fmt.Errorf("%w: the node's credentials: %v", ErrOptions, err)
	}
	return files, nil
}

// archivePath is an absolute path in the initramfs as a path in the
// archive (no leading slash).
func archivePath(p string) string { return strings.TrimPrefix(p, "/") }
