package cli

import (
	"errors"
	"fmt"
	"math/big"
	"os"
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
  node         a node's boot environment (racklet-init); role node: it may only
               POST /v1/nodes/<its name>/boot/stages (no reads, no NATS)

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
  rackctl pki issue node n3 --dir ./pki --out ./n3
  rackctl pki token dashboard --role viewer --dir ./pki
  rackctl pki token node n3 --dir ./pki --out ./n3/token
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
		Use:   "issue member|client|integration|node NAME",
		Short: "Issue a certificate signed by the rack's CA",
		Long: `issue writes OUT/NAME.crt and OUT/NAME.key (mode 0600); OUT defaults to the CA
directory. Lifetimes default to 365 days for members and nodes and 90 days for
clients and integrations.

Only a client takes --role; the other kinds have a fixed role. A node's
certificate (role node) lets the node's boot environment report its own boot
stages and nothing else: put NAME.crt and NAME.key into the node's initramfs
as /etc/racklet/node.crt and /etc/racklet/node.key (see docs/security.md).`,
		Args: exactArgs("KIND", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := pki.ParseKind(args[0])
			if err != nil {
				return &usageError{fmt.Errorf("invalid kind %q: use member, client, integration or node", args[0])}
			}
			if dir == "" {
				return &usageError{errors.New("issue needs --dir DIR (the CA's directory)")}
			}
			if kind == pki.KindClient && role == "" {
				return &usageError{errors.New("a client certificate needs --role viewer|operator|admin")}
			}
			if kind == pki.KindNode && role != "" && role != string(pki.RoleNode) {
				return &usageError{fmt.Errorf("a node's role is always %s: drop --role %s", pki.RoleNode, role)}
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
	f.StringVar(&role, "role", "", "a client's role: viewer, operator or admin (other kinds have a fixed role)")
	f.StringSliceVar(&hosts, "host", nil, "a member's IP addresses and DNS names (repeat or comma-separate)")
	f.StringVar(&alg, "algorithm", string(pki.ECDSAP256), "key algorithm: ecdsa-p256 or ed25519")
	f.IntVar(&days, "days", 0, "lifetime in days (default 365 for members and nodes, 90 otherwise)")
	return cmd
}

func newPKITokenCommand(g *globals) *cobra.Command {
	var dir, role, out string
	var days int
	cmd := &cobra.Command{
		Use:   "token [client|node] NAME --dir DIR [--role viewer|operator|admin] [--out FILE]",
		Short: "Issue a bearer token for a client that cannot use a certificate (a dashboard) or for a node",
		Long: `token prints a bearer token (a JWT signed by the rack's CA key) on stdout, or
writes it to --out FILE (mode 0600, never overwritten), and its serial on
stderr. Send it as "Authorization: Bearer TOKEN". Revoke it with rackctl pki
revoke and that serial.

token [client] NAME --role ROLE is for a client (a dashboard) with role viewer,
operator or admin; it lives 30 days unless --days says otherwise.

token node NAME is for the boot environment of node NAME (role node, no --role):
it may only report that node's boot stages (POST /v1/nodes/NAME/boot/stages).
It lives 365 days unless --days says otherwise. Put it into the node's
initramfs as /etc/racklet/token (mode 0600), not on the kernel command line,
which every process on the node can read (see docs/security.md).`,
		Example: `  rackctl pki token dashboard --role viewer --dir ./pki
  rackctl pki token node n3 --dir ./pki --out ./n3/token`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 1:
			case len(args) == 2 && (args[0] == string(pki.KindClient) || args[0] == string(pki.KindNode)):
			case len(args) == 2:
				return &usageError{fmt.Errorf("invalid kind %q: tokens are for client or node", args[0])}
			default:
				return &usageError{fmt.Errorf("%s wants [client|node] NAME, got %d argument(s)", cmd.CommandPath(), len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name := pki.KindClient, args[len(args)-1]
			if len(args) == 2 {
				kind = pki.Kind(args[0])
			}
			if dir == "" {
				return &usageError{errors.New("token needs --dir DIR (the CA's directory)")}
			}
			switch {
			case kind == pki.KindClient && role == "":
				return &usageError{errors.New("a client token needs --role viewer|operator|admin")}
			case kind == pki.KindNode && role != "" && role != string(pki.RoleNode):
				return &usageError{fmt.Errorf("a node's role is always %s: drop --role %s", pki.RoleNode, role)}
			}
			if days < 0 {
				return &usageError{fmt.Errorf("invalid --days %d", days)}
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			lifetime := time.Duration(days) * 24 * time.Hour
			var (
				tok string
				sn  *big.Int
			)
			if kind == pki.KindNode {
				tok, sn, err = ca.IssueNodeToken(name, lifetime, g.now())
				role = string(pki.RoleNode)
			} else {
				tok, sn, err = ca.IssueToken(name, pki.Role(role), lifetime, g.now())
			}
			if err != nil {
				if errors.Is(err, pki.ErrInvalid) {
					return &usageError{err}
				}
				return fmt.Errorf("token: %w", err)
			}
			if out != "" {
				if err := writeSecret(out, tok+"\n"); err != nil {
					return fmt.Errorf("token: %w", err)
				}
				fmt.Fprintf(g.stderr, "token for %s %s (role %s), serial %s, written to %s\n", kind, name, role, sn.Text(16), out)
				return nil
			}
			fmt.Fprintf(g.stderr, "token for %s %s (role %s), serial %s\n", kind, name, role, sn.Text(16))
			_, err = fmt.Fprintln(g.stdout, tok)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "the CA's directory")
	f.StringVar(&role, "role", "", "a client's role: viewer, operator or admin (a node's is always node)")
	f.IntVar(&days, "days", 0, "lifetime in days (default 30 for clients, 365 for nodes)")
	f.StringVar(&out, "out", "", "write the token to this file (mode 0600, never overwritten) instead of stdout")
	return cmd
}

// writeSecret writes data to a new file of mode 0600; an existing file is
// an error, never replaced.
func writeSecret(path, data string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
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
