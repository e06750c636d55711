package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDirRepository(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, ed25519.SeedSize))
	v123 := FirmwareVersion{1, 2, 3}
	put := func(t *testing.T, dir, file string, image []byte, f ManifestFields) {
		t.Helper()
		path := filepath.Join(dir, file)
		if image != nil {
			if err := os.WriteFile(path, image, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if f.Component != "" {
			m, err := Sign(bytes.Repeat([]byte{1}, 10), f, key)
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteManifest(ManifestPath(path), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	good := ManifestFields{Component: ComponentBMC, Version: v123, SecurityVersion: 2}
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		c       Component
		err     error
	}{
		{"good", func(t *testing.T, dir string) { put(t, dir, "bmc-1.2.3.bin", bytes.Repeat([]byte{1}, 10), good) }, ComponentBMC, nil},
		{"nothing", func(t *testing.T, dir string) {}, ComponentBMC, ErrNoImage},
		{"image without manifest", func(t *testing.T, dir string) { put(t, dir, "bmc-1.2.3.bin", []byte{1}, ManifestFields{}) }, ComponentBMC, ErrNoImage},
		{"manifest without image", func(t *testing.T, dir string) { put(t, dir, "bmc-1.2.3.bin", nil, good) }, ComponentBMC, ErrNoImage},
		{"manifest of another version", func(t *testing.T, dir string) {
			put(t, dir, "bmc-1.2.3.bin", []byte{1}, ManifestFields{Component: ComponentBMC, Version: FirmwareVersion{1, 2, 4}})
		}, ComponentBMC, ErrManifest},
		{"manifest of another component", func(t *testing.T, dir string) {
			put(t, dir, "bmc-1.2.3.bin", []byte{1}, ManifestFields{Component: ComponentRMC, Version: v123})
		}, ComponentBMC, ErrManifest},
		{"malformed manifest", func(t *testing.T, dir string) {
			put(t, dir, "bmc-1.2.3.bin", []byte{1}, ManifestFields{})
			if err := os.WriteFile(filepath.Join(dir, "bmc-1.2.3.bin"+ManifestSuffix), []byte(`{"component":"bmc"}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ComponentBMC, ErrManifest},
		{"too large", func(t *testing.T, dir string) {
			put(t, dir, "bmc-1.2.3.bin", make([]byte, MaxImageSize+1), good)
		}, ComponentBMC, ErrImageSize},
		{"unknown component", func(t *testing.T, dir string) {}, Component("gpu"), ErrManifest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.prepare(t, dir)
			image, m, err := Dir(dir).Image(context.Background(), tt.c, v123)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Image = %v, want %v", err, tt.err)
			}
			if err == nil && (!bytes.Equal(image, bytes.Repeat([]byte{1}, 10)) || m.Version != v123 || m.Component != ComponentBMC ||
				Verify(image, m, NewKeyring(key.Public().(ed25519.PublicKey)), ComponentBMC) != nil) {
				t.Fatalf("Image = %d bytes, %+v", len(image), m)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Dir(t.TempDir()).Image(ctx, ComponentBMC, v123); !errors.Is(err, context.Canceled) {
		t.Fatalf("Image with a cancelled context: %v", err)
	}
	if got := ImageFileName(ComponentBMC, v123); got != "bmc-1.2.3.bin" {
		t.Fatalf("ImageFileName = %s", got)
	}
}

func TestReadKeyring(t *testing.T) {
	if _, err := ReadKeyring(); !errors.Is(err, ErrKey) {
		t.Fatalf("no files: %v", err)
	}
	dir := t.TempDir()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, ed25519.SeedSize))
	_, pub, err := WriteKeyPair(dir, priv)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := ReadKeyring(pub)
	if err != nil || len(kr) != 1 || !bytes.Equal(kr[KeyIDOf(priv.Public().(ed25519.PublicKey))], priv.Public().(ed25519.PublicKey)) {
		t.Fatalf("ReadKeyring = %v, %v", kr, err)
	}
	if _, err := ReadKeyring(pub, filepath.Join(dir, "missing.pub")); err == nil {
		t.Fatal("a missing key file was accepted")
	}
}
