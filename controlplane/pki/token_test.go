package pki

import (
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// signClaims signs arbitrary token claims with the CA's key: what a
// token would look like if IssueToken let anything through.
func signClaims(t *testing.T, ca *CA, sub string, role Role) string {
	t.Helper()
	method, err := signingMethod(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.NewWithClaims(method, tokenClaims{Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    "spiffe://" + trustDomain(ca.Rack),
		Subject:   sub,
		ID:        "1f",
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}).SignedString(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNodeTokens(t *testing.T) {
	for _, alg := range []Algorithm{ECDSAP256, Ed25519} {
		ca := mustCA(t, "rack1", alg)
		trust := NewTrust(ca.Cert, "rack1", nil)
		tok, sn, err := ca.IssueNodeToken("n3", 0, now)
		if err != nil {
			t.Fatal(err)
		}
		id, err := trust.VerifyToken(tok, now.Add(time.Minute))
		if err != nil || id != (Identity{"rack1", KindNode, "n3", RoleNode}) {
			t.Fatalf("%s: node token verified as %+v, %v", alg, id, err)
		}
		// A node's token lives as long as its certificate would.
		if _, err := trust.VerifyToken(tok, now.Add(DefaultNodeLifetime-time.Hour)); err != nil {
			t.Errorf("%s: node token expired before %v: %v", alg, DefaultNodeLifetime, err)
		}
		if _, err := trust.VerifyToken(tok, now.Add(DefaultNodeLifetime+time.Hour)); !errors.Is(err, ErrToken) {
			t.Errorf("%s: node token valid after %v: %v", alg, DefaultNodeLifetime, err)
		}
		// Revoked like any token, by its serial.
		rev, _, err := ca.Revoke(nil, []*big.Int{sn}, 0, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewTrust(ca.Cert, "rack1", rev).VerifyToken(tok, now); !errors.Is(err, ErrToken) || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("%s: revoked node token: %v, want ErrToken saying revoked", alg, err)
		}
		short, _, err := ca.IssueNodeToken("n4", time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := trust.VerifyToken(short, now.Add(2*time.Hour)); !errors.Is(err, ErrToken) {
			t.Errorf("%s: a one-hour node token verified after two: %v", alg, err)
		}
		for name, f := range map[string]func() error{
			"bad name":          func() error { _, _, err := ca.IssueNodeToken("N3!", 0, now); return err },
			"negative lifetime": func() error { _, _, err := ca.IssueNodeToken("n3", -time.Hour, now); return err },
			"outlives the CA":   func() error { _, _, err := ca.IssueNodeToken("n3", 20*365*24*time.Hour, now); return err },
			"client as node":    func() error { _, _, err := ca.IssueToken("n3", RoleNode, 0, now); return err },
		} {
			if err := f(); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %s: %v, want ErrInvalid", alg, name, err)
			}
		}
	}
}

// TestTokensOnlyForClientsAndNodes: a token signed by the rack's CA
// still does not pass for a member or an integration, nor with a role its
// kind cannot have (a node claiming operator, a client claiming node).
func TestTokensOnlyForClientsAndNodes(t *testing.T) {
	ca := mustCA(t, "rack1", ECDSAP256)
	trust := NewTrust(ca.Cert, "rack1", nil)
	if id, err := trust.VerifyToken(signClaims(t, ca, "spiffe://racklet.rack1/node/n3", RoleNode), now); err != nil || id.Kind != KindNode {
		t.Fatalf("the well-formed control case was refused: %+v %v", id, err)
	}
	for name, tok := range map[string]string{
		"member":               signClaims(t, ca, "spiffe://racklet.rack1/member/m1", RoleMember),
		"integration":          signClaims(t, ca, "spiffe://racklet.rack1/integration/grafana", RoleIntegration),
		"node claims operator": signClaims(t, ca, "spiffe://racklet.rack1/node/n3", RoleOperator),
		"node claims admin":    signClaims(t, ca, "spiffe://racklet.rack1/node/n3", RoleAdmin),
		"client claims node":   signClaims(t, ca, "spiffe://racklet.rack1/client/n3", RoleNode),
		"node of another rack": signClaims(t, ca, "spiffe://racklet.rack2/node/n3", RoleNode),
	} {
		if id, err := trust.VerifyToken(tok, now); !errors.Is(err, ErrToken) {
			t.Errorf("%s: verified as %+v, %v; want ErrToken", name, id, err)
		}
	}
}
