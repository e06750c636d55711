package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Bearer tokens are for what cannot present a client certificate (a
// browser dashboard, a node's boot environment). A token is a JWT (RFC
// 7519) signed by the rack's CA key: ES256 for a P-256 CA, EdDSA for an
// ed25519 one. Its claims:
//
//	iss   spiffe://racklet.<rack>          the rack
//	sub   spiffe://racklet.<rack>/client/<name> or .../node/<name>
//	role  viewer | operator | admin (a client), node (a node)
//	jti   the token's serial, in hex: revoke it like a certificate
//	iat, nbf, exp
//
// Only clients and nodes get tokens; members and integrations use
// certificates. Members verify tokens with the CA certificate alone.

// ErrToken: the token is malformed, expired, signed by someone else,
// revoked, or for another rack.
var ErrToken = errors.New("pki: invalid token")

// DefaultTokenLifetime is a client token's lifetime unless asked
// otherwise; a node's token lives DefaultNodeLifetime, as its certificate.
const DefaultTokenLifetime = 30 * 24 * time.Hour

type tokenClaims struct {
	Role Role `json:"role"`
	jwt.RegisteredClaims
}

func signingMethod(key any) (jwt.SigningMethod, error) {
	switch key.(type) {
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return jwt.SigningMethodES256, nil
	case ed25519.PrivateKey, ed25519.PublicKey:
		return jwt.SigningMethodEdDSA, nil
	}
	return nil, fmt.Errorf("%w: unsupported CA key type %T", ErrInvalid, key)
}

// IssueToken makes a bearer token for the client name with role.
func (ca *CA) IssueToken(name string, role Role, lifetime time.Duration, now time.Time) (token string, sn *big.Int, err error) {
	return ca.issueToken(Identity{Rack: ca.Rack, Kind: KindClient, Name: name, Role: role}, lifetime, DefaultTokenLifetime, now)
}

// IssueNodeToken makes a bearer token for the node name (role node: it
// may only report that node's boot stages). Zero lifetime is
// DefaultNodeLifetime.
func (ca *CA) IssueNodeToken(name string, lifetime time.Duration, now time.Time) (token string, sn *big.Int, err error) {
	return ca.issueToken(Identity{Rack: ca.Rack, Kind: KindNode, Name: name, Role: RoleNode}, lifetime, DefaultNodeLifetime, now)
}

func (ca *CA) issueToken(id Identity, lifetime, def time.Duration, now time.Time) (token string, sn *big.Int, err error) {
	if err := id.Validate(); err != nil {
		return "", nil, err
	}
	if lifetime < 0 {
		return "", nil, fmt.Errorf("%w: negative lifetime", ErrInvalid)
	}
	if lifetime == 0 {
		lifetime = def
	}
	if now.Add(lifetime).After(ca.Cert.NotAfter) {
		return "", nil, fmt.Errorf("%w: the token would outlive the CA", ErrInvalid)
	}
	method, err := signingMethod(ca.Key)
	if err != nil {
		return "", nil, err
	}
	sn, err = serial()
	if err != nil {
		return "", nil, err
	}
	claims := tokenClaims{Role: id.Role, RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    "spiffe://" + trustDomain(ca.Rack),
		Subject:   id.SPIFFEID().String(),
		ID:        sn.Text(16),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(lifetime)),
	}}
	s, err := jwt.NewWithClaims(method, claims).SignedString(ca.Key)
	if err != nil {
		return "", nil, fmt.Errorf("signing the token: %w", err)
	}
	return s, sn, nil
}

// MaxTokenBytes bounds a token before it is parsed.
const MaxTokenBytes = 4096

// VerifyToken checks a bearer token at now and returns its identity.
func (t *Trust) VerifyToken(token string, now time.Time) (Identity, error) {
	if len(token) > MaxTokenBytes {
		return Identity{}, fmt.Errorf("%w: longer than %d bytes", ErrToken, MaxTokenBytes)
	}
	method, err := signingMethod(t.CA.PublicKey)
	if err != nil {
		return Identity{}, err
	}
	var claims tokenClaims
	_, err = jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return t.CA.PublicKey, nil },
		jwt.WithValidMethods([]string{method.Alg()}),
		jwt.WithIssuer("spiffe://"+trustDomain(t.Rack)),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrToken, err)
	}
	rack, kind, name, err := ParseSPIFFEID(claims.Subject)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: subject: %v", ErrToken, err)
	}
	id := Identity{Rack: rack, Kind: kind, Name: name, Role: claims.Role}
	if id.Rack != t.Rack || (id.Kind != KindClient && id.Kind != KindNode) {
		return Identity{}, fmt.Errorf("%w: subject %s is not a client or node of rack %q", ErrToken, claims.Subject, t.Rack)
	}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrToken, err)
	}
	sn, ok := new(big.Int).SetString(claims.ID, 16)
	if !ok || sn.Sign() <= 0 {
		return Identity{}, fmt.Errorf("%w: jti %q is not a hex serial", ErrToken, claims.ID)
	}
	if t.rev.Load().RevokedSerial(sn) {
		return Identity{}, fmt.Errorf("%w: %v: token %s (%s)", ErrToken, ErrRevoked, claims.ID, id)
	}
	return id, nil
}
