package devrack

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/controlplane/pki"
)

// ClientFiles are the files a client of a secured dev rack uses: the rack
// CA and an admin client certificate, as rackctl's --ca, --cert and --key
// (or RACK_CA, RACK_CERT and RACK_KEY) take them.
type ClientFiles struct {
	CA, Cert, Key string
}

// devPKI is a secured rack's throwaway PKI, under <Dir>/pki. It is made
// once and reused when the rack starts again on the same Dir.
type devPKI struct {
	dir    string
	ca     *pki.CA
	client ClientFiles
}

const devClient = "admin"

func (r *Rack) makePKI() error {
	dir := filepath.Join(r.cfg.Dir, "pki")
	p := &devPKI{dir: dir, client: ClientFiles{
		CA: filepath.Join(dir, pki.CACertFile), Cert: filepath.Join(dir, pki.CertFile(devClient)), Key: filepath.Join(dir, pki.KeyFile(devClient)),
	}}
	now := time.Now()
	ca, err := pki.LoadCA(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if ca, err = pki.NewCA(r.cfg.Rack, pki.ECDSAP256, 0, now); err == nil {
			err = pki.WriteCA(dir, ca)
		}
		if err == nil {
			var crl []byte
			if _, crl, err = ca.Revoke(nil, nil, 0, now); err == nil {
				err = pki.WriteRevocations(filepath.Join(dir, pki.CRLFile), crl)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("devrack: rack PKI in %s: %w", dir, err)
	}
	p.ca = ca
	issue := func(req pki.Request) error {
		if _, err := os.Stat(filepath.Join(dir, pki.CertFile(req.Name))); err == nil {
			return nil
		}
		is, err := ca.Issue(req, now)
		if err != nil {
			return err
		}
		_, _, err = pki.WriteIssued(dir, is)
		return err
	}
	if err := issue(pki.Request{Kind: pki.KindClient, Name: devClient, Role: pki.RoleAdmin}); err != nil {
		return fmt.Errorf("devrack: client certificate: %w", err)
	}
	for i := 1; i <= r.cfg.Members; i++ {
		if err := issue(pki.Request{Kind: pki.KindMember, Name: memberName(i), Hosts: []string{"127.0.0.1", "localhost"}}); err != nil {
			return fmt.Errorf("devrack: member certificate: %w", err)
		}
	}
	r.pki = p
	return nil
}

// secure sets a member's TLS files, or insecure mode when the rack runs
// without TLS.
func (p *devPKI) secure(cfg *member.Config) {
	if p == nil {
		cfg.Insecure = true
		return
	}
	cfg.CA = p.client.CA
	cfg.Cert = filepath.Join(p.dir, pki.CertFile(cfg.Name))
	cfg.Key = filepath.Join(p.dir, pki.KeyFile(cfg.Name))
	cfg.CRL = filepath.Join(p.dir, pki.CRLFile)
}

// ClientFiles returns the admin client's files of a secured rack, and
// false for a rack without TLS.
func (r *Rack) ClientFiles() (ClientFiles, bool) {
	if r.pki == nil {
		return ClientFiles{}, false
	}
	return r.pki.client, true
}

// ClientTLS is the TLS configuration of the admin client of a secured
// rack; nil without TLS.
func (r *Rack) ClientTLS() (*tls.Config, error) {
	if r.pki == nil {
		return nil, nil
	}
	pair, _, err := pki.LoadKeyPair(r.pki.client.Cert, r.pki.client.Key)
	if err != nil {
		return nil, err
	}
	cfg := pki.NewTrust(r.pki.ca.Cert, r.cfg.Rack, nil).ClientConfig(pair)
	return cfg, nil
}
