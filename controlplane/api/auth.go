package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/racklet/rack/controlplane/pki"
)

// Authentication and authorisation. With Config.Trust set, every request
// but GET /healthz must prove who it comes from, by a client certificate
// the rack's CA issued (the TLS server verifies the chain; this checks the
// identity and the revocation list) or by a bearer token the CA signed
// (rackctl pki token). The identity's role must reach the role the route
// needs:
//
//	viewer    every read: GET and HEAD, events, metrics
//	operator  commands on nodes: register, remove, power, boot, fans
//	admin     members, firmware, /debug/pprof, and anything else that changes the rack
//
// Members count as admins (members call each other), integrations as
// viewers. A node (its boot environment, role node) is outside that
// order: it may make exactly one request, POST
// /v1/nodes/<its own name>/boot/stages, and nothing else, not even a read
// (NodeMay). The identity is the actor recorded on the events a request
// produces (audit), e.g. client/alice or node/n3.

// Codes of authentication and authorisation failures.
const (
	CodeUnauthenticated = "unauthenticated" // 401: no valid certificate or token
	CodeForbidden       = "forbidden"       // 403: the identity's role is not enough
)

// rank orders roles by what they may do. A node ranks below viewer: all
// it may do is NodeMay's one request.
func rank(r pki.Role) int {
	switch r {
	case pki.RoleViewer, pki.RoleIntegration:
		return 1
	case pki.RoleOperator:
		return 2
	case pki.RoleAdmin, pki.RoleMember:
		return 3
	}
	return 0
}

// RequiredRole is the role a request needs (a node's one request aside,
// see NodeMay).
func RequiredRole(method, path string) pki.Role {
	if strings.HasPrefix(path, "/debug/") {
		return pki.RoleAdmin // profiles show the process's inner workings
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return pki.RoleViewer
	}
	switch {
	case strings.HasPrefix(path, "/v1/nodes"), strings.HasPrefix(path, "/v1/fan-policy"), strings.HasPrefix(path, "/v1/fans"):
		return pki.RoleOperator
	}
	return pki.RoleAdmin
}

// NodeStagesPath is the path a node reports its boot stages at.
func NodeStagesPath(node string) string { return "/v1/nodes/" + node + "/boot/stages" }

// NodeMay reports whether the node identity id may make the request: only
// POST NodeStagesPath(id.Name), matched exactly on the request's cleaned
// path, which must also be the path as sent (so /v1/nodes/n4/../n3/boot/stages
// is refused, whatever the router would make of it). Nothing else, not even
// a read, and nothing for an identity that is not a node.
func NodeMay(id pki.Identity, method, urlPath string) bool {
	return id.Kind == pki.KindNode && id.Role == pki.RoleNode && method == http.MethodPost &&
		path.Clean(urlPath) == urlPath && urlPath == NodeStagesPath(id.Name)
}

type identityKey struct{}

// IdentityFrom returns the identity a request was authenticated as.
func IdentityFrom(ctx context.Context) (pki.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(pki.Identity)
	return id, ok
}

// actor is who the events a request produces are recorded as asked by:
// kind/name of its identity, or Actor when the API runs without
// authentication.
func actor(r *http.Request) string {
	if id, ok := IdentityFrom(r.Context()); ok {
		return id.String()
	}
	return Actor
}

// authenticate finds the identity of r. It returns an API error for the
// client on failure.
func (s *Server) authenticate(r *http.Request) (pki.Identity, *Error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id, err := s.trust.Peer(r.TLS.PeerCertificates[0])
		if err != nil {
			return pki.Identity{}, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "client certificate refused: " + err.Error(), Err: err}
		}
		return id, nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return pki.Identity{}, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated,
			Message: "present a client certificate issued by the rack's CA, or an Authorization: Bearer token (rackctl pki token)"}
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return pki.Identity{}, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "the Authorization header must be \"Bearer TOKEN\""}
	}
	id, err := s.trust.VerifyToken(strings.TrimSpace(tok), time.Now())
	if err != nil {
		return pki.Identity{}, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "bearer token refused: " + err.Error(), Err: err}
	}
	return id, nil
}

// authorize runs before routing. It returns the request with the identity
// in its context, or false after writing the refusal.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if s.trust == nil || (r.Method == http.MethodGet && r.URL.Path == "/healthz") {
		return r, true
	}
	id, aerr := s.authenticate(r)
	if aerr != nil {
		s.log.WarnContext(r.Context(), "request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "code", aerr.Code, "reason", aerr.Message)
		w.Header().Set("WWW-Authenticate", `Bearer realm="racklet"`)
		writeJSON(w, aerr.Status, ErrorBody{Code: aerr.Code, Message: aerr.Message})
		return r, false
	}
	need := RequiredRole(r.Method, r.URL.Path)
	forbidden := rank(id.Role) < rank(need)
	if id.Role == pki.RoleNode || id.Kind == pki.KindNode {
		forbidden = !NodeMay(id, r.Method, r.URL.Path)
	}
	if forbidden {
		msg := fmt.Sprintf("%s %s needs role %s; %s has role %s", r.Method, r.URL.Path, need, id, id.Role)
		if id.Kind == pki.KindNode {
			msg += fmt.Sprintf(", which may only POST %s", NodeStagesPath(id.Name))
		}
		s.log.WarnContext(r.Context(), "request forbidden", "remote", r.RemoteAddr, "identity", id.String(), "role", string(id.Role), "method", r.Method, "path", r.URL.Path, "needs", string(need))
		writeJSON(w, http.StatusForbidden, ErrorBody{Code: CodeForbidden, Message: msg})
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id)), true
}

// ServerTLS is the API's TLS configuration: TLS 1.3, the member's
// certificate, and client certificates from the rack's CA verified when
// given (a dashboard may come with a bearer token instead; authorize then
// insists on one or the other).
func ServerTLS(trust *pki.Trust, cert tls.Certificate) *tls.Config {
	cfg := trust.ServerConfig(cert)
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		return verify(cs)
	}
	return cfg
}
