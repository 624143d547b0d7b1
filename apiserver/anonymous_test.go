package apiserver

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

type staticAuthn struct {
	resp *authenticator.Response
	ok   bool
	err  error
}

func (s staticAuthn) AuthenticateRequest(*http.Request) (*authenticator.Response, bool, error) {
	return s.resp, s.ok, s.err
}

func TestAnonymousOnlyForHealth(t *testing.T) {
	anon := &authenticator.Response{User: &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}}
	alice := &authenticator.Response{User: &user.DefaultInfo{Name: "alice"}}
	boom := errors.New("token review failed")
	tests := []struct {
		name    string
		inner   staticAuthn
		path    string
		wantOK  bool
		wantErr error
	}{
		{name: "anonymous on the API is unauthenticated", inner: staticAuthn{resp: anon, ok: true}, path: "/apis/metrics.k8s.io/v1/nodes"},
		{name: "anonymous on /metrics is unauthenticated", inner: staticAuthn{resp: anon, ok: true}, path: "/metrics"},
		{name: "anonymous on a look-alike path", inner: staticAuthn{resp: anon, ok: true}, path: "/livezz"},
		{name: "anonymous on /livez", inner: staticAuthn{resp: anon, ok: true}, path: "/livez", wantOK: true},
		{name: "anonymous on /readyz/ping", inner: staticAuthn{resp: anon, ok: true}, path: "/readyz/ping", wantOK: true},
		{name: "anonymous on /healthz", inner: staticAuthn{resp: anon, ok: true}, path: "/healthz", wantOK: true},
		{name: "a user passes", inner: staticAuthn{resp: alice, ok: true}, path: "/apis/metrics.k8s.io/v1/nodes", wantOK: true},
		{name: "an error passes through", inner: staticAuthn{err: boom}, path: "/apis", wantErr: boom},
		{name: "not authenticated stays so", inner: staticAuthn{}, path: "/livez"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := anonymousOnlyForHealth{authenticator.RequestFunc(tt.inner.AuthenticateRequest)}
			resp, ok, err := a.AuthenticateRequest(httptest.NewRequest("GET", tt.path, nil))
			if !errors.Is(err, tt.wantErr) || ok != tt.wantOK {
				t.Fatalf("got ok=%v err=%v, want ok=%v err=%v", ok, err, tt.wantOK, tt.wantErr)
			}
			if ok && resp == nil {
				t.Fatal("ok without a response")
			}
		})
	}
}
