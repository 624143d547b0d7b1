package scraper

import (
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
)

const kwokBody = "node_cpu_usage_seconds_total 5.826555575448\nnode_memory_working_set_bytes 6.30194176e+08\n" +
	`container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-0"} 1.653039334` + "\n" +
	`container_memory_working_set_bytes{container="app",namespace="default",pod="web-0"} 3.145728e+08` + "\n"

// fakeKubelet is an HTTPS server on 127.0.0.1 with httptest's self-signed certificate (IP SAN
// 127.0.0.1), which caFile holds.
type fakeKubelet struct {
	srv    *httptest.Server
	caFile string
	port   int
}

func newFakeKubelet(t testing.TB, h http.Handler) *fakeKubelet {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return wrapFakeKubelet(t, srv)
}

func wrapFakeKubelet(t testing.TB, srv *httptest.Server) *fakeKubelet {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	writePEM(t, caFile, "CERTIFICATE", srv.Certificate().Raw)
	return &fakeKubelet{srv: srv, caFile: caFile, port: srv.Listener.Addr().(*net.TCPAddr).Port}
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kwokNode is a node the way kwok publishes it: InternalIP 127.0.0.1, the kubelet port in
// daemonEndpoints and, when path is set, the resource metrics path annotation.
func kwokNode(name string, port int, path string) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		},
	}
	if path != "" {
		n.Annotations = map[string]string{ResourceMetricsPathAnnotation: path}
	}
	return n
}

func newTestClient(t testing.TB, cfg KubeletConfig) *KubeletClient {
	t.Helper()
	if cfg.PreferredAddressTypes == nil {
		cfg.PreferredAddressTypes = []corev1.NodeAddressType{corev1.NodeInternalIP}
	}
	cfg.UseNodeStatusPort = true
	kc, err := NewKubeletClient(cfg, testlog.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc
}

// genCert makes an ECDSA certificate for cn, self-signed when parent is nil.
func genCert(t testing.TB, cn string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  isCA,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestKubeletConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     KubeletConfig
		wantErr []string
	}{
		{name: "zero value", cfg: KubeletConfig{}},
		{name: "full", cfg: KubeletConfig{Port: 10250, PreferredAddressTypes: []corev1.NodeAddressType{corev1.NodeInternalIP}, CAFile: "ca", ClientCertFile: "c", ClientKeyFile: "k", TokenFile: "t", Timeout: time.Second, MaxBodyBytes: 1}},
		{
			name: "everything wrong",
			cfg: KubeletConfig{
				Port: 70000, PreferredAddressTypes: []corev1.NodeAddressType{"Bogus"}, InsecureTLS: true, CAFile: "ca",
				ClientCertFile: "c", BearerToken: "x", TokenFile: "t", Timeout: -1, MaxBodyBytes: -1,
			},
			wantErr: []string{"port 70000", `"Bogus"`, "mutually exclusive", "certificate and key", "token file are mutually", "timeout", "max body"},
		},
		{name: "bytes in flight below the default body cap", cfg: KubeletConfig{MaxBytesInFlight: 1 << 20}, wantErr: []string{"less than the max body bytes 8388608"}},
		{name: "bytes in flight below the body cap", cfg: KubeletConfig{MaxBodyBytes: 2048, MaxBytesInFlight: 1024}, wantErr: []string{"in flight 1024 is less than the max body bytes 2048"}},
		{name: "negative bytes in flight", cfg: KubeletConfig{MaxBytesInFlight: -1}, wantErr: []string{"in flight -1 is negative"}},
		{name: "one body in flight", cfg: KubeletConfig{MaxBodyBytes: 1024, MaxBytesInFlight: 1024}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestKubeletURL(t *testing.T) {
	t.Parallel()
	addrs := []corev1.NodeAddress{
		{Type: corev1.NodeExternalIP, Address: "203.0.113.7"},
		{Type: corev1.NodeInternalIP, Address: "10.0.0.1"},
		{Type: corev1.NodeInternalIP, Address: "10.0.0.2"},
		{Type: corev1.NodeHostName, Address: "node-1"},
	}
	node := func(addrs []corev1.NodeAddress, port int32, ann map[string]string) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-1", Annotations: ann},
			Status: corev1.NodeStatus{
				Addresses:       addrs,
				DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: port}},
			},
		}
	}
	tests := []struct {
		name    string
		cfg     KubeletConfig
		node    *corev1.Node
		want    string
		wantErr string
	}{
		{name: "defaults prefer the hostname", node: node(addrs, 10247, nil), want: "https://node-1:10250/metrics/resource"},
		{
			name: "first address of the first preferred type",
			cfg:  KubeletConfig{PreferredAddressTypes: []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP}},
			node: node(addrs, 0, nil), want: "https://10.0.0.1:10250/metrics/resource",
		},
		{
			name: "falls through to a later type",
			cfg:  KubeletConfig{PreferredAddressTypes: []corev1.NodeAddressType{corev1.NodeInternalDNS, corev1.NodeExternalIP}},
			node: node(addrs, 0, nil), want: "https://203.0.113.7:10250/metrics/resource",
		},
		{
			name: "IPv6 is bracketed",
			cfg:  KubeletConfig{PreferredAddressTypes: []corev1.NodeAddressType{corev1.NodeInternalIP}},
			node: node([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "fd00::1"}}, 0, nil), want: "https://[fd00::1]:10250/metrics/resource",
		},
		{name: "configured port", cfg: KubeletConfig{Port: 4443}, node: node(addrs, 10247, nil), want: "https://node-1:4443/metrics/resource"},
		{name: "node status port", cfg: KubeletConfig{UseNodeStatusPort: true}, node: node(addrs, 10247, nil), want: "https://node-1:10247/metrics/resource"},
		{name: "node status port unset falls back", cfg: KubeletConfig{UseNodeStatusPort: true, Port: 4443}, node: node(addrs, 0, nil), want: "https://node-1:4443/metrics/resource"},
		{name: "node status port invalid", cfg: KubeletConfig{UseNodeStatusPort: true}, node: node(addrs, 70000, nil), wantErr: "kubelet port 70000"},
		{
			name: "kwok path annotation",
			cfg:  KubeletConfig{UseNodeStatusPort: true, PreferredAddressTypes: []corev1.NodeAddressType{corev1.NodeInternalIP}},
			node: kwokNode("kwok-node-0", 10247, "/metrics/nodes/kwok-node-0/metrics/resource"),
			want: "https://127.0.0.1:10247/metrics/nodes/kwok-node-0/metrics/resource",
		},
		{
			name: "empty annotation is ignored",
			node: node(addrs, 0, map[string]string{ResourceMetricsPathAnnotation: ""}), want: "https://node-1:10250/metrics/resource",
		},
		{
			name: "annotation cannot add a query",
			node: node(addrs, 0, map[string]string{ResourceMetricsPathAnnotation: "/m?x=1#y"}), want: "https://node-1:10250/m%3Fx=1%23y",
		},
		{
			name:    "annotation must be absolute",
			node:    node(addrs, 0, map[string]string{ResourceMetricsPathAnnotation: "@evil.example/x"}),
			wantErr: "not an absolute path",
		},
		{name: "no address", node: node(nil, 0, nil), wantErr: "has no address"},
		{name: "empty address skipped", node: node([]corev1.NodeAddress{{Type: corev1.NodeHostName}}, 0, nil), wantErr: "has no address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kc, err := NewKubeletClient(tc.cfg, testlog.New(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(kc.Close)
			u, err := kc.URL(tc.node)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errNoAddress) {
					t.Fatalf("URL() error = %v, want errNoAddress mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := u.String(); got != tc.want {
				t.Errorf("URL() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFetch(t *testing.T) {
	t.Parallel()
	const path = "/metrics/nodes/kwok-node-0/metrics/resource"
	k := newFakeKubelet(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		if got := r.Header.Get("Authorization"); got != "Bearer s3cret" {
			http.Error(w, "no token: "+got, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
		_, _ = w.Write([]byte(kwokBody))
	}))
	kc := newTestClient(t, KubeletConfig{CAFile: k.caFile, BearerToken: "s3cret"})

	before := time.Now()
	got, err := kc.Fetch(t.Context(), kwokNode("kwok-node-0", k.port, path))
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != "kwok-node-0" {
		t.Errorf("Node = %q", got.Node)
	}
	if got.ScrapeTime.Before(before) || got.ScrapeTime.After(after) {
		t.Errorf("ScrapeTime %v not within [%v, %v]", got.ScrapeTime, before, after)
	}
	want, err := Decode([]byte(kwokBody), "", got.ScrapeTime)
	if err != nil {
		t.Fatal(err)
	}
	want.Node = "kwok-node-0"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Fetch() (-want +got):\n%s", diff)
	}

	// The plain kubelet path is a 404 on kwok, as the annotation is not honoured.
	_, err = kc.Fetch(t.Context(), kwokNode("kwok-node-0", k.port, ""))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Fatalf("Fetch() without annotation error = %v, want a 404 StatusError", err)
	}
	if classify(err) != ReasonHTTPStatus || retryable(err) {
		t.Errorf("404: classify = %s, retryable = %v; want http_status, not retryable", classify(err), retryable(err))
	}
}

func TestFetchTokenFile(t *testing.T) {
	t.Parallel()
	k := newFakeKubelet(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer from-file" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(kwokBody))
	}))
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := newTestClient(t, KubeletConfig{CAFile: k.caFile, TokenFile: tokenFile})
	if _, err := kc.Fetch(t.Context(), kwokNode("n", k.port, "")); err != nil {
		t.Fatal(err)
	}
}

func TestFetchClientCertificate(t *testing.T) {
	t.Parallel()
	ca, caKey := genCert(t, "client-ca", true, nil, nil)
	leaf, leafKey := genCert(t, "system:hindsight", false, ca, caKey)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePEM(t, certFile, "CERTIFICATE", leaf.Raw)
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cn := r.TLS.PeerCertificates[0].Subject.CommonName; cn != "system:hindsight" {
			http.Error(w, "unexpected client "+cn, http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(kwokBody))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	k := wrapFakeKubelet(t, srv)

	kc := newTestClient(t, KubeletConfig{CAFile: k.caFile, ClientCertFile: certFile, ClientKeyFile: keyFile})
	if _, err := kc.Fetch(t.Context(), kwokNode("n", k.port, "")); err != nil {
		t.Fatal(err)
	}
	// Without the certificate the handshake is refused.
	bare := newTestClient(t, KubeletConfig{CAFile: k.caFile})
	if _, err := bare.Fetch(t.Context(), kwokNode("n", k.port, "")); err == nil {
		t.Fatal("Fetch() without a client certificate succeeded")
	}
}

func TestFetchTLSVerification(t *testing.T) {
	t.Parallel()
	k := newFakeKubelet(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(kwokBody)) }))
	other, _ := genCert(t, "some other CA", true, nil, nil)
	wrongCA := filepath.Join(t.TempDir(), "wrong-ca.crt")
	writePEM(t, wrongCA, "CERTIFICATE", other.Raw)

	tests := []struct {
		name    string
		cfg     KubeletConfig
		wantErr bool
	}{
		{name: "wrong CA", cfg: KubeletConfig{CAFile: wrongCA}, wantErr: true},
		{name: "system roots by default", cfg: KubeletConfig{}, wantErr: true},
		{name: "right CA", cfg: KubeletConfig{CAFile: k.caFile}},
		{name: "insecure", cfg: KubeletConfig{InsecureTLS: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kc := newTestClient(t, tc.cfg)
			_, err := kc.Fetch(t.Context(), kwokNode("n", k.port, ""))
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("Fetch() succeeded against an unverified certificate")
			}
			if classify(err) != ReasonTLS || retryable(err) {
				t.Errorf("classify(%v) = %s, retryable = %v; want tls, not retryable", err, classify(err), retryable(err))
			}
		})
	}
}

func TestNewKubeletClientErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	empty := filepath.Join(dir, "empty")
	for _, f := range []string{notPEM, empty} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     KubeletConfig
		wantErr string
	}{
		{name: "invalid", cfg: KubeletConfig{Port: -1}, wantErr: "out of range"},
		{name: "missing CA", cfg: KubeletConfig{CAFile: filepath.Join(dir, "nope")}, wantErr: "kubelet TLS: open " + filepath.Join(dir, "nope")},
		{name: "CA without certificates", cfg: KubeletConfig{CAFile: notPEM}, wantErr: "kubelet TLS: unable to load root certificates"},
		{name: "bad key pair", cfg: KubeletConfig{ClientCertFile: notPEM, ClientKeyFile: notPEM}, wantErr: "client key pair"},
		{name: "missing key", cfg: KubeletConfig{ClientCertFile: notPEM, ClientKeyFile: filepath.Join(dir, "nope")}, wantErr: "nope: no such file"},
		{name: "missing token file", cfg: KubeletConfig{TokenFile: filepath.Join(dir, "nope")}, wantErr: "kubelet token file: failed to read token file"},
		{name: "empty token file", cfg: KubeletConfig{TokenFile: empty}, wantErr: "read empty token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kc, err := NewKubeletClient(tc.cfg, testlog.New(t))
			if err == nil {
				kc.Close()
				t.Fatal("NewKubeletClient() succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NewKubeletClient() = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestFetchBodyLimit(t *testing.T) {
	t.Parallel()
	const limit = 1024
	// A valid body of exactly limit bytes: the resource series, padded with a comment.
	pad := limit - len(kwokBody) - len("#\n")
	exact := kwokBody + "#" + strings.Repeat("x", pad) + "\n"
	if len(exact) != limit {
		t.Fatalf("test body is %d bytes", len(exact))
	}
	var sawGzip atomic.Bool
	k := newFakeKubelet(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := exact
		if strings.HasPrefix(r.URL.Path, "/big") {
			body += "#\n"
		}
		if strings.HasSuffix(r.URL.Path, "-gzip") {
			// The transport asks for gzip on its own and decodes it; the limit must apply to
			// the decoded bytes.
			if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				http.Error(w, "gzip not accepted", http.StatusBadRequest)
				return
			}
			sawGzip.Store(true)
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write([]byte(body))
			_ = zw.Close()
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	kc := newTestClient(t, KubeletConfig{CAFile: k.caFile, MaxBodyBytes: limit})

	for _, path := range []string{"/exact", "/exact-gzip"} {
		if _, err := kc.Fetch(t.Context(), kwokNode("n", k.port, path)); err != nil {
			t.Errorf("%s: body of exactly MaxBodyBytes: %v", path, err)
		}
	}
	for _, path := range []string{"/big", "/big-gzip"} {
		_, err := kc.Fetch(t.Context(), kwokNode("n", k.port, path))
		if !errors.Is(err, ErrBodyTooLarge) || !strings.Contains(err.Error(), "response larger than 1024 bytes") {
			t.Fatalf("%s: Fetch() error = %v, want ErrBodyTooLarge", path, err)
		}
		if classify(err) != ReasonTooLarge || retryable(err) {
			t.Errorf("%s: classify = %s, retryable = %v", path, classify(err), retryable(err))
		}
	}
	if !sawGzip.Load() {
		t.Error("no gzip response was served")
	}
}

func TestFetchErrors(t *testing.T) {
	t.Parallel()
	k := newFakeKubelet(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/unavailable":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case "/redirect":
			http.Redirect(w, r, "https://example.com/", http.StatusFound)
		case "/garbage":
			_, _ = w.Write([]byte("this is not { prometheus\n"))
		case "/hang":
			<-r.Context().Done()
		}
	}))
	kc := newTestClient(t, KubeletConfig{CAFile: k.caFile, Timeout: 200 * time.Millisecond})

	tests := []struct {
		path       string
		wantReason string
		wantRetry  bool
	}{
		{path: "/unavailable", wantReason: ReasonHTTPStatus, wantRetry: true},
		{path: "/redirect", wantReason: ReasonHTTPStatus},
		{path: "/garbage", wantReason: ReasonDecode, wantRetry: true},
		{path: "/hang", wantReason: ReasonTimeout, wantRetry: true},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			_, err := kc.Fetch(t.Context(), kwokNode("n", k.port, tc.path))
			if err == nil {
				t.Fatal("Fetch() succeeded")
			}
			if got := classify(err); got != tc.wantReason {
				t.Errorf("classify(%v) = %s, want %s", err, got, tc.wantReason)
			}
			if got := retryable(err); got != tc.wantRetry {
				t.Errorf("retryable(%v) = %v, want %v", err, got, tc.wantRetry)
			}
		})
	}

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		_, err = kc.Fetch(context.Background(), kwokNode("n", port, ""))
		if err == nil || classify(err) != ReasonNetwork || !retryable(err) {
			t.Errorf("Fetch() error = %v (reason %s), want a retryable network error", err, classify(err))
		}
	})
}

// closingKubelet is a fake kubelet that closes every connection after its answer, so that
// each Fetch makes a TLS handshake (client-go loads the client key pair at handshakes), and
// that records the client certificate's common name and the Authorization header.
type closingKubelet struct {
	*fakeKubelet
	mu         sync.Mutex // guards the fields below
	cn, bearer string
}

func newClosingKubelet(t testing.TB, clientCA *x509.Certificate) *closingKubelet {
	t.Helper()
	k := &closingKubelet{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		k.cn, k.bearer = "", r.Header.Get("Authorization")
		if len(r.TLS.PeerCertificates) > 0 {
			k.cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		k.mu.Unlock()
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte(kwokBody))
	}))
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA)
		srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	k.fakeKubelet = wrapFakeKubelet(t, srv)
	return k
}

// last returns what the last request presented.
func (k *closingKubelet) last() (cn, bearer string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cn, k.bearer
}

// writeKeyPair writes cert and key as PEM files.
func writeKeyPair(t testing.TB, certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certFile, "CERTIFICATE", cert.Raw)
	writePEM(t, keyFile, "EC PRIVATE KEY", der)
}

// TestFetchReloadsCredentials checks that a client key pair and a token file rotated on
// disk are used by a later Fetch of the same client, after client-go's reload periods (a
// second for the key pair, a minute for the token), and that a broken key pair fails the
// handshake with an error, until it is fixed. The clock is synctest's; the fake kubelets
// run outside the bubble, on the real one.
func TestFetchReloadsCredentials(t *testing.T) {
	ca, caKey := genCert(t, "client-ca", true, nil, nil)
	first, firstKey := genCert(t, "hindsight-1", false, ca, caKey)
	second, secondKey := genCert(t, "hindsight-2", false, ca, caKey)
	certKubelet, tokenKubelet := newClosingKubelet(t, ca), newClosingKubelet(t, nil)
	dir := t.TempDir()
	certFile, keyFile, tokenFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "token")

	type step struct {
		rotate func(t *testing.T) // before the fetch
		wait   time.Duration      // after rotate
		want   string             // the common name or token seen; empty: Fetch fails
	}
	writeToken := func(tok string) func(*testing.T) {
		return func(t *testing.T) {
			if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name  string
		k     *closingKubelet
		cfg   KubeletConfig
		setup func(*testing.T)
		seen  func(k *closingKubelet) string
		steps []step
	}{
		{
			name: "client key pair", k: certKubelet,
			cfg:   KubeletConfig{ClientCertFile: certFile, ClientKeyFile: keyFile},
			setup: func(t *testing.T) { writeKeyPair(t, certFile, keyFile, first, firstKey) },
			seen:  func(k *closingKubelet) string { cn, _ := k.last(); return cn },
			steps: []step{
				{want: "hindsight-1"},
				{rotate: func(t *testing.T) { writeKeyPair(t, certFile, keyFile, second, secondKey) }, want: "hindsight-1"}, // read a second ago
				{wait: 2 * time.Second, want: "hindsight-2"},
				{rotate: func(t *testing.T) { writePEM(t, certFile, "CERTIFICATE", []byte("garbage")) }, wait: 2 * time.Second},
				{rotate: func(t *testing.T) { writeKeyPair(t, certFile, keyFile, first, firstKey) }, wait: 2 * time.Second, want: "hindsight-1"},
			},
		},
		{
			name: "token file", k: tokenKubelet,
			cfg:   KubeletConfig{TokenFile: tokenFile},
			setup: writeToken("token-1"),
			seen:  func(k *closingKubelet) string { _, b := k.last(); return b },
			steps: []step{
				{want: "Bearer token-1"},
				{rotate: writeToken("token-2"), wait: 30 * time.Second, want: "Bearer token-1"},
				{wait: time.Minute, want: "Bearer token-2"},
				// A failed re-read keeps the last token (client-go's cached file token source).
				{rotate: func(t *testing.T) { _ = os.Remove(tokenFile) }, wait: time.Minute, want: "Bearer token-2"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.CAFile = tc.k.caFile
			tc.setup(t)
			synctest.Test(t, func(t *testing.T) {
				kc := newTestClient(t, tc.cfg)
				for i, s := range tc.steps {
					if s.rotate != nil {
						s.rotate(t)
					}
					time.Sleep(s.wait)
					_, err := kc.Fetch(t.Context(), kwokNode("n", tc.k.port, ""))
					switch {
					case s.want == "" && err == nil:
						t.Fatalf("step %d: Fetch() with a broken key pair succeeded", i)
					case s.want == "":
						t.Logf("step %d: Fetch() with a broken key pair: %v", i, err)
					case err != nil:
						t.Fatalf("step %d: Fetch(): %v", i, err)
					case tc.seen(tc.k) != s.want:
						t.Errorf("step %d: kubelet saw %q, want %q", i, tc.seen(tc.k), s.want)
					}
				}
			})
		})
	}
}

// countWarnings counts the records at Warn and above that pass through it.
type countWarnings struct {
	slog.Handler
	n *atomic.Int32
}

func (h countWarnings) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

// gatedBodies is an http.RoundTripper whose every response body counts its reader and
// blocks until release is closed (or the request's context ends), then serves kwokBody.
type gatedBodies struct {
	release chan struct{}

	mu               sync.Mutex // guards the fields below
	reading, maxRead int
}

func (g *gatedBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK",
		Header:  http.Header{"Content-Type": []string{kubeletContentType}},
		Body:    &gatedBody{g: g, ctx: req.Context(), rest: []byte(kwokBody)},
		Request: req,
	}, nil
}

type gatedBody struct {
	g       *gatedBodies
	ctx     context.Context
	started bool
	rest    []byte
}

func (b *gatedBody) Read(p []byte) (int, error) {
	if !b.started {
		b.started = true
		b.g.mu.Lock()
		b.g.reading++
		b.g.maxRead = max(b.g.maxRead, b.g.reading)
		b.g.mu.Unlock()
		defer func() {
			b.g.mu.Lock()
			b.g.reading--
			b.g.mu.Unlock()
		}()
		select {
		case <-b.g.release:
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
	if len(b.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.rest)
	b.rest = b.rest[n:]
	return n, nil
}

func (b *gatedBody) Close() error { return nil }

// TestFetchBoundsBytesInFlight checks that no more bodies are read at once than
// MaxBytesInFlight / MaxBodyBytes, and that a fetch waiting for that budget fails as a
// timeout when its request time runs out.
func TestFetchBoundsBytesInFlight(t *testing.T) {
	t.Run("at most two bodies of 1 KiB in 2 KiB", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			kc := newTestClient(t, KubeletConfig{InsecureTLS: true, MaxBodyBytes: 1 << 10, MaxBytesInFlight: 2 << 10})
			g := &gatedBodies{release: make(chan struct{})}
			kc.client = &http.Client{Transport: g}

			const fetches = 5
			errs := make(chan error, fetches)
			for i := range fetches {
				go func() {
					_, err := kc.Fetch(t.Context(), kwokNode(fmt.Sprintf("n%d", i), 10250, ""))
					errs <- err
				}()
			}
			synctest.Wait() // every fetch is reading its body or waiting for the budget
			g.mu.Lock()
			reading := g.reading
			g.mu.Unlock()
			if reading != 2 {
				t.Errorf("%d bodies read at once, want 2", reading)
			}
			close(g.release)
			for range fetches {
				if err := <-errs; err != nil {
					t.Errorf("Fetch() = %v", err)
				}
			}
			if g.maxRead != 2 {
				t.Errorf("at most %d bodies read at once, want 2", g.maxRead)
			}
		})
	})
	t.Run("waiting past the timeout fails as a timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			kc := newTestClient(t, KubeletConfig{InsecureTLS: true, MaxBodyBytes: 1 << 10, MaxBytesInFlight: 1 << 10, Timeout: time.Second})
			g := &gatedBodies{release: make(chan struct{})}
			kc.client = &http.Client{Transport: g}

			// The slow node's body holds the budget past the next fetch's own timeout: same
			// client and budget, a longer request timeout, so the two never expire together.
			slow := *kc
			slow.cfg.Timeout = 3 * time.Second
			holder := make(chan error, 1)
			go func() {
				_, err := slow.Fetch(t.Context(), kwokNode("slow", 10250, ""))
				holder <- err
			}()
			synctest.Wait() // the slow node's body holds the whole budget
			_, err := kc.Fetch(t.Context(), kwokNode("next", 10250, ""))
			if err == nil || !strings.Contains(err.Error(), "body budget") || classify(err) != ReasonTimeout {
				t.Errorf("Fetch() while the budget is held = %v (reason %s), want a timeout waiting for the body budget", err, classify(err))
			}
			if err := <-holder; classify(err) != ReasonTimeout {
				t.Errorf("slow body: %v, want its own timeout", err)
			}
		})
	})
}
