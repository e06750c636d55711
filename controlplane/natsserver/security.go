package natsserver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/racklet/rack/controlplane/pki"
)

// Security turns on mutual TLS and per-identity permissions. With it, the
// server takes only TLS connections whose client certificate the rack's CA
// issued (and did not revoke), routes only to and from members, and gives
// each identity the least it needs:
//
//   - members (their own in-process connection, and any member
//     certificate): everything;
//   - integrations: subscribe to racklet.<rack>.events.> and to the
//     telemetry samples (racklet.<rack>.telemetry), and nothing else;
//     they cannot publish at all, so they cannot forge an event or speak
//     on the Raft subjects;
//   - clients (people's certificates): as integrations; rackctl talks to
//     the HTTP API, not to NATS;
//   - nodes (a node's boot environment, kind node): nothing at all. A
//     node certificate is refused at the TLS handshake and by the
//     authenticator (it is not among the kinds that may connect), so a
//     node can neither subscribe nor publish; it only reports its boot
//     stages over the HTTP API. Should one get further, permissionsFor
//     gives it no permissions.
//
// Revocation applies to open connections too: when the Trust gets a new
// revocation list (pki.WatchRevocations, via pki.Trust.OnRevocations),
// the server closes every client connection and every route whose peer
// certificate the list revokes, and logs who, which serial and why (see
// revoke.go). Reconnects are refused by the checks above.
type Security struct {
	Trust *pki.Trust
	// Cert is the member's certificate (kind member), served on the
	// client port and presented on routes.
	Cert tls.Certificate
}

// EventsSubjects is where committed events are published.
func EventsSubjects(rack string) string { return "racklet." + rack + ".events.>" }

// IntegrationSubjects are what integrations (and clients) may subscribe
// to: the events and the telemetry samples.
func IntegrationSubjects(rack string) []string {
	return []string{EventsSubjects(rack), "racklet." + rack + ".telemetry"}
}

// authenticator is nats-server's CustomClientAuthentication and
// CustomRouterAuthentication.
type authenticator struct {
	trust *pki.Trust
	rack  string
	// localToken authenticates the member's own in-process connection; it
	// never leaves the process.
	localToken string
	log        *slog.Logger

	// routePeers are the member certificates that routes (accepted and
	// solicited) presented, by SHA-256 of the certificate: what the
	// revocation sweep checks routes against, since nats-server gives no
	// access to a route's certificate. Bounded by the member certificates
	// the rack CA issued; a revoked one is forgotten once its routes are
	// closed.
	mu         sync.Mutex
	routePeers map[[sha256.Size]byte]*routePeer
}

// routePeer is one recorded route certificate. handshakes counts the
// handshakes that recorded it and are still undecided or succeeded; a
// failed handshake takes its count back, and the record goes when it
// reaches zero (so a revoked member retrying does not stay recorded, but
// a certificate with an open route does).
type routePeer struct {
	cert       *x509.Certificate
	handshakes int
}

// verifyRoute wraps the route TLS check (both directions: crypto/tls calls
// VerifyConnection on accepted and on solicited routes). A member
// certificate of this rack is recorded before it is checked, so a
// handshake that passes against the old revocation list is always seen by
// the sweep that follows a new one.
func (a *authenticator) verifyRoute(verify func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return verify(cs)
		}
		cert := cs.PeerCertificates[0]
		id, err := pki.IdentityOf(cert)
		if err != nil || id.Kind != pki.KindMember || id.Rack != a.rack {
			return verify(cs)
		}
		key := sha256.Sum256(cert.Raw)
		a.mu.Lock()
		if a.routePeers == nil {
			a.routePeers = map[[sha256.Size]byte]*routePeer{}
		}
		p := a.routePeers[key]
		if p == nil {
			p = &routePeer{cert: cert}
			a.routePeers[key] = p
		}
		p.handshakes++
		a.mu.Unlock()
		if err := verify(cs); err != nil {
			a.mu.Lock()
			if p := a.routePeers[key]; p != nil {
				if p.handshakes--; p.handshakes <= 0 {
					delete(a.routePeers, key)
				}
			}
			a.mu.Unlock()
			return err
		}
		return nil
	}
}

func newLocalToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// clientKinds may connect to the client port.
var clientKinds = []pki.Kind{pki.KindMember, pki.KindIntegration, pki.KindClient}

// permissionsFor is what an identity may do on the client port: members
// everything, integrations and clients subscribe to IntegrationSubjects,
// any other kind (nodes) nothing.
func (a *authenticator) permissionsFor(id pki.Identity) *server.Permissions {
	switch id.Kind {
	case pki.KindMember:
		return nil // no restrictions
	case pki.KindIntegration, pki.KindClient:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Deny: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: IntegrationSubjects(a.rack)},
		}
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: []string{">"}},
		Subscribe: &server.SubjectPermission{Deny: []string{">"}},
	}
}

// Check decides on one client or route connection.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	remote := "in-process"
	if addr := c.RemoteAddress(); addr != nil {
		remote = addr.String()
	}
	cs := c.GetTLSConnectionState()
	if cs == nil {
		// Only the member's own in-process connection comes without TLS
		// (nats-server skips TLS for in-process connections; every
		// listener requires it).
		opts := c.GetOpts()
		if c.Kind() == server.CLIENT && opts != nil && a.localToken != "" &&
			subtle.ConstantTimeCompare([]byte(opts.Token), []byte(a.localToken)) == 1 {
			c.RegisterUser(&server.User{Username: "member-local"})
			return true
		}
		a.log.Warn("nats connection refused", "remote", remote, "reason", "no TLS client certificate")
		return false
	}
	if len(cs.PeerCertificates) == 0 {
		a.log.Warn("nats connection refused", "remote", remote, "reason", "no TLS client certificate")
		return false
	}
	kinds := clientKinds
	if c.Kind() == server.ROUTER {
		kinds = []pki.Kind{pki.KindMember}
	}
	id, err := a.trust.Peer(cs.PeerCertificates[0], kinds...)
	if err != nil {
		a.log.Warn("nats connection refused", "remote", remote, "subject", cs.PeerCertificates[0].Subject.String(), "reason", err.Error())
		return false
	}
	if c.Kind() == server.CLIENT {
		c.RegisterUser(&server.User{Username: id.SPIFFEID().String(), Permissions: a.permissionsFor(id)})
	}
	a.log.Debug("nats connection authenticated", "remote", remote, "identity", id.String(), "role", string(id.Role))
	return true
}

// secure applies s to the server's options.
func (s *Security) apply(opts *server.Options, rack string, log *slog.Logger) (*authenticator, error) {
	if s.Trust == nil || s.Trust.CA == nil {
		return nil, fmt.Errorf("natsserver: security without a trust anchor (CA)")
	}
	if s.Cert.Leaf == nil {
		return nil, fmt.Errorf("natsserver: security without the member's certificate")
	}
	id, err := pki.IdentityOf(s.Cert.Leaf)
	if err != nil || id.Kind != pki.KindMember {
		return nil, fmt.Errorf("natsserver: the server's certificate must be a member's (%v)", err)
	}
	tok, err := newLocalToken()
	if err != nil {
		return nil, err
	}
	a := &authenticator{trust: s.Trust, rack: rack, localToken: tok, log: log}
	// Clients: TLS required, the certificate verified by crypto/tls against
	// the CA (expiry, chain), then checked by the authenticator (rack,
	// kind, revocation).
	opts.TLSConfig = s.Trust.ServerConfig(s.Cert, clientKinds...)
	opts.TLSVerify = true
	opts.TLSTimeout = 5
	opts.CustomClientAuthentication = a
	// Routes: members only, both ways. The same tls.Config serves
	// accepted and solicited routes, so it carries the CA as both root
	// and client CA, and our certificate for both roles.
	rt := s.Trust.ServerConfig(s.Cert, pki.KindMember)
	rt.RootCAs = s.Trust.Pool()
	rt.VerifyConnection = a.verifyRoute(rt.VerifyConnection)
	opts.Cluster.TLSConfig = rt
	opts.Cluster.TLSTimeout = 5
	opts.CustomRouterAuthentication = a
	return a, nil
}
