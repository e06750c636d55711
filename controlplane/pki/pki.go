// Package pki is the rack's public key infrastructure: one certificate
// authority per rack, and the certificates it issues to members (rackd),
// clients (rackctl, the dashboard), integrations (NATS subscribers) and
// nodes (a node's boot environment reporting its boot stages).
//
// Identities follow two de-facto standards, so that other tools read them:
//
//   - the certificate's URI SAN is a SPIFFE ID,
//     spiffe://racklet.<rack>/<kind>/<name>, e.g.
//     spiffe://racklet.rack1/client/alice;
//   - the role is the subject's Organization, as Kubernetes reads groups
//     from x509 client certificates (CN = user, O = groups).
//
// Kinds are member, client, integration and node. A member's role is
// always "member"; an integration's is always "integration"; a node's is
// always "node" (it may only report its own boot stages); a client has one
// of viewer, operator and admin. Keys are ECDSA P-256 (every TLS stack,
// nats-server and etcd take it) or ed25519 on request.
//
// On disk a CA is DIR/ca.crt and DIR/ca.key (mode 0600); an issued
// identity is NAME.crt and NAME.key. Nothing is ever overwritten.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/racklet/rack/events"
)

// Errors, to check with errors.Is.
var (
	ErrInvalid  = errors.New("pki: invalid request")
	ErrIdentity = errors.New("pki: certificate carries no valid racklet identity")
	ErrExists   = errors.New("pki: file exists")
)

// Kind is what an identity is.
type Kind string

const (
	KindMember      Kind = "member"
	KindClient      Kind = "client"
	KindIntegration Kind = "integration"
	// KindNode is a compute unit's boot environment (racklet-init): it may
	// report its own boot stages and nothing else.
	KindNode Kind = "node"
)

// Role is what an identity may do.
type Role string

const (
	RoleViewer      Role = "viewer"
	RoleOperator    Role = "operator"
	RoleAdmin       Role = "admin"
	RoleMember      Role = "member"
	RoleIntegration Role = "integration"
	// RoleNode may POST /v1/nodes/<its own name>/boot/stages, nothing
	// else (no reads, no NATS).
	RoleNode Role = "node"
)

// Kinds are the identity kinds; Roles are the roles.
func Kinds() []Kind { return []Kind{KindMember, KindClient, KindIntegration, KindNode} }
func Roles() []Role {
	return []Role{RoleViewer, RoleOperator, RoleAdmin, RoleMember, RoleIntegration, RoleNode}
}

// ParseKind reads a kind by its name (ErrInvalid if there is none).
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds() {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("%w: kind must be member, client, integration or node, not %q", ErrInvalid, s)
}

// ParseRole reads a role by its name (ErrInvalid if there is none).
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("%w: role must be viewer, operator, admin, member, integration or node, not %q", ErrInvalid, s)
}

// FixedRole is the role every identity of kind k has, and false for a
// kind whose role is chosen (client).
func (k Kind) FixedRole() (Role, bool) {
	switch k {
	case KindMember:
		return RoleMember, true
	case KindIntegration:
		return RoleIntegration, true
	case KindNode:
		return RoleNode, true
	}
	return "", false
}

// Algorithm is a key algorithm.
type Algorithm string

const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	Ed25519   Algorithm = "ed25519"
)

// Lifetimes by default: long for the CA (rotated deliberately), a year for
// members and nodes (rotated with the rack's maintenance; a node's
// credentials live in its boot environment, and all they allow is
// reporting that node's boot stages), 90 days for people and integrations.
const (
	DefaultCALifetime     = 10 * 365 * 24 * time.Hour
	DefaultMemberLifetime = 365 * 24 * time.Hour
	DefaultNodeLifetime   = 365 * 24 * time.Hour
	DefaultClientLifetime = 90 * 24 * time.Hour
)

// Identity is who a certificate says its holder is.
type Identity struct {
	Rack string `json:"rack"`
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
	Role Role   `json:"role"`
}

// String is the identity as audit records carry it: kind/name.
func (id Identity) String() string { return string(id.Kind) + "/" + id.Name }

// SPIFFEID is the identity's SPIFFE ID.
func (id Identity) SPIFFEID() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: trustDomain(id.Rack), Path: "/" + string(id.Kind) + "/" + id.Name}
}

func trustDomain(rack string) string { return "racklet." + rack }

// Validate checks the identity: names, kind, and a role that fits the kind.
func (id Identity) Validate() error {
	if !events.ValidName(id.Rack) {
		return fmt.Errorf("%w: rack %q must match [a-z0-9-]{1,63}", ErrInvalid, id.Rack)
	}
	if !events.ValidName(id.Name) {
		return fmt.Errorf("%w: name %q must match [a-z0-9-]{1,63}", ErrInvalid, id.Name)
	}
	switch id.Kind {
	case KindMember, KindIntegration, KindNode:
		if want, _ := id.Kind.FixedRole(); id.Role != want {
			return fmt.Errorf("%w: the role of a %s is %q, not %q", ErrInvalid, id.Kind, want, id.Role)
		}
	case KindClient:
		switch id.Role {
		case RoleViewer, RoleOperator, RoleAdmin:
		default:
			return fmt.Errorf("%w: a client's role must be viewer, operator or admin, not %q", ErrInvalid, id.Role)
		}
	default:
		return fmt.Errorf("%w: kind must be member, client, integration or node, not %q", ErrInvalid, id.Kind)
	}
	return nil
}

// ParseSPIFFEID reads a racklet SPIFFE ID: spiffe://racklet.<rack>/<kind>/<name>.
func ParseSPIFFEID(s string) (rack string, kind Kind, name string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", "", fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if u.Scheme != "spiffe" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return "", "", "", fmt.Errorf("%w: %q is not a plain spiffe:// ID", ErrIdentity, s)
	}
	rack, ok := strings.CutPrefix(u.Host, "racklet.")
	if !ok || !events.ValidName(rack) {
		return "", "", "", fmt.Errorf("%w: trust domain %q is not racklet.<rack>", ErrIdentity, u.Host)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 || !events.ValidName(parts[1]) {
		return "", "", "", fmt.Errorf("%w: path %q is not /<kind>/<name>", ErrIdentity, u.Path)
	}
	return rack, Kind(parts[0]), parts[1], nil
}

// IdentityOf reads the identity of a certificate the rack's CA issued. It
// does not verify the chain; TLS does that before.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if len(cert.URIs) != 1 {
		return Identity{}, fmt.Errorf("%w: want exactly one URI SAN, found %d", ErrIdentity, len(cert.URIs))
	}
	rack, kind, name, err := ParseSPIFFEID(cert.URIs[0].String())
	if err != nil {
		return Identity{}, err
	}
	if len(cert.Subject.Organization) != 1 {
		return Identity{}, fmt.Errorf("%w: want exactly one organization (the role), found %d", ErrIdentity, len(cert.Subject.Organization))
	}
	id := Identity{Rack: rack, Kind: kind, Name: name, Role: Role(cert.Subject.Organization[0])}
	if cert.Subject.CommonName != name {
		return Identity{}, fmt.Errorf("%w: common name %q differs from the SPIFFE ID's name %q", ErrIdentity, cert.Subject.CommonName, name)
	}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	return id, nil
}

func newKey(alg Algorithm) (crypto.Signer, error) {
	switch alg {
	case "", ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("%w: algorithm must be %s or %s, not %q", ErrInvalid, ECDSAP256, Ed25519, alg)
}

func serial() (*big.Int, error) {
	// 128 random bits, positive: RFC 5280 allows up to 20 octets.
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// CA is a rack's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	Rack string
}

// NewCA makes a self-signed CA for rack.
func NewCA(rack string, alg Algorithm, lifetime time.Duration, now time.Time) (*CA, error) {
	if !events.ValidName(rack) {
		return nil, fmt.Errorf("%w: rack %q must match [a-z0-9-]{1,63}", ErrInvalid, rack)
	}
	if lifetime <= 0 {
		lifetime = DefaultCALifetime
	}
	key, err := newKey(alg)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "racklet " + rack + " CA", Organization: []string{"racklet"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		// The CA only vouches for this rack's trust domain.
		PermittedURIDomains: []string{trustDomain(rack)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, Rack: rack}, nil
}

// Request is what Issue needs to make a certificate.
type Request struct {
	Kind Kind
	Name string
	// Role: for clients viewer, operator or admin; members,
	// integrations and nodes get theirs from the kind when it is empty.
	Role Role
	// Hosts are the DNS names and IP addresses a member serves on
	// (ignored for the other kinds).
	Hosts     []string
	Algorithm Algorithm
	// Lifetime: zero takes the kind's default.
	Lifetime time.Duration
}

// Issued is a certificate and its private key.
type Issued struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	Identity Identity
}

// Issue makes a certificate for req, signed by the CA, valid from now.
func (ca *CA) Issue(req Request, now time.Time) (*Issued, error) {
	id := Identity{Rack: ca.Rack, Kind: req.Kind, Name: req.Name, Role: req.Role}
	if id.Role == "" {
		id.Role, _ = id.Kind.FixedRole()
	}
	if err := id.Validate(); err != nil {
		return nil, err
	}
	lifetime := req.Lifetime
	if lifetime < 0 {
		return nil, fmt.Errorf("%w: negative lifetime", ErrInvalid)
	}
	if lifetime == 0 {
		switch id.Kind {
		case KindMember:
			lifetime = DefaultMemberLifetime
		case KindNode:
			lifetime = DefaultNodeLifetime
		default:
			lifetime = DefaultClientLifetime
		}
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("%w: the certificate would outlive the CA (until %s); rotate the CA first", ErrInvalid, ca.Cert.NotAfter.Format(time.RFC3339))
	}
	key, err := newKey(req.Algorithm)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: id.Name, Organization: []string{string(id.Role)}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.SPIFFEID()},
	}
	if _, isECDSA := key.(*ecdsa.PrivateKey); isECDSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if id.Kind == KindMember {
		// Members serve (API, NATS client and route ports) and dial.
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		for _, h := range req.Hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
				continue
			}
			if h == "" || strings.ContainsAny(h, " /:*") {
				return nil, fmt.Errorf("%w: host %q is neither an IP address nor a DNS name", ErrInvalid, h)
			}
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
		if len(tmpl.IPAddresses)+len(tmpl.DNSNames) == 0 {
			return nil, fmt.Errorf("%w: a member certificate needs at least one host (DNS name or IP) it serves on", ErrInvalid)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, MemberHostname(id.Rack))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issuing a certificate for %s: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, Key: key, Identity: id}, nil
}

// MemberHostname is a DNS name every member certificate of rack carries,
// so a TLS stack that can only match host names (etcd's
// AllowedHostnames) can still tell members from other identities.
func MemberHostname(rack string) string { return "member." + rack + ".racklet" }

// Pool is a cert pool holding only the CA, for tls.Config's RootCAs and
// ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}
