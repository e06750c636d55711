package bootstrap

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/racklet/rack/events"
	"github.com/racklet/rack/firmware"
)

// Errors, to check with errors.Is.
var (
	// ErrConfig: a configuration that is missing, malformed or
	// incomplete, or trust anchors that cannot be used.
	ErrConfig = errors.New("bootstrap: invalid configuration")
	// ErrInsecureURL: a URL that is not https (http, tftp, ...).
	ErrInsecureURL = errors.New("bootstrap: insecure URL")
)

// Where the boot environment finds its configuration and trust anchors in
// the initramfs.
const (
	// DefaultConfigFile is the optional JSON configuration.
	DefaultConfigFile = "/etc/racklet/bootstrap.json"
	// DefaultTrustDir holds the trust anchors: CAFile, KeysDir/*.pub and
	// EpochFile.
	DefaultTrustDir = "/etc/racklet"
	// CAFile (in the trust directory) holds the PEM certificates of the
	// CAs that HTTPS servers' certificates must chain to (the rack CA's
	// ca.crt).
	CAFile = "ca.crt"
	// KeysDir (in the trust directory) holds the public keys trusted to
	// sign OS images, one PEM file each named *.pub, as `rackctl firmware
	// keygen` writes them.
	KeysDir = "keys"
	// EpochFile (in the trust directory, optional) holds an RFC 3339 time,
	// the initramfs's build time: the earliest time the clock may show.
	EpochFile = "epoch"
)

// Limits on the configuration.
const (
	maxConfigFile = 64 << 10
	maxURL        = 2048
	maxAPIs       = 16
)

// Digest is the SHA-256 of an image, written "sha256:<64 lowercase hex>".
type Digest [sha256.Size]byte

func (d Digest) String() string { return "sha256:" + hex.EncodeToString(d[:]) }

// ParseDigest parses "sha256:<64 lowercase hex digits>".
func ParseDigest(s string) (Digest, error) {
	var d Digest
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 2*len(d) || strings.ToLower(h) != h {
		return d, fmt.Errorf("%w: digest %q is not sha256:<64 lowercase hex digits>", ErrConfig, clip(s))
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return d, fmt.Errorf("%w: digest %q is not sha256:<64 lowercase hex digits>", ErrConfig, clip(s))
	}
	return d, nil
}

// Config is what the boot environment needs to know. It comes from
// DefaultConfigFile (if present) and the kernel command line, whose
// values win; see the package documentation for the keys.
type Config struct {
	// Node is this node's name in the rack, e.g. "n3".
	Node string
	// APIs are the control plane's API URLs (https), tried in order
	// for stage reports.
	APIs []string
	// Image is the boot image's URL (https); its manifest is at Image +
	// firmware.ManifestSuffix.
	Image string
	// KeyID, if set, is the only trusted key that may have signed the
	// image.
	KeyID *firmware.KeyID
	// Digest, if set, is the SHA-256 the image must have.
	Digest *Digest
	// TrustDir holds the trust anchors (default DefaultTrustDir).
	TrustDir string
	// Token, if set, is the node's bearer token for stage reports
	// (rackctl pki token node NAME), from the configuration file or the
	// kernel command line; LoadCredentials falls back to the token file
	// in TrustDir. It never prints.
	Token Secret
	// tokenFrom says where Token came from, for the log.
	tokenFrom string
}

// Secret is a credential. It prints, marshals and logs with slog as
// "[redacted]", so that a configuration can be shown without leaking it.
type Secret string

const redacted = "[redacted]"

// String implements fmt.Stringer: "[redacted]", or "" when empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer (%#v).
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler, so that JSON (a
// configuration logged by a JSON handler) shows "[redacted]" too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// maxToken bounds a bearer token, as the control plane does
// (pki.MaxTokenBytes).
const maxToken = 4096

// checkToken accepts a bearer token of the form the control plane issues
// (a JWT: base64url parts and dots), at most maxToken bytes. Its errors
// never quote the token.
func checkToken(v string) error {
	if len(v) > maxToken {
		return fmt.Errorf("%w: token is longer than %d bytes", ErrConfig, maxToken)
	}
	if strings.Count(v, ".") != 2 || strings.ContainsFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) {
		return fmt.Errorf("%w: token is not a bearer token as rackctl pki token prints it (three base64url parts joined by dots)", ErrConfig)
	}
	return nil
}

// configJSON is the configuration file's form.
type configJSON struct {
	Node        string   `json:"node,omitempty"`
	API         []string `json:"api,omitempty"`
	Image       string   `json:"image,omitempty"`
	KeyID       string   `json:"keyId,omitempty"`
	ImageDigest string   `json:"imageDigest,omitempty"`
	TrustDir    string   `json:"trustDir,omitempty"`
	Token       string   `json:"token,omitempty"`
}

// DecodeConfig reads a configuration file: one JSON object with the
// fields node, api (a list of URLs), image, keyId, imageDigest, trustDir
// and token, all optional here (Validate checks that the merged result is
// complete); unknown fields, a second value or more than 64 KiB are
// refused (ErrConfig). Values are checked as on the command line.
func DecodeConfig(r io.Reader) (Config, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxConfigFile+1))
	if err != nil {
		return Config{}, fmt.Errorf("reading configuration: %w", err)
	}
	if len(b) > maxConfigFile {
		return Config{}, fmt.Errorf("%w: configuration file is larger than %d bytes", ErrConfig, maxConfigFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j configJSON
	if err := dec.Decode(&j); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Config{}, fmt.Errorf("%w: data after the configuration object", ErrConfig)
	}
	var c Config
	set := func(key, v string) error {
		if v == "" {
			return nil
		}
		return c.set(key, v)
	}
	for _, kv := range [][2]string{{"node", j.Node}, {"image", j.Image}, {"key", j.KeyID}, {"digest", j.ImageDigest}, {"token", j.Token}} {
		if err := set(kv[0], kv[1]); err != nil {
			return Config{}, err
		}
	}
	for _, u := range j.API {
		if err := c.set("api", u); err != nil {
			return Config{}, err
		}
	}
	if j.TrustDir != "" {
		if !filepath.IsAbs(j.TrustDir) {
			return Config{}, fmt.Errorf("%w: trustDir %q is not an absolute path", ErrConfig, clip(j.TrustDir))
		}
		c.TrustDir = filepath.Clean(j.TrustDir)
	}
	if c.Token != "" {
		c.tokenFrom = "configuration file"
	}
	return c, nil
}

// cmdlinePrefix marks the kernel command line parameters that are ours.
const cmdlinePrefix = "racklet."

// ApplyCmdline sets the fields named by racklet.* parameters, replacing
// what the configuration file said: racklet.node, racklet.api (a
// comma-separated list; it may be repeated), racklet.image, racklet.key,
// racklet.digest and racklet.token. Other parameters are ignored; an unknown racklet.*
// key, a racklet.* key without a value or one given twice (but
// racklet.api) is refused (ErrConfig). Trust anchors never come from the
// command line. On error the valid parameters are still applied, so that
// a failure can be reported to the control plane the line names.
func (c *Config) ApplyCmdline(params []Param) error {
	var (
		next Config
		errs []error
	)
	seen := map[string]bool{}
	for _, p := range params {
		key, ok := strings.CutPrefix(p.Key, cmdlinePrefix)
		if !ok {
			continue
		}
		if !p.HasValue || p.Value == "" {
			errs = append(errs, fmt.Errorf("%w: kernel parameter %s has no value", ErrConfig, clip(p.Key)))
			continue
		}
		if seen[key] && key != "api" {
			errs = append(errs, fmt.Errorf("%w: kernel parameter %s is given twice", ErrConfig, clip(p.Key)))
			continue
		}
		vals := []string{p.Value}
		if key == "api" {
			vals = strings.Split(p.Value, ",")
		}
		for _, v := range vals {
			if err := next.set(key, v); err != nil {
				errs = append(errs, fmt.Errorf("kernel parameter %s: %w", clip(p.Key), err))
				continue
			}
			seen[key] = true
		}
	}
	if seen["node"] {
		c.Node = next.Node
	}
	if seen["api"] {
		c.APIs = next.APIs
	}
	if seen["image"] {
		c.Image = next.Image
	}
	if seen["key"] {
		c.KeyID = next.KeyID
	}
	if seen["digest"] {
		c.Digest = next.Digest
	}
	if seen["token"] {
		c.Token, c.tokenFrom = next.Token, "kernel command line"
	}
	return errors.Join(errs...)
}

// set checks and sets one field by its command-line key.
func (c *Config) set(key, v string) error {
	switch key {
	case "node":
		if !events.ValidName(v) {
			return fmt.Errorf("%w: node %q is not a name ([a-z0-9-]{1,63})", ErrConfig, clip(v))
		}
		c.Node = v
	case "api":
		if err := CheckURL(v); err != nil {
			return fmt.Errorf("api URL: %w", err)
		}
		if len(c.APIs) == maxAPIs {
			return fmt.Errorf("%w: more than %d API URLs", ErrConfig, maxAPIs)
		}
		c.APIs = append(c.APIs, v)
	case "image":
		if err := CheckURL(v); err != nil {
			return fmt.Errorf("image URL: %w", err)
		}
		c.Image = v
	case "key":
		id, err := firmware.ParseKeyID(v)
		if err != nil {
			return fmt.Errorf("%w: key id %q is not 16 lowercase hex digits", ErrConfig, clip(v))
		}
		c.KeyID = &id
	case "digest":
		d, err := ParseDigest(v)
		if err != nil {
			return err
		}
		c.Digest = &d
	case "token":
		if err := checkToken(v); err != nil {
			return err
		}
		c.Token = Secret(v)
	default:
		return fmt.Errorf("%w: unknown key %s%s (known: node, api, image, key, digest, token)", ErrConfig, cmdlinePrefix, clip(key))
	}
	return nil
}

// Validate checks that the configuration is complete: a node, at least
// one API URL and an image URL.
func (c *Config) Validate() error {
	switch {
	case c.Node == "":
		return fmt.Errorf("%w: no node name (racklet.node=)", ErrConfig)
	case len(c.APIs) == 0:
		return fmt.Errorf("%w: no control-plane API URL (racklet.api=)", ErrConfig)
	case c.Image == "":
		return fmt.Errorf("%w: no boot image URL (racklet.image=)", ErrConfig)
	}
	return nil
}

// LoadConfig reads the configuration file at path (a missing file is an
// empty configuration) and applies the kernel command line to it. It does
// not validate the result. On error the Config holds what was valid.
func LoadConfig(path, cmdline string) (Config, error) {
	var (
		c    Config
		errs []error
	)
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		errs = append(errs, fmt.Errorf("reading configuration: %w", err))
	default:
		c, err = DecodeConfig(f)
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", path, err))
		}
	}
	params, err := ParseCmdline(cmdline)
	if err != nil {
		return c, errors.Join(append(errs, err)...)
	}
	if err := c.ApplyCmdline(params); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// CheckURL accepts only absolute https URLs with a host and without
// credentials; http://, tftp:// and the rest are ErrInsecureURL.
func CheckURL(s string) error {
	if len(s) > maxURL {
		return fmt.Errorf("%w: URL is longer than %d bytes", ErrConfig, maxURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%w: %q is not a URL", ErrConfig, clip(s))
	}
	switch {
	case u.Scheme != "https":
		scheme := u.Scheme
		if scheme == "" {
			scheme = "no scheme"
		}
		return fmt.Errorf("%w: %q uses %s; only https is allowed (never http or tftp)", ErrInsecureURL, clip(s), clip(scheme))
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%w: %q has no host", ErrConfig, clip(s))
	case u.User != nil:
		return fmt.Errorf("%w: %q carries credentials", ErrConfig, clip(s))
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	n := 80
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
