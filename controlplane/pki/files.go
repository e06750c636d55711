package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names in a PKI directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	CRLFile    = "ca.crl"
)

// CertFile and KeyFile name an issued identity's files.
func CertFile(name string) string { return name + ".crt" }
func KeyFile(name string) string  { return name + ".key" }

// WriteCA writes ca.crt and ca.key (0600) into dir, creating it (0700).
// It refuses to replace an existing CA.
func WriteCA(dir string, ca *CA) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing the CA: %w", err)
	}
	return writePair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile), ca.Cert, ca.Key)
}

// WriteIssued writes NAME.crt and NAME.key (0600) into dir.
func WriteIssued(dir string, is *Issued) (certPath, keyPath string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", is.Identity, err)
	}
	certPath, keyPath = filepath.Join(dir, CertFile(is.Identity.Name)), filepath.Join(dir, KeyFile(is.Identity.Name))
	return certPath, keyPath, writePair(certPath, keyPath, is.Cert, is.Key)
}

func writePair(certPath, keyPath string, cert *x509.Certificate, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the key: %w", err)
	}
	// Key first: a certificate without its key is useless, a key without
	// its certificate is merely unused.
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		_ = os.Remove(keyPath)
		return err
	}
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s (never replaced; remove it first or choose another name)", ErrExists, path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadCA reads the CA (certificate and key) from dir.
func LoadCA(dir string) (*CA, error) {
	cert, err := ReadCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: %s is not a CA certificate", ErrInvalid, filepath.Join(dir, CACertFile))
	}
	key, err := ReadKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%w: %s does not belong to %s", ErrInvalid, CAKeyFile, CACertFile)
	}
	var rack string
	if len(cert.PermittedURIDomains) == 1 {
		rack = cert.PermittedURIDomains[0][len("racklet."):]
	}
	if len(cert.PermittedURIDomains) != 1 || trustDomain(rack) != cert.PermittedURIDomains[0] {
		return nil, fmt.Errorf("%w: %s is not a racklet rack CA (no racklet.<rack> name constraint)", ErrInvalid, filepath.Join(dir, CACertFile))
	}
	return &CA{Cert: cert, Key: key, Rack: rack}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// ReadCert reads one PEM certificate.
func ReadCert(path string) (*x509.Certificate, error) {
	b, err := pemBlock(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return cert, nil
}

// ReadKey reads a PEM PKCS#8 private key.
func ReadKey(path string) (crypto.Signer, error) {
	b, err := pemBlock(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("reading %s: %w: unsupported key type %T", path, ErrInvalid, k)
	}
	return s, nil
}

func pemBlock(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("reading %s: %w: not a PEM %s", path, ErrInvalid, typ)
	}
	return block.Bytes, nil
}

// LoadKeyPair reads an issued certificate and key as a tls.Certificate,
// with its identity checked.
func LoadKeyPair(certPath, keyPath string) (tls.Certificate, Identity, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, Identity{}, fmt.Errorf("loading %s: %w", certPath, err)
	}
	id, err := IdentityOf(pair.Leaf)
	if err != nil {
		return tls.Certificate{}, Identity{}, fmt.Errorf("loading %s: %w", certPath, err)
	}
	return pair, id, nil
}
