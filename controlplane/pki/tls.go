package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Trust is what a TLS endpoint checks its peers against: the rack's CA and
// its current revocation list. The list can be swapped while connections
// are served (SetRevocations), so a revocation takes effect without a
// restart; endpoints that keep connections open learn of a new list
// through OnRevocations and close what it revokes.
type Trust struct {
	CA   *x509.Certificate
	Rack string
	rev  atomic.Pointer[Revocations]

	mu   sync.Mutex
	subs map[uint64]func()
	next uint64
}

// NewTrust trusts the CA's certificates for rack. rev may be nil.
func NewTrust(ca *x509.Certificate, rack string, rev *Revocations) *Trust {
	t := &Trust{CA: ca, Rack: rack}
	t.rev.Store(rev)
	return t
}

// SetRevocations replaces the revocation list, then calls every function
// registered with OnRevocations.
func (t *Trust) SetRevocations(rev *Revocations) {
	t.rev.Store(rev)
	t.mu.Lock()
	fs := make([]func(), 0, len(t.subs))
	for _, f := range t.subs {
		fs = append(fs, f)
	}
	t.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// OnRevocations registers f to be called after each SetRevocations (so
// after each reload by WatchRevocations), until stop is called. f runs on
// the goroutine that called SetRevocations, after the new list is in
// place, so Peer called from f or after it already checks against it. f
// must return quickly (hand the work to a goroutine of its own) and must
// not call SetRevocations. Safe for concurrent use; stop may be called
// more than once, and a call to f already under way when stop returns
// may still finish.
func (t *Trust) OnRevocations(f func()) (stop func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.subs == nil {
		t.subs = map[uint64]func(){}
	}
	id := t.next
	t.next++
	t.subs[id] = f
	return func() {
		t.mu.Lock()
		delete(t.subs, id)
		t.mu.Unlock()
	}
}

// Pool is a pool holding only the CA.
func (t *Trust) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(t.CA)
	return p
}

// ErrPeer: the peer's certificate chain verified but the peer may not
// connect (wrong rack, wrong kind, revoked).
var ErrPeer = errors.New("pki: peer refused")

// Peer checks a verified peer certificate: an identity of this rack, of
// one of the allowed kinds (none: any), not revoked.
func (t *Trust) Peer(cert *x509.Certificate, kinds ...Kind) (Identity, error) {
	id, err := IdentityOf(cert)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrPeer, err)
	}
	if id.Rack != t.Rack {
		return Identity{}, fmt.Errorf("%w: %s belongs to rack %q, not %q", ErrPeer, id, id.Rack, t.Rack)
	}
	if len(kinds) > 0 {
		ok := false
		for _, k := range kinds {
			ok = ok || id.Kind == k
		}
		if !ok {
			return Identity{}, fmt.Errorf("%w: %s may not connect here (want %v)", ErrPeer, id, kinds)
		}
	}
	if err := t.rev.Load().Check(cert); err != nil {
		return Identity{}, fmt.Errorf("%w: %s: %v", ErrPeer, id, err)
	}
	return id, nil
}

func (t *Trust) verifyConnection(kinds []Kind) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: no certificate", ErrPeer)
		}
		_, err := t.Peer(cs.PeerCertificates[0], kinds...)
		return err
	}
}

// ServerConfig is a TLS 1.3 server configuration that requires a client
// certificate from the rack's CA, of one of kinds (none: any kind).
func (t *Trust) ServerConfig(cert tls.Certificate, kinds ...Kind) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        t.Pool(),
		VerifyConnection: t.verifyConnection(kinds),
	}
}

// ClientConfig is a TLS 1.3 client configuration presenting cert and
// accepting only a member of the rack as the server.
func (t *Trust) ClientConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		RootCAs:          t.Pool(),
		VerifyConnection: t.verifyConnection([]Kind{KindMember}),
	}
}
