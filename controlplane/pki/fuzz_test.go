package pki

import (
	"testing"
)

func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{"spiffe://racklet.rack1/client/alice", "spiffe://racklet.rack1/member/m1", "spiffe://racklet.rack1/node/n3", "spiffe://racklet.rack1/integration/grafana", "spiffe://x/y", "http://racklet.a/b/c", "spiffe://racklet.a/b/c/d", "spiffe://user@racklet.a:1/b/c?q#f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rack, kind, name, err := ParseSPIFFEID(s)
		if err != nil {
			return
		}
		// Whatever parses must print back to an ID that parses the same.
		id := Identity{Rack: rack, Kind: kind, Name: name}
		r2, k2, n2, err := ParseSPIFFEID(id.SPIFFEID().String())
		if err != nil || r2 != rack || k2 != kind || n2 != name {
			t.Fatalf("%q parsed to %q/%q/%q, reparsed %q/%q/%q (%v)", s, rack, kind, name, r2, k2, n2, err)
		}
	})
}

func FuzzParseRevocations(f *testing.F) {
	ca, err := NewCA("rack1", ECDSAP256, 0, now)
	if err != nil {
		f.Fatal(err)
	}
	_, pemData, err := ca.Revoke(nil, nil, 0, now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pemData)
	f.Add([]byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRevocations(data, ca.Cert, now)
		if err == nil && r == nil {
			t.Fatal("nil list without an error")
		}
	})
}

func FuzzVerifyToken(f *testing.F) {
	ca, err := NewCA("rack1", ECDSAP256, 0, now)
	if err != nil {
		f.Fatal(err)
	}
	tok, _, err := ca.IssueToken("dash", RoleViewer, 0, now)
	if err != nil {
		f.Fatal(err)
	}
	nodeTok, _, err := ca.IssueNodeToken("n3", 0, now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(nodeTok)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	trust := NewTrust(ca.Cert, "rack1", nil)
	f.Fuzz(func(t *testing.T, s string) {
		id, err := trust.VerifyToken(s, now)
		if err != nil {
			return
		}
		// Only clients and nodes hold tokens, and a node only role node.
		if (id.Kind != KindClient && id.Kind != KindNode) || id.Rack != "rack1" || id.Validate() != nil ||
			(id.Kind == KindNode) != (id.Role == RoleNode) {
			t.Fatalf("accepted %q as %+v", s, id)
		}
	})
}
