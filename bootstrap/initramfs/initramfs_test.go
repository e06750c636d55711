package initramfs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/buildinfo"
	"debug/elf"
	"encoding/pem"
	"errors"
	"go/build"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/racklet/rack/controlplane/pki"
	"github.com/racklet/rack/firmware"
)

// goCommand is the go command of the toolchain running the test.
func goCommand(t *testing.T) string {
	t.Helper()
	if p := filepath.Join(build.Default.GOROOT, "bin", "go"); build.Default.GOROOT != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build racklet-init with")
	}
	return p
}

// TestBuild builds the initramfs (racklet-init compiled for the host's
// architecture, with Go's build cache) and lists it with u-root's cpio
// reader: /init is racklet-init, a static Linux executable built from
// Package; the trust anchors, the configuration and u-root's base file
// system are there.
func TestBuild(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the initramfs is built on Linux")
	}
	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	keyFile := filepath.Join(dir, "signing.pub")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	caFile := filepath.Join(dir, "ca.crt")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testCert(t)})
	cfgFile := filepath.Join(dir, "bootstrap.json")
	cfg := `{"api":["https://10.0.0.1:7443"]}`
	for f, b := range map[string][]byte{keyFile: keyPEM, caFile: caPEM, cfgFile: []byte(cfg)} {
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// One node's credentials, as rackctl writes them (the token file
	// readable by all on the host: the archive makes it 0600).
	tokenFile := filepath.Join(dir, "n3.token")
	const token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJuMyJ9.c2ln"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nodeCert, nodeKey := writeNodeCert(t, dir, "n3")
	out := filepath.Join(dir, "out", "initramfs.cpio")
	epoch := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err = Build(ctx, Options{Output: out, Go: goCommand(t), Config: cfgFile, CA: caFile, Keys: []string{keyFile, keyFile}, Epoch: epoch,
		Token: tokenFile, NodeCert: nodeCert, NodeKey: nodeKey})
	if err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatalf("listing the archive: %v", err)
	}
	files := map[string]cpio.Record{}
	for _, r := range recs {
		if _, dup := files[r.Name]; dup {
			t.Errorf("%s twice in the archive", r.Name)
		}
		files[r.Name] = r
	}
	content := func(name string) []byte {
		t.Helper()
		r, ok := files[name]
		if !ok {
			t.Fatalf("%s is not in the archive (%d records)", name, len(recs))
		}
		b, err := io.ReadAll(io.NewSectionReader(r, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	kind := func(name string) uint64 { return files[name].Mode & cpio.S_IFMT }

	// /init → bin/racklet-init, the bootstrap program.
	if kind(InitPath) != cpio.S_IFLNK || string(content(InitPath)) != BinaryPath {
		t.Fatalf("init is %#o → %q, want a symlink to %s", files[InitPath].Mode, content(InitPath), BinaryPath)
	}
	bin := files[BinaryPath]
	if kind(BinaryPath) != cpio.S_IFREG || bin.Mode&0o111 == 0 {
		t.Fatalf("%s has mode %#o, want an executable file", BinaryPath, bin.Mode)
	}
	exe := io.NewSectionReader(bin, 0, int64(bin.FileSize))
	ef, err := elf.NewFile(exe)
	if err != nil {
		t.Fatalf("%s is not ELF: %v", BinaryPath, err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked", BinaryPath)
		}
	}
	if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]; want != 0 && ef.Machine != want {
		t.Errorf("%s is for %v, want %v", BinaryPath, ef.Machine, want)
	}
	bi, err := buildinfo.Read(exe)
	if err != nil {
		t.Fatalf("%s has no Go build info: %v", BinaryPath, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if bi.Path != Package || settings["CGO_ENABLED"] != "0" || settings["GOOS"] != "linux" || settings["GOARCH"] != runtime.GOARCH {
		t.Errorf("%s is %s with %v, want %s for linux/%s without cgo", BinaryPath, bi.Path, settings, Package, runtime.GOARCH)
	}

	// Trust anchors, configuration, epoch.
	id := firmware.KeyIDOf(pub)
	for name, want := range map[string][]byte{
		"etc/racklet/ca.crt":                       caPEM,
		"etc/racklet/keys/" + id.String() + ".pub": keyPEM,
		"etc/racklet/bootstrap.json":               []byte(cfg),
		"etc/racklet/epoch":                        []byte("2026-11-01T00:00:00Z\n"),
	} {
		if got := content(name); !bytes.Equal(got, want) {
			t.Errorf("%s holds %q, want %q", name, got, want)
		}
	}
	// The node's credentials, readable by root only.
	for name, from := range map[string]string{"etc/racklet/token": tokenFile, "etc/racklet/node.crt": nodeCert, "etc/racklet/node.key": nodeKey} {
		want, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if got := content(name); !bytes.Equal(got, want) {
			t.Errorf("%s holds %q, want %q", name, got, want)
		}
		if perm := files[name].Mode & 0o777; perm != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", name, perm)
		}
	}
	keys := 0
	for name := range files {
		if strings.HasPrefix(name, "etc/racklet/keys/") && strings.HasSuffix(name, ".pub") {
			keys++
		}
	}
	if keys != 1 {
		t.Errorf("%d keys in the archive, want the one key once", keys)
	}
	// u-root's base file system, and DNS from the kernel's ip=dhcp.
	for _, d := range []string{"dev", "proc", "sys", "tmp", "etc"} {
		if kind(d) != cpio.S_IFDIR {
			t.Errorf("%s is not a directory in the archive", d)
		}
	}
	if kind("dev/console") != cpio.S_IFCHR {
		t.Error("dev/console is not a character device")
	}
	if kind("etc/resolv.conf") != cpio.S_IFLNK || string(content("etc/resolv.conf")) != "../proc/net/pnp" {
		t.Errorf("etc/resolv.conf → %q, want ../proc/net/pnp", content("etc/resolv.conf"))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "out", "*.part")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestBuildRefuses: bad trust anchors are refused before anything is
// built, and no archive is written.
func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initramfs.cpio")
	cert, key := writeNodeCert(t, dir, "n3")
	_, otherKey := writeNodeCert(t, t.TempDir(), "n3")
	for name, o := range map[string]Options{
		"no output":                         {},
		"bad key":                           {Output: out, Keys: []string{junk}},
		"bad CA":                            {Output: out, CA: junk},
		"bad config":                        {Output: out, Config: junk},
		"missing key":                       {Output: out, Keys: []string{filepath.Join(dir, "nope.pub")}},
		"bad token":                         {Output: out, Token: junk},
		"node certificate without key":      {Output: out, NodeCert: cert},
		"node key without certificate":      {Output: out, NodeKey: key},
		"node certificate with a wrong key": {Output: out, NodeCert: cert, NodeKey: otherKey},
	} {
		err := Build(context.Background(), o)
		if !errors.Is(err, ErrOptions) {
			t.Errorf("%s: Build = %v, want ErrOptions", name, err)
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an archive was written: %v", err)
	}
}

// writeNodeCert issues a node certificate from a fresh rack CA and writes
// it as rackctl pki issue node does (NAME.crt, NAME.key).
func writeNodeCert(t *testing.T, dir, name string) (certPath, keyPath string) {
	t.Helper()
	ca, err := pki.NewCA("rack1", pki.ECDSAP256, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(pki.Request{Kind: pki.KindNode, Name: name}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err = pki.WriteIssued(dir, is)
	if err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// testCert makes a self-signed CA certificate (DER) to stand for the
// rack CA.
func testCert(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
