package member

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/racklet/rack/controlplane/etcdlog"
	"github.com/racklet/rack/controlplane/natsserver"
	"github.com/racklet/rack/controlplane/pki"
)

// security is a member's loaded TLS material.
type security struct {
	trust *pki.Trust
	cert  tls.Certificate
	id    pki.Identity
}

// validateSecurity: TLS files together, or --insecure on loopback only.
func (c *Config) validateSecurity() error {
	files := 0
	for _, f := range []string{c.CA, c.Cert, c.Key} {
		if f != "" {
			files++
		}
	}
	switch {
	case c.Insecure && (files > 0 || c.CRL != ""):
		return errors.New("insecure excludes ca, cert, key and crl: choose TLS or plain text")
	case c.Insecure:
		for what, addr := range c.listenAddresses() {
			if addr != "" && !isLoopback(addr) {
				return fmt.Errorf("insecure serves plain text without authentication and is refused on %s address %q: use loopback (127.0.0.0/8, ::1, localhost) or give ca, cert and key (rackctl pki)", what, addr)
			}
		}
		return nil
	case files == 0:
		return errors.New("no TLS material: give ca, cert and key (make them with rackctl pki init and rackctl pki issue member), or insecure for a test rack on loopback")
	case files < 3:
		return errors.New("ca, cert and key go together")
	}
	return nil
}

// listenAddresses are every address the member listens on or advertises.
func (c *Config) listenAddresses() map[string]string {
	m := map[string]string{"http": c.HTTP, "nats": c.NATS, "nats-cluster": c.NATSCluster, "nats-cluster-advertise": c.NATSClusterAdvertise}
	if c.Store == StoreEtcd {
		m["etcd-peer"], m["etcd-client"] = c.EtcdPeer, c.EtcdClient
		m["etcd-peer-advertise"], m["etcd-client-advertise"] = c.EtcdPeerAdvertise, c.EtcdClientAdvertise
	}
	return m
}

// isLoopback reports whether addr (host:port or a URL) is on loopback.
func isLoopback(addr string) bool {
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadSecurity reads the TLS material; nil in insecure mode. The member's
// certificate must be a member's, of this rack, for this name.
func (c *Config) loadSecurity(now time.Time) (*security, error) {
	if c.Insecure {
		return nil, nil
	}
	caCert, err := pki.ReadCert(c.CA)
	if err != nil {
		return nil, fmt.Errorf("reading ca: %w", err)
	}
	pair, id, err := pki.LoadKeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, err
	}
	if id.Kind != pki.KindMember || id.Name != c.Name || id.Rack != c.Rack {
		return nil, fmt.Errorf("cert %s is for %s of rack %q; this is member %s of rack %q (rackctl pki issue member %s)", c.Cert, id, id.Rack, c.Name, c.Rack, c.Name)
	}
	if _, err := pair.Leaf.Verify(x509Opts(caCert, now)); err != nil {
		return nil, fmt.Errorf("cert %s does not verify against ca %s: %w", c.Cert, c.CA, err)
	}
	var rev *pki.Revocations
	if c.CRL != "" {
		if rev, err = pki.LoadRevocations(c.CRL, caCert, now); err != nil {
			return nil, err
		}
		if rev.Revoked(pair.Leaf) {
			return nil, fmt.Errorf("cert %s is revoked by %s", c.Cert, c.CRL)
		}
	}
	return &security{trust: pki.NewTrust(caCert, c.Rack, rev), cert: pair, id: id}, nil
}

func (s *security) nats() *natsserver.Security {
	if s == nil {
		return nil
	}
	return &natsserver.Security{Trust: s.trust, Cert: s.cert}
}

// etcd is the embedded etcd member's TLS: the same files, peers and
// clients restricted to member certificates (pki.MemberHostname).
func (s *security) etcd(c Config) *etcdlog.ServerTLS {
	if s == nil {
		return nil
	}
	return &etcdlog.ServerTLS{
		CertFile: c.Cert, KeyFile: c.Key, CAFile: c.CA, CRLFile: c.CRL,
		AllowedHostname: pki.MemberHostname(c.Rack),
		Client:          s.trust.ClientConfig(s.cert),
	}
}

func (s *security) apiTrust() *pki.Trust {
	if s == nil {
		return nil
	}
	return s.trust
}

// watch reloads the CRL until ctx ends.
func (s *security) watch(ctx context.Context, path string, every time.Duration, log *slog.Logger) {
	if s == nil || path == "" {
		return
	}
	go pki.WatchRevocations(ctx, path, s.trust, every, log.With("component", "pki"))
}

func x509Opts(ca *x509.Certificate, now time.Time) x509.VerifyOptions {
	p := x509.NewCertPool()
	p.AddCert(ca)
	return x509.VerifyOptions{Roots: p, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
}
