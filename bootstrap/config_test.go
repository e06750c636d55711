package bootstrap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/racklet/rack/firmware"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		in      string
		want    []Param
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "quiet", want: []Param{{Key: "quiet"}}},
		{in: "console=ttyS0,115200  ro\n", want: []Param{{"console", "ttyS0,115200", true}, {Key: "ro"}}},
		{in: "a= b", want: []Param{{"a", "", true}, {Key: "b"}}},
		{in: `racklet.node=n3 "x=a b" y="c d"`, want: []Param{{"racklet.node", "n3", true}, {"x", "a b", true}, {"y", "c d", true}}},
		{in: "k=v=w", want: []Param{{"k", "v=w", true}}},
		{in: "a -- racklet.node=n9", want: []Param{{Key: "a"}}},
		{in: `"" =x b`, want: []Param{{Key: "b"}}},
		{in: "\tx\t", want: []Param{{Key: "x"}}},
		{in: `a="unterminated`, wantErr: true},
		{in: "a\x00b", wantErr: true},
		{in: "a\x7f", wantErr: true},
		{in: "a=\xff", wantErr: true},
		{in: strings.Repeat("x", MaxCmdline+1), wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseCmdline(tc.in)
		if tc.wantErr {
			if !errors.Is(err, ErrCmdline) {
				t.Errorf("ParseCmdline(%q) = %v, %v; want ErrCmdline", tc.in, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCmdline(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

const (
	goodDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	goodKey    = "0123456789abcdef"
)

func TestApplyCmdline(t *testing.T) {
	base := Config{Node: "n1", APIs: []string{"https://file:1"}, Image: "https://file/os.img"}
	tests := []struct {
		name    string
		line    string
		want    Config
		wantErr error
	}{
		{name: "nothing of ours", line: "quiet console=ttyS0", want: base},
		{
			name: "everything",
			line: "racklet.node=n3 racklet.api=https://10.0.0.1:7443,https://10.0.0.2:7443 racklet.api=https://[::1]:7443 racklet.image=https://10.0.0.1/os.img racklet.key=" + goodKey + " racklet.digest=" + goodDigest,
			want: Config{Node: "n3", APIs: []string{"https://10.0.0.1:7443", "https://10.0.0.2:7443", "https://[::1]:7443"}, Image: "https://10.0.0.1/os.img"},
		},
		{name: "http image", line: "racklet.image=http://10.0.0.1/os.img", wantErr: ErrInsecureURL, want: base},
		{name: "tftp image", line: "racklet.image=tftp://10.0.0.1/os.img", wantErr: ErrInsecureURL, want: base},
		{name: "http api", line: "racklet.api=http://10.0.0.1", wantErr: ErrInsecureURL, want: base},
		{name: "relative image", line: "racklet.image=/os.img", wantErr: ErrInsecureURL, want: base},
		{name: "credentials", line: "racklet.image=https://u:p@h/os.img", wantErr: ErrConfig, want: base},
		{name: "bad node", line: "racklet.node=N3", wantErr: ErrConfig, want: base},
		{name: "unknown key", line: "racklet.imgae=https://h/os.img", wantErr: ErrConfig, want: base},
		{name: "no value", line: "racklet.node", wantErr: ErrConfig, want: base},
		{name: "empty value", line: "racklet.node=", wantErr: ErrConfig, want: base},
		{name: "twice", line: "racklet.node=n3 racklet.node=n4", wantErr: ErrConfig, want: Config{Node: "n3", APIs: base.APIs, Image: base.Image}},
		{name: "bad key id", line: "racklet.key=XYZ", wantErr: ErrConfig, want: base},
		{name: "bad digest", line: "racklet.digest=md5:00", wantErr: ErrConfig, want: base},
		{name: "bad token", line: "racklet.token=abc", wantErr: ErrConfig, want: base},
		{name: "token twice", line: "racklet.token=a.b.c racklet.token=d.e.f", wantErr: ErrConfig, want: base},
		{
			name: "valid ones still apply beside a bad one", line: "racklet.node=n7 racklet.image=http://h/os.img",
			wantErr: ErrInsecureURL, want: Config{Node: "n7", APIs: base.APIs, Image: base.Image},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			params, err := ParseCmdline(tc.line)
			if err != nil {
				t.Fatal(err)
			}
			c := base
			c.APIs = append([]string(nil), base.APIs...)
			err = c.ApplyCmdline(params)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("ApplyCmdline = %v, want %v", err, tc.wantErr)
			}
			if c.Node != tc.want.Node || c.Image != tc.want.Image || !reflect.DeepEqual(c.APIs, tc.want.APIs) {
				t.Errorf("config %+v, want %+v", c, tc.want)
			}
		})
	}
	var c Config
	params, _ := ParseCmdline("racklet.key=" + goodKey + " racklet.digest=" + goodDigest + " racklet.token=" + cmdlineToken)
	if err := c.ApplyCmdline(params); err != nil {
		t.Fatal(err)
	}
	if c.KeyID == nil || c.KeyID.String() != goodKey || c.Digest == nil || c.Digest.String() != goodDigest {
		t.Errorf("key %v, digest %v; want %s, %s", c.KeyID, c.Digest, goodKey, goodDigest)
	}
	if c.Token != cmdlineToken {
		t.Errorf("token not taken from the command line")
	}
}

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  error
		want     Config
	}{
		{name: "empty object", in: `{}`},
		{
			name: "all fields",
			in:   `{"node":"n3","api":["https://a:1","https://b:1"],"image":"https://a/os.img","keyId":"` + goodKey + `","imageDigest":"` + goodDigest + `","trustDir":"/etc/x","token":"` + configToken + `"}`,
			want: Config{Node: "n3", APIs: []string{"https://a:1", "https://b:1"}, Image: "https://a/os.img", TrustDir: "/etc/x", Token: configToken},
		},
		{name: "unknown field", in: `{"nodes":"n3"}`, wantErr: ErrConfig},
		{name: "two objects", in: `{} {}`, wantErr: ErrConfig},
		{name: "not an object", in: `[]`, wantErr: ErrConfig},
		{name: "http image", in: `{"image":"http://a/os.img"}`, wantErr: ErrInsecureURL},
		{name: "tftp api", in: `{"api":["tftp://a"]}`, wantErr: ErrInsecureURL},
		{name: "relative trust dir", in: `{"trustDir":"etc"}`, wantErr: ErrConfig},
		{name: "bad token", in: `{"token":"Bearer a.b.c"}`, wantErr: ErrConfig},
		{name: "too large", in: `{"node":"` + strings.Repeat("a", maxConfigFile) + `"}`, wantErr: ErrConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeConfig(strings.NewReader(tc.in))
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("DecodeConfig = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && (c.Node != tc.want.Node || c.Image != tc.want.Image || c.TrustDir != tc.want.TrustDir || c.Token != tc.want.Token || !reflect.DeepEqual(c.APIs, tc.want.APIs)) {
				t.Errorf("config %+v, want %+v", c, tc.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(file, []byte(`{"node":"n1","api":["https://a:1"],"image":"https://a/os.img"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(file, "quiet racklet.node=n3 racklet.api=https://b:1,https://c:1\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Node != "n3" || c.Image != "https://a/os.img" || !reflect.DeepEqual(c.APIs, []string{"https://b:1", "https://c:1"}) {
		t.Errorf("the command line did not win over the file: %+v", c)
	}
	// No file: the command line alone.
	c, err = LoadConfig(filepath.Join(dir, "missing.json"), "racklet.node=n4")
	if err != nil || c.Node != "n4" {
		t.Fatalf("LoadConfig without a file = %+v, %v", c, err)
	}
	if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "racklet.api") {
		t.Errorf("Validate of an incomplete config = %v, want one naming racklet.api", err)
	}
}

func TestLoadTrust(t *testing.T) {
	s := newTestServer(t)
	k1, k2 := pubOf(newKey(t)), pubOf(newKey(t))
	dir := writeTrustDir(t, s.caPEM(), k1, k2)
	tr, err := LoadTrust(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Keys) != 2 || tr.Keys[firmware.KeyIDOf(k1)] == nil || !tr.Epoch.IsZero() {
		t.Fatalf("trust %+v, want both keys and no epoch", tr)
	}
	id2 := firmware.KeyIDOf(k2)
	tr, err = LoadTrust(dir, &id2)
	if err != nil || len(tr.Keys) != 1 || tr.Keys[id2] == nil {
		t.Fatalf("narrowed to %s: %+v, %v", id2, tr.Keys, err)
	}
	stranger := firmware.KeyIDOf(pubOf(newKey(t)))
	if _, err := LoadTrust(dir, &stranger); !errors.Is(err, ErrConfig) {
		t.Errorf("narrowed to an unknown key: %v, want ErrConfig", err)
	}

	epoch := "2026-05-01T12:00:00Z\n"
	if err := os.WriteFile(filepath.Join(dir, EpochFile), []byte(epoch), 0o644); err != nil {
		t.Fatal(err)
	}
	if tr, err = LoadTrust(dir, nil); err != nil || !tr.Epoch.Equal(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("epoch %v, %v", tr.Epoch, err)
	}

	for name, dir := range map[string]string{
		"no CA":   writeTrustDir(t, nil, k1),
		"bad CA":  writeTrustDir(t, []byte("not PEM"), k1),
		"no keys": writeTrustDir(t, s.caPEM()),
	} {
		if _, err := LoadTrust(dir, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: LoadTrust = %v, want ErrConfig", name, err)
		}
	}
	bad := writeTrustDir(t, s.caPEM(), k1)
	if err := os.WriteFile(filepath.Join(bad, KeysDir, "junk.pub"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTrust(bad, nil); !errors.Is(err, firmware.ErrKey) {
		t.Errorf("a bad key file: %v, want firmware.ErrKey", err)
	}
}

// TestEpochTLS: a server certificate that is not valid yet by the clock
// (as on a node without a real-time clock, which starts in 1970) is
// refused, and accepted once the epoch is past its start.
func TestEpochTLS(t *testing.T) {
	notBefore := time.Now().Add(24 * time.Hour)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: notBefore, NotAfter: notBefore.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "server"},
		NotBefore: notBefore, NotAfter: notBefore.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	ctx := context.Background()
	_, err = fetch(ctx, NewHTTPClient(Trust{CAs: pool}), fastRetry, time.Minute, srv.URL+"/x", 10, 0)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("fetch by the clock = %v, want a certificate error", err)
	}
	body, err := fetch(ctx, NewHTTPClient(Trust{CAs: pool, Epoch: notBefore.Add(time.Minute)}), fastRetry, time.Minute, srv.URL+"/x", 10, 0)
	if err != nil || string(body) != "ok" {
		t.Fatalf("fetch at the epoch = %q, %v", body, err)
	}
}

func TestParseEpoch(t *testing.T) {
	for _, in := range []string{"", "yesterday", "2026-05-01", "2026-05-01T12:00:00Z\n\n", strings.Repeat("9", 65)} {
		if _, err := ParseEpoch([]byte(in)); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseEpoch(%q) = %v, want ErrConfig", in, err)
		}
	}
}
