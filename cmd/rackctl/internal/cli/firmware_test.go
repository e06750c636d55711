package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racklet/rack/firmware"
)

// rackctl runs rackctl without a control plane.
func rackctl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb syncBuffer
	code = Main(context.Background(), args, &out, &errb, func(string) string { return "" })
	return out.String(), errb.String(), code
}

func TestFirmwareCommands(t *testing.T) {
	dir := t.TempDir()
	keys, other := filepath.Join(dir, "keys"), filepath.Join(dir, "other")
	priv, pub := filepath.Join(keys, firmware.PrivateKeyFile), filepath.Join(keys, firmware.PublicKeyFile)
	otherPub := filepath.Join(other, firmware.PublicKeyFile)
	image := filepath.Join(dir, "bmc.bin")
	if err := os.WriteFile(image, []byte(strings.Repeat("firmware image ", 300)), 0o644); err != nil {
		t.Fatal(err)
	}
	tamper := func(t *testing.T) {
		b, err := os.ReadFile(image)
		if err != nil {
			t.Fatal(err)
		}
		b[10] ^= 1
		if err := os.WriteFile(image, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The steps run in order, each on the files the earlier ones left.
	steps := []struct {
		name   string
		before func(t *testing.T)
		args   []string
		code   int
		stdout []string // substrings
		stderr []string
	}{
		{name: "keygen", args: []string{"firmware", "keygen", "--out", keys}, stdout: []string{"key ", priv, pub}},
		{name: "keygen, other key", args: []string{"firmware", "keygen", "--out", other}},
		{name: "keygen never replaces keys", args: []string{"firmware", "keygen", "--out", keys}, code: 1, stderr: []string{"file exists"}},
		{name: "keygen without --out", args: []string{"firmware", "keygen"}, code: 2, stderr: []string{"--out"}},
		{name: "sign", args: []string{"firmware", "sign", "--key", priv, "--component", "bmc", "--version", "1.2.3", "--security-version", "4", image},
			stdout: []string{"signed " + image + ": bmc 1.2.3, security version 4", "wrote " + image + ".manifest.json"}},
		{name: "sign without version", args: []string{"firmware", "sign", "--key", priv, "--component", "bmc", "--security-version", "4", image}, code: 2, stderr: []string{"sign needs --version"}},
		{name: "sign with bad version", args: []string{"firmware", "sign", "--key", priv, "--component", "bmc", "--version", "1.2", "--security-version", "4", image}, code: 2, stderr: []string{`invalid --version "1.2"`}},
		{name: "sign for unknown component", args: []string{"firmware", "sign", "--key", priv, "--component", "gpu", "--version", "1.2.3", "--security-version", "4", image}, code: 2, stderr: []string{`invalid --component "gpu"`}},
		{name: "sign with negative security version", args: []string{"firmware", "sign", "--key", priv, "--component", "bmc", "--version", "1.2.3", "--security-version", "-1", image}, code: 2},
		{name: "sign with a public key", args: []string{"firmware", "sign", "--key", pub, "--component", "bmc", "--version", "1.2.3", "--security-version", "4", image}, code: 1, stderr: []string{"unusable key"}},
		{name: "verify", args: []string{"firmware", "verify", "--pubkey", pub, image}, stdout: []string{image + ": good: bmc 1.2.3, security version 4", "signed by key"}},
		{name: "verify for the component", args: []string{"firmware", "verify", "--pubkey", otherPub, "--pubkey", pub, "--component", "bmc", image}, stdout: []string{"good"}},
		{name: "verify for another component", args: []string{"firmware", "verify", "--pubkey", pub, "--component", "rmc", image}, code: 1, stderr: []string{"wrong component: image is for the bmc, not the rmc"}},
		{name: "verify with an untrusted key", args: []string{"firmware", "verify", "--pubkey", otherPub, image}, code: 1, stderr: []string{"unknown signing key"}},
		{name: "verify without key", args: []string{"firmware", "verify", image}, code: 2, stderr: []string{"verify needs --pubkey"}},
		{name: "verify tampered image", before: tamper, args: []string{"firmware", "verify", "--pubkey", pub, image}, code: 1,
			stderr: []string{"rackctl: verify " + image + ": verifying image: firmware: image digest mismatch: sha256 "}},
		{name: "verify without manifest", before: func(t *testing.T) { _ = os.Remove(image + firmware.ManifestSuffix) },
			args: []string{"firmware", "verify", "--pubkey", pub, image}, code: 1, stderr: []string{"reading manifest", "no such file"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before(t)
			}
			out, errOut, code := rackctl(t, s.args...)
			if code != s.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, s.code, out, errOut)
			}
			for _, w := range s.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q lacks %q", out, w)
				}
			}
			for _, w := range s.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
		})
	}
	if st, err := os.Stat(priv); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key %v, %v", st.Mode(), err)
	}
}
