package bootstrap

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The node's credentials in the trust directory, all optional. They prove
// to the control plane which node reports (role node: it may only POST
// its own boot stages); they are per node, so an initramfs that holds them
// belongs to one node.
const (
	// TokenFile holds the node's bearer token (rackctl pki token node
	// NAME), one line. Preferred over racklet.token: the kernel command
	// line is readable by every process (/proc/cmdline) and often travels
	// in plain text (boot loader configuration, PXE).
	TokenFile = "token"
	// NodeCertFile and NodeKeyFile hold the node's client certificate and
	// its key, PEM, as rackctl pki issue node NAME writes them (NAME.crt,
	// NAME.key). Both or neither.
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

// Credentials are what the boot environment proves its node's identity
// with when it reports stages.
type Credentials struct {
	// Token is the bearer token, sent as "Authorization: Bearer" (empty:
	// none).
	Token Secret
	// TokenFrom says where Token came from: "kernel command line",
	// "configuration file" or the token file's path. Log this, never
	// the token.
	TokenFrom string
	// Cert is the node's client certificate, presented when a server asks
	// for one (nil: none).
	Cert *tls.Certificate
}

// LoadCredentials finds the node's credentials for c. The token is, in
// order: racklet.token on the kernel command line, "token" in the
// configuration file (both already merged into c.Token, the command line
// winning as for every field), else the file TokenFile in the trust
// directory (c.TrustDir, DefaultTrustDir if empty). The certificate is
// NodeCertFile with NodeKeyFile in the trust directory; its common name
// must be c.Node when that is set. Nothing present is no credentials and
// no error: an unsecured control plane needs none. A file that exists but
// cannot be used is ErrConfig; errors never quote the token. On error the
// Credentials hold what was valid (a token beside a broken certificate),
// so that the failure can still be reported.
func LoadCredentials(c Config) (Credentials, error) {
	dir := c.TrustDir
	if dir == "" {
		dir = DefaultTrustDir
	}
	var cr Credentials
	if c.Token != "" {
		cr.Token, cr.TokenFrom = c.Token, c.tokenFrom
		if cr.TokenFrom == "" {
			cr.TokenFrom = "configuration"
		}
	} else {
		path := filepath.Join(dir, TokenFile)
		tok, err := readToken(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return Credentials{}, err
		default:
			cr.Token, cr.TokenFrom = tok, path
		}
	}

	certPath, keyPath := filepath.Join(dir, NodeCertFile), filepath.Join(dir, NodeKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		return cr, nil
	case errors.Is(certErr, os.ErrNotExist):
		return cr, fmt.Errorf("%w: %s without %s", ErrConfig, keyPath, NodeCertFile)
	case errors.Is(keyErr, os.ErrNotExist):
		return cr, fmt.Errorf("%w: %s without %s", ErrConfig, certPath, NodeKeyFile)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return cr, fmt.Errorf("%w: the node's certificate %s: %v", ErrConfig, certPath, err)
	}
	if cn := pair.Leaf.Subject.CommonName; c.Node != "" && cn != c.Node {
		return cr, fmt.Errorf("%w: the node's certificate %s is for %q, not this node %q", ErrConfig, certPath, clip(cn), c.Node)
	}
	cr.Cert = &pair
	return cr, nil
}

// readToken reads a token file: the token, optionally followed by a
// newline (surrounding white space is dropped).
func readToken(path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("%w: reading the token: %v", ErrConfig, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxToken+64))
	if err != nil {
		return "", fmt.Errorf("%w: reading the token: %v", ErrConfig, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%w: the token file %s is empty", ErrConfig, path)
	}
	if err := checkToken(tok); err != nil {
		return "", fmt.Errorf("the token file %s: %w", path, err)
	}
	return Secret(tok), nil
}
