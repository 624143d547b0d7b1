package apiserver

import (
	"net/http"
	"strings"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// healthPaths may be reached without credentials: the kubelet's probes send none.
var healthPaths = []string{"/healthz", "/livez", "/readyz"}

// anonymousOnlyForHealth wraps the delegated authenticator. The generic apiserver always
// lets an anonymous request through as system:anonymous and leaves the refusal to the
// authorizer (403). Hindsight answers such a request with 401 everywhere but the health
// endpoints, so that no anonymous request is ever authorised, whatever RBAC grants
// system:anonymous or system:unauthenticated.
type anonymousOnlyForHealth struct {
	authenticator.Request
}

func (a anonymousOnlyForHealth) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	resp, ok, err := a.Request.AuthenticateRequest(req)
	if err != nil || !ok || resp == nil || resp.User == nil {
		return resp, ok, err
	}
	if resp.User.GetName() == user.Anonymous && !isHealthPath(req.URL.Path) {
		return nil, false, nil
	}
	return resp, ok, nil
}

func isHealthPath(p string) bool {
	for _, h := range healthPaths {
		if p == h || strings.HasPrefix(p, h+"/") {
			return true
		}
	}
	return false
}
