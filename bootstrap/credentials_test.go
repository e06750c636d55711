package bootstrap

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/pki"
)

// Tokens of the form rackctl pki token prints (the signature does not
// matter here: the control plane checks it).
const (
	fileToken    = "eyJmaWxl.eyJub2RlIjoibjMifQ.c2lnLWZpbGU"
	configToken  = "eyJjb25maWc.eyJub2RlIjoibjMifQ.c2lnLWNvbmZpZw"
	cmdlineToken = "eyJjbWRsaW5l.eyJub2RlIjoibjMifQ.c2lnLWNtZGxpbmU"
)

// nodePKI is a rack CA and what it issues to nodes.
type nodePKI struct {
	ca *pki.CA
}

func newNodePKI(t *testing.T) *nodePKI {
	t.Helper()
	ca, err := pki.NewCA("rack1", pki.ECDSAP256, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &nodePKI{ca: ca}
}

// writeNodeCert issues a node certificate for name and writes it into dir
// as NodeCertFile and NodeKeyFile, as an operator would copy
// `rackctl pki issue node NAME`'s files.
func (p *nodePKI) writeNodeCert(t *testing.T, dir, name string) {
	t.Helper()
	is, err := p.ca.Issue(pki.Request{Kind: pki.KindNode, Name: name}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	certPath, keyPath, err := pki.WriteIssued(tmp, is)
	if err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{certPath: NodeCertFile, keyPath: NodeKeyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLoadCredentialsPrecedence: the token comes from the kernel command
// line, else the configuration file, else the token file in the trust
// directory; each source is said (TokenFrom), none is required.
func TestLoadCredentialsPrecedence(t *testing.T) {
	tests := []struct {
		name                  string
		file, config, cmdline bool
		wantToken             Secret
		wantFrom              string // "file" stands for the token file's path
	}{
		{name: "none"},
		{name: "token file only", file: true, wantToken: fileToken, wantFrom: "file"},
		{name: "configuration file over token file", file: true, config: true, wantToken: configToken, wantFrom: "configuration file"},
		{name: "configuration file alone", config: true, wantToken: configToken, wantFrom: "configuration file"},
		{name: "command line over both", file: true, config: true, cmdline: true, wantToken: cmdlineToken, wantFrom: "kernel command line"},
		{name: "command line over token file", file: true, cmdline: true, wantToken: cmdlineToken, wantFrom: "kernel command line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			trust := t.TempDir()
			if tc.file {
				writeFile(t, filepath.Join(trust, TokenFile), fileToken+"\n")
			}
			cfg := `{"node":"n3","trustDir":"` + trust + `"`
			if tc.config {
				cfg += `,"token":"` + configToken + `"`
			}
			cfgFile := filepath.Join(t.TempDir(), "bootstrap.json")
			writeFile(t, cfgFile, cfg+"}")
			line := "quiet"
			if tc.cmdline {
				line += " racklet.token=" + cmdlineToken
			}
			c, err := LoadConfig(cfgFile, line)
			if err != nil {
				t.Fatal(err)
			}
			cr, err := LoadCredentials(c)
			if err != nil {
				t.Fatal(err)
			}
			wantFrom := tc.wantFrom
			if wantFrom == "file" {
				wantFrom = filepath.Join(trust, TokenFile)
			}
			if cr.Token != tc.wantToken || cr.TokenFrom != wantFrom || cr.Cert != nil {
				t.Fatalf("token %q from %q (cert %v), want %q from %q", string(cr.Token), cr.TokenFrom, cr.Cert != nil, string(tc.wantToken), wantFrom)
			}
		})
	}
}

// TestLoadCredentialsFiles: the node's certificate and key are loaded from
// the trust directory; half a pair, a certificate for another node, a
// broken or empty token file are configuration errors that never quote
// the token.
func TestLoadCredentialsFiles(t *testing.T) {
	p := newNodePKI(t)
	good := t.TempDir()
	p.writeNodeCert(t, good, "n3")
	writeFile(t, filepath.Join(good, TokenFile), fileToken)
	cr, err := LoadCredentials(Config{Node: "n3", TrustDir: good})
	if err != nil {
		t.Fatal(err)
	}
	if cr.Cert == nil || cr.Cert.Leaf == nil || cr.Cert.Leaf.Subject.CommonName != "n3" || cr.Token != fileToken {
		t.Fatalf("credentials: cert %v, token %q", cr.Cert, string(cr.Token))
	}

	const secretish = "eyJzZWNyZXQ.eyJzZWNyZXQ.not a token"
	bad := map[string]func(dir string){
		"certificate without key": func(dir string) {
			p.writeNodeCert(t, dir, "n3")
			os.Remove(filepath.Join(dir, NodeKeyFile))
		},
		"key without certificate": func(dir string) {
			p.writeNodeCert(t, dir, "n3")
			os.Remove(filepath.Join(dir, NodeCertFile))
		},
		"certificate for another node": func(dir string) { p.writeNodeCert(t, dir, "n4") },
		"garbage certificate": func(dir string) {
			writeFile(t, filepath.Join(dir, NodeCertFile), "junk")
			writeFile(t, filepath.Join(dir, NodeKeyFile), "junk")
		},
		"empty token file":     func(dir string) { writeFile(t, filepath.Join(dir, TokenFile), "\n") },
		"not a token":          func(dir string) { writeFile(t, filepath.Join(dir, TokenFile), secretish) },
		"token file too large": func(dir string) { writeFile(t, filepath.Join(dir, TokenFile), "a.b."+strings.Repeat("c", maxToken)) },
	}
	for name, setup := range bad {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			setup(dir)
			_, err := LoadCredentials(Config{Node: "n3", TrustDir: dir})
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("LoadCredentials = %v, want ErrConfig", err)
			}
			if strings.Contains(err.Error(), "eyJzZWNyZXQ") {
				t.Fatalf("the error quotes the token: %v", err)
			}
		})
	}
	// A token beside a broken certificate is kept, so the failure can be
	// reported with it.
	dir := t.TempDir()
	p.writeNodeCert(t, dir, "n4")
	cr, err = LoadCredentials(Config{Node: "n3", TrustDir: dir, Token: configToken})
	if !errors.Is(err, ErrConfig) || cr.Token != configToken || cr.Cert != nil {
		t.Fatalf("token beside a wrong certificate: %q %v %v", string(cr.Token), cr.Cert, err)
	}
}

// TestTokenNeverPrinted: a configuration holding a token prints, logs and
// fails without showing it.
func TestTokenNeverPrinted(t *testing.T) {
	params, err := ParseCmdline("racklet.node=n3 racklet.token=" + cmdlineToken)
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	if err := c.ApplyCmdline(params); err != nil || c.Token != cmdlineToken {
		t.Fatalf("ApplyCmdline: %q %v", string(c.Token), err)
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%v %+v %#v %s %q\n", c, c, c, c.Token, c.Token)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "token", c.Token, "config", c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "token", c.Token)
	if strings.Contains(buf.String(), "c2lnLWNtZGxpbmU") {
		t.Fatalf("the token shows:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "[redacted]") {
		t.Fatalf("no [redacted] in:\n%s", buf.String())
	}
	// Refused tokens are not quoted either, on the command line or in the
	// configuration file.
	for _, bad := range []string{"eyJzZWNyZXQ", "eyJzZWNyZXQ.x", "eyJzZWNyZXQ.a.b.c", "eyJzZWNyZXQ.a.b!"} {
		params, err := ParseCmdline("racklet.token=" + bad)
		if err != nil {
			t.Fatal(err)
		}
		var c Config
		err = c.ApplyCmdline(params)
		if !errors.Is(err, ErrConfig) || strings.Contains(err.Error(), "eyJzZWNyZXQ") || c.Token != "" {
			t.Errorf("racklet.token=%s: %v (token %q)", bad, err, string(c.Token))
		}
		_, err = DecodeConfig(strings.NewReader(`{"token":"` + bad + `"}`))
		if !errors.Is(err, ErrConfig) || strings.Contains(err.Error(), "eyJzZWNyZXQ") {
			t.Errorf(`{"token":%q}: %v`, bad, err)
		}
	}
}

// authServer is an HTTPS stage route that records what credentials each
// report came with.
type authServer struct {
	*httptest.Server
	mu    sync.Mutex
	authz []string // the Authorization header of each report
	certs []string // the client certificate's common name of each report ("" none)
}

func newAuthServer(t *testing.T, clientCAs *pki.CA, requireCert bool) *authServer {
	t.Helper()
	a := &authServer{}
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		cn := ""
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		a.mu.Lock()
		a.authz = append(a.authz, r.Header.Get("Authorization"))
		a.certs = append(a.certs, cn)
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	a.Config.ErrorLog = log.New(io.Discard, "", 0)
	if clientCAs != nil {
		a.TLS = &tls.Config{ClientCAs: clientCAs.Pool(), ClientAuth: tls.VerifyClientCertIfGiven}
		if requireCert {
			a.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	a.StartTLS()
	t.Cleanup(a.Close)
	return a
}

func (a *authServer) seen() (authz, certs []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.authz...), append([]string(nil), a.certs...)
}

// TestHTTPReporterCredentials: the reporter sends its token as a bearer
// token, presents the node's certificate from the trust directory when the
// server asks for one, and sends neither when it has none.
func TestHTTPReporterCredentials(t *testing.T) {
	p := newNodePKI(t)
	ctx := context.Background()
	pool := newTestServer(t).pool() // httptest servers share a certificate

	t.Run("bearer token", func(t *testing.T) {
		s := newAuthServer(t, nil, false)
		r := &HTTPReporter{Client: NewHTTPClient(Trust{CAs: pool}), APIs: []string{s.URL}, Node: "n3", Retry: fastRetry, Token: fileToken}
		if err := r.Report(ctx, Report{Stage: StageBootstrap}); err != nil {
			t.Fatal(err)
		}
		r.Token = ""
		if err := r.Report(ctx, Report{Stage: StageBootstrap}); err != nil {
			t.Fatal(err)
		}
		authz, _ := s.seen()
		if len(authz) != 2 || authz[0] != "Bearer "+fileToken || authz[1] != "" {
			t.Fatalf("Authorization headers %q, want the token, then none", authz)
		}
	})

	t.Run("client certificate from the trust directory", func(t *testing.T) {
		s := newAuthServer(t, p.ca, true)
		dir := t.TempDir()
		p.writeNodeCert(t, dir, "n3")
		writeFile(t, filepath.Join(dir, TokenFile), fileToken)
		cr, err := LoadCredentials(Config{Node: "n3", TrustDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		r := &HTTPReporter{Client: NewReportClient(Trust{CAs: pool}, cr), APIs: []string{s.URL}, Node: "n3", Retry: fastRetry, Token: cr.Token}
		if err := r.Report(ctx, Report{Stage: StageBootstrap}); err != nil {
			t.Fatal(err)
		}
		authz, certs := s.seen()
		if len(certs) != 1 || certs[0] != "n3" || authz[0] != "Bearer "+fileToken {
			t.Fatalf("the server saw certificates %q and tokens %q, want n3's and the file's", certs, authz)
		}
		// Without the certificate, a server that requires one refuses the
		// handshake: the report fails (and is retried, within bounds).
		plain := &HTTPReporter{Client: NewReportClient(Trust{CAs: pool}, Credentials{}), APIs: []string{s.URL}, Node: "n3", Retry: fastRetry}
		if err := plain.Report(ctx, Report{Stage: StageBootstrap}); !errors.Is(err, ErrReport) {
			t.Fatalf("a report without the required certificate: %v", err)
		}
		if _, certs := s.seen(); len(certs) != 1 {
			t.Fatalf("the server got %d reports, want still 1", len(certs))
		}
	})

	t.Run("no certificate unless the server asks", func(t *testing.T) {
		s := newAuthServer(t, nil, false)
		dir := t.TempDir()
		p.writeNodeCert(t, dir, "n3")
		cr, err := LoadCredentials(Config{Node: "n3", TrustDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		r := &HTTPReporter{Client: NewReportClient(Trust{CAs: pool}, cr), APIs: []string{s.URL}, Node: "n3", Retry: fastRetry}
		if err := r.Report(ctx, Report{Stage: StageBootstrap}); err != nil {
			t.Fatal(err)
		}
		if authz, certs := s.seen(); len(certs) != 1 || certs[0] != "" || authz[0] != "" {
			t.Fatalf("server saw certificate %q and token %q, want neither", certs, authz)
		}
	})
}
