package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubeletAuthz is what one request to an AuthorizingKubelet presented and was decided.
type KubeletAuthz struct {
	User   string
	Groups []string
	// Bearer is whether the request carried an Authorization header.
	Bearer bool
	// Attributes is what was asked of the kube-apiserver (SubjectAccessReview).
	Attributes authorizationv1.ResourceAttributes
	Allowed    bool
	Reason     string
}

// AuthorizingKubelet stands in front of kwok's fake kubelets, which authorize nothing, and
// does what a kubelet does with --authentication-token-webhook=false and
// --authorization-mode=Webhook: it authenticates the client certificate against the cluster
// CA and asks the kube-apiserver (SubjectAccessReview) whether that user may
// get nodes/<subresource>, the subresource taken from the path as the kubelet does
// (/metrics… → metrics, /stats… → stats, otherwise proxy). Allowed requests are proxied to
// kwok; the others are answered 403, or 401 without a certificate. It listens on 127.0.0.1
// with the loopback serving certificate.
type AuthorizingKubelet struct {
	Port int
	srv  *http.Server
	mu   sync.Mutex // guards log
	log  []KubeletAuthz
}

// StartAuthorizingKubelet starts an AuthorizingKubelet for c's kwok. It stops with the test
// context or Close.
func (c *Cluster) StartAuthorizingKubelet() (*AuthorizingKubelet, error) {
	ca, err := c.PKI.CA()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("cluster CA: no certificate")
	}
	serving, err := tls.LoadX509KeyPair(c.PKI.Path("loopback-serving.crt"), c.PKI.Path("loopback-serving.key"))
	if err != nil {
		return nil, fmt.Errorf("load loopback serving pair: %w", err)
	}
	kwok := &url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", c.KwokPort)}
	proxy := httputil.NewSingleHostReverseProxy(kwok)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	k := &AuthorizingKubelet{Port: l.Addr().(*net.TCPAddr).Port}
	k.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.TLS.PeerCertificates) == 0 {
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			cert := r.TLS.PeerCertificates[0]
			a := KubeletAuthz{
				User: cert.Subject.CommonName, Groups: cert.Subject.Organization, Bearer: r.Header.Get("Authorization") != "",
				Attributes: authorizationv1.ResourceAttributes{
					Verb: kubeletVerb(r.Method), Resource: "nodes", Subresource: kubeletSubresource(r.URL.Path), Name: kwokNodeOf(r.URL.Path),
				},
			}
			sar, err := c.client.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{User: a.User, Groups: a.Groups, ResourceAttributes: &a.Attributes},
			}, metav1.CreateOptions{})
			if err != nil {
				http.Error(w, "authorization: "+err.Error(), http.StatusInternalServerError)
				return
			}
			a.Allowed, a.Reason = sar.Status.Allowed, sar.Status.Reason
			k.mu.Lock()
			k.log = append(k.log, a)
			k.mu.Unlock()
			if !a.Allowed {
				http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=%s)", a.User, a.Attributes.Verb, a.Attributes.Subresource), http.StatusForbidden)
				return
			}
			r.Header.Del("Authorization")
			proxy.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{serving}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven,
			MinVersion: tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = k.srv.ServeTLS(l, "", "") }()
	return k, nil
}

// Close stops the server.
func (k *AuthorizingKubelet) Close() error { return k.srv.Close() }

// Requests returns every decision so far and forgets them.
func (k *AuthorizingKubelet) Requests() []KubeletAuthz {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.log
	k.log = nil
	return l
}

// WaitRequest waits until a request of user was decided allowed (or not), and returns it.
func (k *AuthorizingKubelet) WaitRequest(ctx context.Context, timeout time.Duration, user string, allowed bool) (KubeletAuthz, error) {
	var got KubeletAuthz
	err := Poll(ctx, timeout, 200*time.Millisecond, fmt.Sprintf("a kubelet request of %s with allowed=%v", user, allowed), func(context.Context) (bool, error) {
		for _, a := range k.Requests() {
			if a.User == user && a.Allowed == allowed {
				got = a
				return true, nil
			}
		}
		return false, nil
	})
	return got, err
}

// kubeletVerb is the kubelet's authorizer's verb for an HTTP method.
func kubeletVerb(method string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return "get"
}

// kubeletSubresource is the kubelet's authorizer's subresource of nodes for a path.
func kubeletSubresource(path string) string {
	for _, p := range []struct{ prefix, sub string }{{"/stats", "stats"}, {"/metrics", "metrics"}, {"/logs", "log"}, {"/spec", "spec"}, {"/checkpoint", "checkpoint"}} {
		if path == p.prefix || strings.HasPrefix(path, p.prefix+"/") {
			return p.sub
		}
	}
	return "proxy"
}

// kwokNodeOf returns the node of a kwok path /metrics/nodes/<node>/…, where a kubelet
// would use its own name.
func kwokNodeOf(path string) string {
	if rest, ok := strings.CutPrefix(path, "/metrics/nodes/"); ok {
		name, _, _ := strings.Cut(rest, "/")
		return name
	}
	return ""
}
