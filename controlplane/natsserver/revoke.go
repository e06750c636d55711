package natsserver

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/racklet/rack/controlplane/pki"
)

// This file closes the open connections a new revocation list revokes.
// nats-server checks a peer when it connects (the authenticator, the TLS
// VerifyConnection) and never again, so without this an integration whose
// certificate is revoked keeps receiving events and a revoked member keeps
// its routes, and with them its part in Raft.
//
// The sweep runs once per new list (pki.Trust.OnRevocations), on a
// goroutine of the server's own, never on a timer:
//
//   - client connections: Connz lists the open ones; GetClient gives each
//     one's TLS state and so its certificate; DisconnectClientByID closes
//     those the list revokes. All public nats-server API.
//   - routes: nats-server has no public way to close one route, and a
//     route's certificate is not in Routez. What it does support is the
//     cluster's pinned certificates (tls pinned_certs): on a reload of the
//     options (Server.ReloadOptions) it closes every route, accepted or
//     solicited, whose peer key is not pinned. So the server remembers the
//     member certificates its routes presented (authenticator.verifyRoute)
//     and, when the list revokes one of them, reloads with every other
//     remembered key pinned, then at once again with no pinning, so
//     members it has not met yet can still join. Closing only the routes
//     this server accepted would not do: every connection between two
//     members is solicited by one of them (Routez: did_solicit), often all
//     of them by the same one. The reload also re-runs the authenticator
//     on every client and accepted route (nats-server does so on any
//     change of the cluster options), which refuses the revoked ones once
//     more. A legitimate member whose route handshake falls between the
//     two reloads is refused once and retries.
//
// A route this server was still opening when the list changed (its TLS
// handshake passed against the old list, the peer's INFO not yet in) is
// not in the server's route table yet, so neither reload sees it. Hence a
// second sweep resweepAfter later, which keeps the revoked certificates'
// records until then: it cuts such a route once it is up. One still not
// up after that is cut on the next change of the list or a restart.
// Routes the revoked member opens towards this server are not affected:
// their CONNECT is checked against the new list.

// resweepAfter is when the second sweep after a new list runs.
const resweepAfter = 2 * time.Second

// watchRevocations starts the sweep goroutine and hooks it to trust.
func (s *Server) watchRevocations(trust *pki.Trust) {
	kick := make(chan struct{}, 1)
	s.sweepStop = make(chan struct{})
	s.sweepDone = make(chan struct{})
	s.stopHook = trust.OnRevocations(func() {
		select {
		case kick <- struct{}{}:
		default: // a sweep is already due; it reads the newest list
		}
	})
	go func() {
		defer close(s.sweepDone)
		resweep := time.NewTimer(time.Hour)
		resweep.Stop()
		defer resweep.Stop()
		for {
			select {
			case <-s.sweepStop:
				return
			case <-kick:
				s.closeRevokedClients()
				s.closeRevokedRoutes(false)
				resweep.Reset(resweepAfter)
			case <-resweep.C:
				s.closeRevokedClients()
				s.closeRevokedRoutes(true)
			}
		}
	}()
}

// stopRevocations stops the sweep and waits for one under way.
func (s *Server) stopRevocations() {
	if s.stopHook == nil {
		return
	}
	s.stopHook()
	close(s.sweepStop)
	<-s.sweepDone
}

// closeRevokedClients closes the client connections whose certificate the
// trust now refuses.
func (s *Server) closeRevokedClients() {
	a := s.auth
	cz, err := s.srv.Connz(&server.ConnzOptions{State: server.ConnOpen, Username: true, Limit: s.srv.NumClients() + server.DefaultConnListSize})
	if err != nil {
		a.log.Error("cannot list nats connections to apply the new revocation list", "err", err)
		return
	}
	for _, ci := range cz.Conns {
		// TLSPeerCerts is set once the TLS handshake is complete (so
		// GetTLSConnectionState below does not wait for one). Without it:
		// the member's own in-process connection, or a connection still
		// in its handshake, whose authentication runs against the new list.
		if len(ci.TLSPeerCerts) == 0 {
			continue
		}
		c := s.srv.GetClient(ci.Cid)
		if c == nil {
			continue // closed meanwhile
		}
		cs := c.GetTLSConnectionState()
		if cs == nil || len(cs.PeerCertificates) == 0 {
			continue
		}
		cert := cs.PeerCertificates[0]
		_, perr := a.trust.Peer(cert, clientKinds...)
		if perr == nil {
			continue
		}
		remote := net.JoinHostPort(ci.IP, strconv.Itoa(ci.Port))
		if err := s.srv.DisconnectClientByID(ci.Cid); err != nil {
			continue // closed meanwhile
		}
		a.log.Warn("nats connection closed: certificate revoked", append(peerAttrs(cert),
			"remote", remote, "cid", ci.Cid, "reason", perr.Error())...)
	}
}

// revokedRoutePeer is a recorded route certificate the trust now refuses.
type revokedRoutePeer struct {
	key  [sha256.Size]byte
	cert *x509.Certificate
	err  error
}

// routeRevocations splits the recorded route certificates into those the
// trust now refuses and the keys (SPKI SHA-256, as nats-server pins them)
// of the others. A key that a refused certificate shares is not kept.
func (a *authenticator) routeRevocations() ([]revokedRoutePeer, server.PinnedCertSet) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var revoked []revokedRoutePeer
	keep := server.PinnedCertSet{}
	for key, p := range a.routePeers {
		if _, err := a.trust.Peer(p.cert, pki.KindMember); err != nil {
			revoked = append(revoked, revokedRoutePeer{key: key, cert: p.cert, err: err})
			continue
		}
		keep[spki(p.cert)] = struct{}{}
	}
	for _, r := range revoked {
		delete(keep, spki(r.cert))
	}
	return revoked, keep
}

// forgetRoutePeers drops records whose routes are closed.
func (a *authenticator) forgetRoutePeers(revoked []revokedRoutePeer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range revoked {
		delete(a.routePeers, r.key)
	}
}

// closeRevokedRoutes closes every route whose peer certificate the trust
// now refuses: a reload with the other route peers' keys pinned, then one
// without pinning (see the top of this file). With forget, the revoked
// certificates' records go afterwards (the second sweep); without, they
// stay for it.
func (s *Server) closeRevokedRoutes(forget bool) {
	a := s.auth
	revoked, keep := a.routeRevocations()
	if forget && len(revoked) > 0 {
		// The second sweep acts only if a revoked member has a route
		// again (by the server name its route announced, which is the
		// member's name): what the first could not see.
		if !routedToAny(s.srv, revoked) {
			a.forgetRoutePeers(revoked)
			return
		}
	}
	if len(revoked) == 0 {
		return
	}
	for _, r := range revoked {
		a.log.Warn("closing nats routes: member certificate revoked", append(peerAttrs(r.cert), "reason", r.err.Error())...)
	}
	before, _ := s.srv.Routez(nil)
	if err := s.pinRoutes(keep); err != nil {
		a.log.Error("cannot close the routes of a revoked member", "err", err)
		return
	}
	if err := s.pinRoutes(nil); err != nil {
		// The pinned keys stay: routes to members already met work, new
		// members cannot route to this one until it restarts.
		a.log.Error("cannot lift the route key pinning used to close revoked routes; members this server has not met cannot route to it until it restarts", "err", err)
	}
	if forget {
		a.forgetRoutePeers(revoked)
	}
	after, _ := s.srv.Routez(nil)
	open := map[uint64]bool{}
	if after != nil {
		for _, r := range after.Routes {
			open[r.Rid] = true
		}
	}
	if before != nil {
		for _, r := range before.Routes {
			if !open[r.Rid] {
				a.log.Warn("nats route closed: member certificate revoked", "rid", r.Rid, "remote_name", r.RemoteName,
					"remote_id", r.RemoteID, "remote", net.JoinHostPort(r.IP, strconv.Itoa(r.Port)))
			}
		}
	}
}

// routedToAny reports whether srv has a route to a server named as one of
// the revoked members.
func routedToAny(srv *server.Server, revoked []revokedRoutePeer) bool {
	rz, err := srv.Routez(nil)
	if err != nil {
		return true // cannot tell: sweep
	}
	names := map[string]bool{}
	for _, r := range revoked {
		if id, err := pki.IdentityOf(r.cert); err == nil {
			names[id.Name] = true
		}
	}
	for _, r := range rz.Routes {
		if names[r.RemoteName] {
			return true
		}
	}
	return false
}

// pinRoutes reloads the server's options with the route pinned keys set to
// pins (nil: no pinning). Only the sweep goroutine calls it.
func (s *Server) pinRoutes(pins server.PinnedCertSet) error {
	next := s.opts.Clone()
	// The very same TLS configurations: a copy holds the same functions,
	// which reflect.DeepEqual (the reload's diff) never finds equal, so
	// it would reload TLS for nothing.
	next.TLSConfig = s.opts.TLSConfig
	next.Cluster.TLSConfig = s.opts.Cluster.TLSConfig
	next.Cluster.TLSPinnedCerts = pins
	if err := s.srv.ReloadOptions(next); err != nil {
		return fmt.Errorf("reloading the nats server options: %w", err)
	}
	s.opts = next
	return nil
}

// spki is a certificate's key as nats-server pins it: hex SHA-256 of the
// SubjectPublicKeyInfo.
func spki(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// peerAttrs names a peer certificate in a log line: identity (SPIFFE ID),
// peer (kind/name) and serial (hex, as rackctl pki show prints it).
func peerAttrs(cert *x509.Certificate) []any {
	attrs := []any{"serial", cert.SerialNumber.Text(16)}
	if id, err := pki.IdentityOf(cert); err == nil {
		return append(attrs, "identity", id.SPIFFEID().String(), "peer", id.String())
	}
	return append(attrs, "subject", cert.Subject.String())
}
