package cli

import (
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racklet/rack/controlplane/pki"
)

// newPKICommand is `rackctl pki`: the rack's certificate authority. It
// works on local files only; it does not talk to the control plane.
func newPKICommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Create the rack's certificate authority and issue, revoke and show certificates",
		Long: `Every link of the control plane is mutual TLS against one certificate
authority per rack. Identities are SPIFFE IDs (spiffe://racklet.<rack>/<kind>/<name>)
and the role is the certificate's Organization, as Kubernetes reads groups.

Kinds and roles:
  member       rackd; role member; needs the hosts it serves on (--host)
  client       people and tools (rackctl, the dashboard); role viewer, operator or admin
  integration  NATS subscribers; role integration (subscribe to events only)

The CA directory holds ca.crt, ca.key (mode 0600, keep it offline when you
can) and ca.crl, the revocation list. Nothing is ever overwritten.

Rotation: issue a new certificate under a new name or after moving the old
files away, deploy it, then revoke the old one. To rotate the CA, create a new
one in another directory, give members both CA certificates as trust
anchors while you reissue every certificate, then drop the old CA.`,
		Example: `  rackctl pki init --dir ./pki --rack rack1
  rackctl pki issue member m1 --dir ./pki --host 127.0.0.1 --host m1.rack1.lan
  rackctl pki issue client alice --role operator --dir ./pki
  rackctl pki issue integration grafana --dir ./pki --days 365
  rackctl pki token dashboard --role viewer --dir ./pki
  rackctl pki revoke --dir ./pki ./pki/alice.crt
  rackctl pki show ./pki/m1.crt`,
	}
	cmd.AddCommand(newPKIInitCommand(g), newPKIIssueCommand(g), newPKITokenCommand(g), newPKIRevokeCommand(g), newPKIShowCommand(g))
	return cmd
}

func parseAlgorithm(s string) (pki.Algorithm, error) {
	switch a := pki.Algorithm(s); a {
	case pki.ECDSAP256, pki.Ed25519:
		return a, nil
	}
	return "", &usageError{fmt.Errorf("invalid --algorithm %q: use %s or %s", s, pki.ECDSAP256, pki.Ed25519)}
}

func newPKIInitCommand(g *globals) *cobra.Command {
	var dir, rack, alg string
	var days int
	cmd := &cobra.Command{
		Use:   "init --dir DIR --rack RACK",
		Short: "Create the rack's certificate authority",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || rack == "" {
				return &usageError{errors.New("init needs --dir DIR and --rack RACK")}
			}
			a, err := parseAlgorithm(alg)
			if err != nil {
				return err
			}
			if days <= 0 {
				return &usageError{fmt.Errorf("invalid --days %d: must be positive", days)}
			}
			now := g.now()
			ca, err := pki.NewCA(rack, a, time.Duration(days)*24*time.Hour, now)
			if err != nil {
				return fmt.Errorf("init: %w", err)
			}
			if err := pki.WriteCA(dir, ca); err != nil {
				return fmt.Errorf("init: %w", err)
			}
			_, crl, err := ca.Revoke(nil, nil, 0, now)
			if err != nil {
				return fmt.Errorf("init: %w", err)
			}
			if err := pki.WriteRevocations(filepath.Join(dir, pki.CRLFile), crl); err != nil {
				return fmt.Errorf("init: %w", err)
			}
			_, err = fmt.Fprintf(g.stdout, "CA for rack %s, valid until %s\n%s\n%s (keep it secret)\n%s (revocation list)\n",
				rack, ca.Cert.NotAfter.Format(time.DateOnly), filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile), filepath.Join(dir, pki.CRLFile))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory for the CA's files (created, mode 0700)")
	f.StringVar(&rack, "rack", "", "the rack's name")
	f.StringVar(&alg, "algorithm", string(pki.ECDSAP256), "key algorithm: ecdsa-p256 or ed25519")
	f.IntVar(&days, "days", int(pki.DefaultCALifetime/(24*time.Hour)), "the CA's lifetime in days")
	return cmd
}

func newPKIIssueCommand(g *globals) *cobra.Command {
	var dir, out, role, alg string
	var hosts []string
	var days int
	cmd := &cobra.Command{
		Use:   "issue member|client|integration NAME",
		Short: "Issue a certificate signed by the rack's CA",
		Long: `issue writes OUT/NAME.crt and OUT/NAME.key (mode 0600); OUT defaults to the CA
directory. Lifetimes default to 365 days for members and 90 days for clients
and integrations.`,
		Args: exactArgs("KIND", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := pki.Kind(args[0])
			switch kind {
			case pki.KindMember, pki.KindClient, pki.KindIntegration:
			default:
				return &usageError{fmt.Errorf("invalid kind %q: use member, client or integration", args[0])}
			}
			if dir == "" {
				return &usageError{errors.New("issue needs --dir DIR (the CA's directory)")}
			}
			if kind == pki.KindClient && role == "" {
				return &usageError{errors.New("a client certificate needs --role viewer|operator|admin")}
			}
			if kind == pki.KindMember && len(hosts) == 0 {
				return &usageError{errors.New("a member certificate needs --host (the IPs and DNS names it serves on)")}
			}
			a, err := parseAlgorithm(alg)
			if err != nil {
				return err
			}
			if days < 0 {
				return &usageError{fmt.Errorf("invalid --days %d", days)}
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return fmt.Errorf("issue: %w", err)
			}
			is, err := ca.Issue(pki.Request{Kind: kind, Name: args[1], Role: pki.Role(role), Hosts: hosts, Algorithm: a,
				Lifetime: time.Duration(days) * 24 * time.Hour}, g.now())
			if err != nil {
				if errors.Is(err, pki.ErrInvalid) {
					return &usageError{err}
				}
				return fmt.Errorf("issue: %w", err)
			}
			if out == "" {
				out = dir
			}
			certPath, keyPath, err := pki.WriteIssued(out, is)
			if err != nil {
				return fmt.Errorf("issue: %w", err)
			}
			_, err = fmt.Fprintf(g.stdout, "%s (role %s), serial %s, valid until %s\n%s\n%s (keep it secret)\n",
				is.Identity.SPIFFEID(), is.Identity.Role, is.Cert.SerialNumber.Text(16), is.Cert.NotAfter.Format(time.DateOnly), certPath, keyPath)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "the CA's directory")
	f.StringVar(&out, "out", "", "directory for the certificate and key (default: --dir)")
	f.StringVar(&role, "role", "", "a client's role: viewer, operator or admin")
	f.StringSliceVar(&hosts, "host", nil, "a member's IP addresses and DNS names (repeat or comma-separate)")
	f.StringVar(&alg, "algorithm", string(pki.ECDSAP256), "key algorithm: ecdsa-p256 or ed25519")
	f.IntVar(&days, "days", 0, "lifetime in days (default 365 for members, 90 otherwise)")
	return cmd
}

func newPKITokenCommand(g *globals) *cobra.Command {
	var dir, role string
	var days int
	cmd := &cobra.Command{
		Use:   "token NAME --role viewer|operator|admin --dir DIR",
		Short: "Issue a bearer token for a client that cannot use a certificate (a dashboard)",
		Long: `token prints a bearer token (a JWT signed by the rack's CA key) for the client
NAME with a role. Send it as "Authorization: Bearer TOKEN". Revoke it with
rackctl pki revoke and the serial token prints on stderr.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" || role == "" {
				return &usageError{errors.New("token needs --dir DIR and --role viewer|operator|admin")}
			}
			if days < 0 {
				return &usageError{fmt.Errorf("invalid --days %d", days)}
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			tok, sn, err := ca.IssueToken(args[0], pki.Role(role), time.Duration(days)*24*time.Hour, g.now())
			if err != nil {
				if errors.Is(err, pki.ErrInvalid) {
					return &usageError{err}
				}
				return fmt.Errorf("token: %w", err)
			}
			fmt.Fprintf(g.stderr, "token for client %s (role %s), serial %s\n", args[0], role, sn.Text(16))
			_, err = fmt.Fprintln(g.stdout, tok)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "the CA's directory")
	f.StringVar(&role, "role", "", "viewer, operator or admin")
	f.IntVar(&days, "days", 0, "lifetime in days (default 30)")
	return cmd
}

func newPKIRevokeCommand(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "revoke --dir DIR CERT|SERIAL...",
		Short: "Add certificates to the rack's revocation list",
		Long: `revoke adds certificates (by file, or by serial number in hex as issue and show
print it) to DIR/ca.crl and re-signs it. Give the new ca.crl to every member
(--crl); members read it again when it changes.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &usageError{errors.New("revoke needs at least one certificate file or serial number")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return &usageError{errors.New("revoke needs --dir DIR (the CA's directory)")}
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return fmt.Errorf("revoke: %w", err)
			}
			var serials []*big.Int
			for _, a := range args {
				if strings.HasSuffix(a, ".crt") || strings.HasSuffix(a, ".pem") || strings.ContainsRune(a, filepath.Separator) {
					cert, err := pki.ReadCert(a)
					if err != nil {
						return fmt.Errorf("revoke: %w", err)
					}
					if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
						return fmt.Errorf("revoke: %s was not issued by this CA: %w", a, err)
					}
					serials = append(serials, cert.SerialNumber)
					continue
				}
				sn, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(a), "0x"), 16)
				if !ok || sn.Sign() <= 0 {
					return &usageError{fmt.Errorf("%q is neither a certificate file (.crt, .pem) nor a hex serial number", a)}
				}
				serials = append(serials, sn)
			}
			now := g.now()
			path := filepath.Join(dir, pki.CRLFile)
			prev, err := pki.LoadRevocations(path, ca.Cert, now)
			if err != nil {
				return fmt.Errorf("revoke: %w", err)
			}
			if prev.Len() == 0 {
				prev = nil
			}
			next, crl, err := ca.Revoke(prev, serials, 0, now)
			if err != nil {
				return fmt.Errorf("revoke: %w", err)
			}
			if err := pki.WriteRevocations(path, crl); err != nil {
				return fmt.Errorf("revoke: %w", err)
			}
			_, err = fmt.Fprintf(g.stdout, "%s: %d revoked, valid until %s\n", path, next.Len(), next.NextUpdate().Format(time.DateOnly))
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the CA's directory")
	return cmd
}

func newPKIShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show CERT",
		Short: "Show the identity, role, serial and validity of a certificate",
		Args:  exactArgs("CERT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cert, err := pki.ReadCert(args[0])
			if err != nil {
				return fmt.Errorf("show: %w", err)
			}
			if cert.IsCA {
				_, err = fmt.Fprintf(g.stdout, "CA %q\nserial %s\nvalid %s to %s\n", cert.Subject.CommonName, cert.SerialNumber.Text(16),
					cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
				return err
			}
			id, err := pki.IdentityOf(cert)
			if err != nil {
				return fmt.Errorf("show: %w", err)
			}
			hosts := append([]string(nil), cert.DNSNames...)
			for _, ip := range cert.IPAddresses {
				hosts = append(hosts, ip.String())
			}
			_, err = fmt.Fprintf(g.stdout, "identity %s\nrack %s\nkind %s\nname %s\nrole %s\nserial %s\nvalid %s to %s\nhosts %s\n",
				id.SPIFFEID(), id.Rack, id.Kind, id.Name, id.Role, cert.SerialNumber.Text(16),
				cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339), strings.Join(hosts, ","))
			return err
		},
	}
}
