package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/firmware"
)

// newFirmwareCommand is `rackctl firmware`: signing keys and signed images
// (local files), and the firmware version a BMC should run (the control
// plane).
func newFirmwareCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firmware",
		Short: "Sign and verify firmware images, and update the BMCs' firmware",
		Long: `Firmware images for the BMCs and the RMC are signed with ed25519 keys. The
manifest (component, version, security version, size, SHA-256, key id and
signature) is stored beside the image as IMAGE` + firmware.ManifestSuffix + `.

The private key is a PEM PKCS#8 file of mode 0600, the public key a PEM
PKIX file, as OpenSSL writes them; a key's id is the first 8 bytes of the
SHA-256 of the public key, in hex. keygen, sign and verify work on local
files only.

set asks the control plane to install a version on a BMC: the firmware
reconciler takes the image from its repository, a directory of signed
images named COMPONENT-VERSION.bin (e.g. bmc-1.2.3.bin, its manifest
beside it, as sign leaves it). "rackctl get firmware" shows every BMC's
desired and running version.`,
		Example: `  rackctl firmware keygen --out ./keys
  rackctl firmware sign --key ./keys/firmware-signing.key --component bmc --version 1.2.3 --security-version 4 bmc-1.2.3.bin
  rackctl firmware verify --pubkey ./keys/firmware-signing.pub bmc-1.2.3.bin
  rackctl firmware set n3-bmc 1.2.3 --wait`,
	}
	cmd.AddCommand(newFirmwareKeygenCommand(g), newFirmwareSignCommand(g), newFirmwareVerifyCommand(g), newFirmwareSetCommand(g))
	return cmd
}

func newFirmwareKeygenCommand(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Make an ed25519 firmware signing key pair",
		Long: `keygen writes DIR/` + firmware.PrivateKeyFile + ` (the private key, mode 0600) and
DIR/` + firmware.PublicKeyFile + ` (the public key), creating DIR if needed. It never
replaces existing key files.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return &usageError{errors.New("keygen needs --out DIR")}
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			pub, priv, err := ed25519.GenerateKey(nil)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			privPath, pubPath, err := firmware.WriteKeyPair(out, priv)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			_, err = fmt.Fprintf(g.stdout, "key %s\nprivate key %s (keep it secret)\npublic key %s\n", firmware.KeyIDOf(pub), privPath, pubPath)
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory for the key files")
	return cmd
}

func newFirmwareSignCommand(g *globals) *cobra.Command {
	var key, component, version string
	var sv uint32
	cmd := &cobra.Command{
		Use:   "sign --key KEY --component bmc|rmc|os --version X.Y.Z --security-version N IMAGE",
		Short: "Sign a firmware image, writing IMAGE" + firmware.ManifestSuffix,
		Long: `sign writes the manifest of IMAGE, signed with the private key KEY, to
IMAGE` + firmware.ManifestSuffix + `, replacing any manifest there.

The security version is what the devices' anti-rollback counter is
compared with: a device refuses an image whose security version is below
its counter, and raises the counter to an image's security version once
the image is confirmed. Raise it when a release fixes a vulnerability.`,
		Args: exactArgs("IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			for _, name := range []string{"key", "component", "version", "security-version"} {
				if !f.Changed(name) {
					return &usageError{fmt.Errorf("sign needs --%s", name)}
				}
			}
			c := firmware.Component(component)
			if !c.Valid() {
				return &usageError{fmt.Errorf("invalid --component %q: use bmc, rmc or os", component)}
			}
			v, err := firmware.ParseVersion(version)
			if err != nil {
				return &usageError{fmt.Errorf("invalid --version %q: use major.minor.patch, e.g. 1.2.3", version)}
			}
			priv, err := firmware.ReadPrivateKey(key)
			if err != nil {
				return fmt.Errorf("sign: %w", err)
			}
			image, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("sign: reading image: %w", err)
			}
			m, err := firmware.Sign(image, firmware.ManifestFields{Component: c, Version: v, SecurityVersion: sv}, priv)
			if err != nil {
				return fmt.Errorf("sign %s: %w", args[0], err)
			}
			path := firmware.ManifestPath(args[0])
			if err := firmware.WriteManifest(path, m); err != nil {
				return fmt.Errorf("sign %s: %w", args[0], err)
			}
			_, err = fmt.Fprintf(g.stdout, "signed %s: %s %s, security version %d, %d bytes, key %s\nwrote %s\n",
				args[0], m.Component, m.Version, m.SecurityVersion, m.Size, m.KeyID, path)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "private key file (PEM PKCS#8 ed25519, mode 0600)")
	f.StringVar(&component, "component", "", "what the image is for: bmc, rmc or os (a node OS boot image)")
	f.StringVar(&version, "version", "", "the image's version, major.minor.patch")
	f.Uint32Var(&sv, "security-version", 0, "the image's security version (anti-rollback)")
	_ = cmd.RegisterFlagCompletionFunc("component", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"bmc", "rmc", "os"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func newFirmwareVerifyCommand(g *globals) *cobra.Command {
	var pubkeys []string
	var component, manifest string
	cmd := &cobra.Command{
		Use:   "verify --pubkey PUB IMAGE",
		Short: "Verify a firmware image against its manifest and trusted keys",
		Long: `verify checks that IMAGE` + firmware.ManifestSuffix + ` (or --manifest) is well formed,
signed by one of the --pubkey keys, for --component if given, and that
IMAGE has the size and SHA-256 it names. It exits non-zero if not.`,
		Args: exactArgs("IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(pubkeys) == 0 {
				return &usageError{errors.New("verify needs --pubkey")}
			}
			if component != "" && !firmware.Component(component).Valid() {
				return &usageError{fmt.Errorf("invalid --component %q: use bmc, rmc or os", component)}
			}
			var keys []ed25519.PublicKey
			for _, p := range pubkeys {
				k, err := firmware.ReadPublicKey(p)
				if err != nil {
					return fmt.Errorf("verify: %w", err)
				}
				keys = append(keys, k)
			}
			if manifest == "" {
				manifest = firmware.ManifestPath(args[0])
			}
			m, err := firmware.ReadManifest(manifest)
			if err != nil {
				return fmt.Errorf("verify %s: %w", args[0], err)
			}
			image, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("verify: reading image: %w", err)
			}
			want := firmware.Component(component)
			if want == "" {
				want = m.Component
			}
			if err := firmware.Verify(image, m, firmware.NewKeyring(keys...), want); err != nil {
				return fmt.Errorf("verify %s: %w", args[0], err)
			}
			_, err = fmt.Fprintf(g.stdout, "%s: good: %s %s, security version %d, %d bytes, sha256 %x, signed by key %s\n",
				args[0], m.Component, m.Version, m.SecurityVersion, m.Size, m.SHA256, m.KeyID)
			return err
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&pubkeys, "pubkey", nil, "trusted public key file (PEM PKIX ed25519); repeat for several")
	f.StringVar(&component, "component", "", "require the image to be for this component (bmc, rmc or os)")
	f.StringVar(&manifest, "manifest", "", "manifest file (default IMAGE"+firmware.ManifestSuffix+")")
	return cmd
}
