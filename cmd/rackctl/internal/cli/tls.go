package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/racklet/rack/controlplane/client"
	"github.com/racklet/rack/controlplane/pki"
)

// Environment variables that set the TLS flags' defaults.
const (
	CAEnv    = "RACK_CA"
	CertEnv  = "RACK_CERT"
	KeyEnv   = "RACK_KEY"
	TokenEnv = "RACK_TOKEN"
)

// tlsFlags are how rackctl proves who it is to a secured control plane:
// the rack's CA certificate to trust, and a client certificate and key
// (rackctl pki issue client) or a bearer token (rackctl pki token).
type tlsFlags struct {
	ca, cert, key, token string
}

func (f *tlsFlags) register(pf *pflag.FlagSet, getenv func(string) string) {
	env := func(k string) string {
		if getenv == nil {
			return ""
		}
		return getenv(k)
	}
	pf.StringVar(&f.ca, "ca", env(CAEnv), "the rack CA's certificate, to verify the members (env "+CAEnv+")")
	pf.StringVar(&f.cert, "client-cert", env(CertEnv), "client certificate for mutual TLS (env "+CertEnv+")")
	pf.StringVar(&f.key, "client-key", env(KeyEnv), "the client certificate's private key (env "+KeyEnv+")")
	pf.StringVar(&f.token, "token", env(TokenEnv), "bearer token instead of a client certificate (env "+TokenEnv+"; prefer the variable, flags show in ps)")
}

// options turns the flags into client options. No flags: plain HTTP or
// the system's roots, as the server URL says.
func (f *tlsFlags) options() ([]client.Option, error) {
	var opts []client.Option
	if (f.cert == "") != (f.key == "") {
		return nil, &usageError{errors.New("--client-cert and --client-key go together")}
	}
	if f.ca != "" || f.cert != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13}
		if f.ca != "" {
			ca, err := pki.ReadCert(f.ca)
			if err != nil {
				return nil, fmt.Errorf("reading --ca: %w", err)
			}
			rack := ""
			if len(ca.PermittedURIDomains) == 1 {
				rack = strings.TrimPrefix(ca.PermittedURIDomains[0], "racklet.")
			}
			trust := pki.NewTrust(ca, rack, nil)
			cfg = trust.ClientConfig(tls.Certificate{})
			cfg.Certificates = nil
		}
		if f.cert != "" {
			pair, _, err := pki.LoadKeyPair(f.cert, f.key)
			if err != nil {
				return nil, err
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	if f.token != "" {
		if _, err := os.Stat(f.token); err == nil {
			return nil, &usageError{errors.New("--token takes the token itself, not a file; use --token \"$(cat FILE)\" or " + TokenEnv)}
		}
		opts = append(opts, client.WithBearerToken(strings.TrimSpace(f.token)))
	}
	return opts, nil
}
