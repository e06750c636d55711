package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// ErrRevoked: the certificate is on the rack's revocation list.
var ErrRevoked = errors.New("pki: certificate revoked")

// DefaultCRLLifetime is how long a revocation list is valid before it must
// be reissued (rackctl pki revoke reissues it; so does pki crl).
const DefaultCRLLifetime = 30 * 24 * time.Hour

// Revocations is the rack's certificate revocation list, checked against
// the CA that signed it.
type Revocations struct {
	list    *x509.RevocationList
	serials map[string]bool
}

// Revoked reports whether cert is on the list.
func (r *Revocations) Revoked(cert *x509.Certificate) bool { return r.RevokedSerial(cert.SerialNumber) }

// RevokedSerial reports whether the serial (of a certificate or a token)
// is on the list.
func (r *Revocations) RevokedSerial(sn *big.Int) bool {
	return r != nil && sn != nil && r.serials[sn.String()]
}

// Check returns ErrRevoked (wrapped, naming the serial) for a revoked
// certificate.
func (r *Revocations) Check(cert *x509.Certificate) error {
	if r.Revoked(cert) {
		return fmt.Errorf("%w: serial %s (%s)", ErrRevoked, cert.SerialNumber.Text(16), cert.Subject.CommonName)
	}
	return nil
}

// Len is the number of revoked certificates.
func (r *Revocations) Len() int {
	if r == nil {
		return 0
	}
	return len(r.serials)
}

// NextUpdate is when the list expires.
func (r *Revocations) NextUpdate() time.Time { return r.list.NextUpdate }

// Revoke returns a new revocation list: prev's entries (prev may be nil)
// plus serials, signed by the CA, valid for lifetime from now; and its
// DER encoding, the content of ca.crl.
func (ca *CA) Revoke(prev *Revocations, serials []*big.Int, lifetime time.Duration, now time.Time) (*Revocations, []byte, error) {
	if lifetime <= 0 {
		lifetime = DefaultCRLLifetime
	}
	var entries []x509.RevocationListEntry
	number := big.NewInt(1)
	if prev != nil {
		entries = slices.Clone(prev.list.RevokedCertificateEntries)
		number = new(big.Int).Add(prev.list.Number, big.NewInt(1))
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.SerialNumber.String()] = true
	}
	for _, sn := range serials {
		if sn == nil || sn.Sign() <= 0 {
			return nil, nil, fmt.Errorf("%w: serial numbers are positive integers", ErrInvalid)
		}
		if !seen[sn.String()] {
			seen[sn.String()] = true
			entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: now.UTC()})
		}
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now.Add(-5 * time.Minute),
		NextUpdate:                now.Add(lifetime),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the revocation list: %w", err)
	}
	r, err := ParseRevocations(der, ca.Cert, now)
	if err != nil {
		return nil, nil, err
	}
	// DER, as etcd (and most tools) read a CRL file; ParseRevocations
	// takes PEM too.
	return r, der, nil
}

// ParseRevocations reads a DER or PEM revocation list and checks that the
// CA signed it and that it has not expired at now.
func ParseRevocations(data []byte, caCert *x509.Certificate, now time.Time) (*Revocations, error) {
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: PEM block is %q, not X509 CRL", ErrInvalid, block.Type)
		}
		data = block.Bytes
	}
	list, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("%w: revocation list: %v", ErrInvalid, err)
	}
	if err := list.CheckSignatureFrom(caCert); err != nil {
		return nil, fmt.Errorf("%w: revocation list is not signed by the rack CA: %v", ErrInvalid, err)
	}
	if !list.NextUpdate.IsZero() && now.After(list.NextUpdate) {
		return nil, fmt.Errorf("%w: revocation list expired at %s; reissue it with rackctl pki crl", ErrInvalid, list.NextUpdate.Format(time.RFC3339))
	}
	r := &Revocations{list: list, serials: map[string]bool{}}
	for _, e := range list.RevokedCertificateEntries {
		r.serials[e.SerialNumber.String()] = true
	}
	return r, nil
}

// LoadRevocations reads DIR/ca.crl; a missing file is an empty list.
func LoadRevocations(path string, caCert *x509.Certificate, now time.Time) (*Revocations, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Revocations{serials: map[string]bool{}, list: &x509.RevocationList{Number: big.NewInt(0)}}, nil
	}
	if err != nil {
		return nil, err
	}
	r, err := ParseRevocations(data, caCert, now)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return r, nil
}

// WriteRevocations replaces path atomically (write, fsync, rename).
func WriteRevocations(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".crl-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
