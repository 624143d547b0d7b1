package scraper

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
)

// recordingKubelet is a fake kubelet that verifies a client certificate when one is given
// (as a kubelet does with --client-ca-file) and records, per request, the certificate's
// common name and the Authorization header.
type recordingKubelet struct {
	*fakeKubelet
	mu   sync.Mutex // guards seen
	seen []credentials
}

// credentials are what one request presented.
type credentials struct{ cn, authorization string }

func newRecordingKubelet(t testing.TB, clientCA *x509.Certificate, h http.Handler) *recordingKubelet {
	t.Helper()
	k := &recordingKubelet{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := credentials{authorization: r.Header.Get("Authorization")}
		if len(r.TLS.PeerCertificates) > 0 {
			c.cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		k.mu.Lock()
		k.seen = append(k.seen, c)
		k.mu.Unlock()
		if h != nil {
			h.ServeHTTP(w, r)
			return
		}
		_, _ = w.Write([]byte(kwokBody))
	}))
	pool := x509.NewCertPool()
	pool.AddCert(clientCA)
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	k.fakeKubelet = wrapFakeKubelet(t, srv)
	return k
}

// take returns what the requests since the last take presented.
func (k *recordingKubelet) take() []credentials {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.seen
	k.seen = nil
	return s
}

// TestFetchCredentials checks which credentials reach a kubelet for every combination of
// TLS verification and client credentials: the bearer token only to a verified kubelet and
// only when there is no client certificate, the client certificate whenever it is set (also
// to an unverified kubelet: it is useless without its key), and a warning once when
// insecure TLS withholds a token.
func TestFetchCredentials(t *testing.T) {
	t.Parallel()
	ca, caKey := genCert(t, "kubelet-client-ca", true, nil, nil)
	cert, key := genCert(t, "system:hindsight", false, ca, caKey)
	dir := t.TempDir()
	certFile, keyFile, tokenFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "token")
	writeKeyPair(t, certFile, keyFile, cert, key)
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k := newRecordingKubelet(t, ca, nil)

	const cn = "system:hindsight"
	tests := []struct {
		name     string
		cfg      KubeletConfig
		want     credentials
		wantWarn int
	}{
		{name: "verified, token", cfg: KubeletConfig{CAFile: k.caFile, BearerToken: "s3cret"}, want: credentials{authorization: "Bearer s3cret"}},
		{name: "verified, token file", cfg: KubeletConfig{CAFile: k.caFile, TokenFile: tokenFile}, want: credentials{authorization: "Bearer from-file"}},
		{name: "verified, cert", cfg: KubeletConfig{CAFile: k.caFile, ClientCertFile: certFile, ClientKeyFile: keyFile}, want: credentials{cn: cn}},
		{name: "verified, cert and token", cfg: KubeletConfig{CAFile: k.caFile, ClientCertFile: certFile, ClientKeyFile: keyFile, BearerToken: "s3cret"}, want: credentials{cn: cn}},
		{name: "verified, cert and token file", cfg: KubeletConfig{CAFile: k.caFile, ClientCertFile: certFile, ClientKeyFile: keyFile, TokenFile: tokenFile}, want: credentials{cn: cn}},
		{name: "verified, nothing", cfg: KubeletConfig{CAFile: k.caFile}},
		{name: "insecure, token", cfg: KubeletConfig{InsecureTLS: true, BearerToken: "s3cret"}, wantWarn: 1},
		{name: "insecure, token file", cfg: KubeletConfig{InsecureTLS: true, TokenFile: tokenFile}, wantWarn: 1},
		{name: "insecure, cert", cfg: KubeletConfig{InsecureTLS: true, ClientCertFile: certFile, ClientKeyFile: keyFile}, want: credentials{cn: cn}},
		{name: "insecure, cert and token", cfg: KubeletConfig{InsecureTLS: true, ClientCertFile: certFile, ClientKeyFile: keyFile, BearerToken: "s3cret"}, want: credentials{cn: cn}, wantWarn: 1},
		{name: "insecure, nothing", cfg: KubeletConfig{InsecureTLS: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: k records every request.
			var warns atomic.Int32
			log := slog.New(countWarnings{testlog.New(t).Handler(), &warns})
			tc.cfg.PreferredAddressTypes, tc.cfg.UseNodeStatusPort = []corev1.NodeAddressType{corev1.NodeInternalIP}, true
			kc, err := NewKubeletClient(tc.cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Close()
			k.take()
			for range 2 { // a new connection, then a kept-alive one
				if _, err := kc.Fetch(t.Context(), kwokNode("n", k.port, "")); err != nil {
					t.Fatal(err)
				}
			}
			seen := k.take()
			if len(seen) != 2 {
				t.Fatalf("kubelet saw %d requests, want 2", len(seen))
			}
			for i, got := range seen {
				if got != tc.want {
					t.Errorf("request %d presented %+v, want %+v", i, got, tc.want)
				}
			}
			if got := int(warns.Load()); got != tc.wantWarn {
				t.Errorf("%d warnings, want %d", got, tc.wantWarn)
			}
		})
	}
}

// TestFetchDoesNotFollowRedirects checks that a kubelet answering with a redirect to another
// server gets a failed scrape, and that the other server is never contacted, so it never
// sees the token (client-go's bearer round tripper would set it on the redirected request).
func TestFetchDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	ca, _ := genCert(t, "kubelet-client-ca", true, nil, nil)
	elsewhere := newRecordingKubelet(t, ca, nil)
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			// Not parallel: elsewhere records every request.
			k := newRecordingKubelet(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, elsewhere.srv.URL+"/metrics/resource", code)
			}))
			// Both servers have httptest's certificate: the redirect target verifies too.
			kc := newTestClient(t, KubeletConfig{CAFile: k.caFile, BearerToken: "s3cret"})
			_, err := kc.Fetch(t.Context(), kwokNode("n", k.port, ""))
			var se *StatusError
			if !errors.As(err, &se) || se.Code != code {
				t.Errorf("Fetch() error = %v, want a StatusError %d", err, code)
			}
			if got := k.take(); len(got) != 1 || got[0].authorization != "Bearer s3cret" {
				t.Errorf("kubelet saw %+v, want one request with the token", got)
			}
			if got := elsewhere.take(); len(got) != 0 {
				t.Errorf("redirect target saw %d requests (%+v), want none", len(got), got)
			}
		})
	}
}
