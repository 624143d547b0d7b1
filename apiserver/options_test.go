package apiserver

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	kubescheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	cliflag "k8s.io/component-base/cli/flag"
)

// metrics-server v0.9.0's flags from the generic apiserver (docs/command-line-flags.txt, less
// its own kubelet, resolution, kubeconfig, version and logging flags).
var metricsServerGenericFlags = []string{
	// generic
	"advertise-address", "cors-allowed-origins", "emulated-version", "emulation-forward-compatible",
	"external-hostname", "goaway-chance", "livez-grace-period",
	"max-mutating-requests-inflight", "max-requests-inflight", "min-compatibility-version",
	"min-request-timeout", "request-timeout", "runtime-config-emulation-forward-compatible",
	"shutdown-delay-duration", "shutdown-send-retry-after", "shutdown-watch-termination-grace-period",
	"storage-initialization-timeout", "strict-transport-security-directives",
	// apiserver secure serving
	"bind-address", "cert-dir", "disable-http2-serving", "http2-max-streams-per-connection",
	"permit-address-sharing", "permit-port-sharing", "secure-port", "tls-cert-file",
	"tls-cipher-suites", "tls-curve-preferences", "tls-min-version", "tls-private-key-file", "tls-sni-cert-key",
	// apiserver authentication
	"authentication-kubeconfig", "authentication-skip-lookup", "authentication-token-webhook-cache-ttl",
	"authentication-tolerate-lookup-failure", "client-ca-file", "requestheader-allowed-names",
	"requestheader-client-ca-file", "requestheader-extra-headers-prefix", "requestheader-group-headers",
	"requestheader-uid-headers", "requestheader-username-headers",
	// apiserver authorization
	"authorization-always-allow-paths", "authorization-kubeconfig",
	"authorization-webhook-cache-authorized-ttl", "authorization-webhook-cache-unauthorized-ttl",
	// apiserver audit log
	"audit-log-batch-buffer-size", "audit-log-batch-max-size", "audit-log-batch-max-wait",
	"audit-log-batch-throttle-burst", "audit-log-batch-throttle-enable", "audit-log-batch-throttle-qps",
	"audit-log-compress", "audit-log-format", "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize",
	"audit-log-mode", "audit-log-path", "audit-log-truncate-enabled", "audit-log-truncate-max-batch-size",
	"audit-log-truncate-max-event-size", "audit-log-version", "audit-policy-file",
	"audit-webhook-batch-buffer-size", "audit-webhook-batch-max-size", "audit-webhook-batch-max-wait",
	"audit-webhook-batch-throttle-burst", "audit-webhook-batch-throttle-enable",
	"audit-webhook-batch-throttle-qps", "audit-webhook-config-file", "audit-webhook-initial-backoff",
	"audit-webhook-mode", "audit-webhook-truncate-enabled", "audit-webhook-truncate-max-batch-size",
	"audit-webhook-truncate-max-event-size", "audit-webhook-version",
	// features
	"contention-profiling", "debug-socket-path", "enable-priority-and-fairness", "profiling",
}

func TestOptionsFlags(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	NewOptions().AddFlags(fs)
	var missing []string
	for _, name := range metricsServerGenericFlags {
		if fs.Lookup(name) == nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Errorf("flags metrics-server has that AddFlags lacks: %v", missing)
	}
	for name, want := range map[string]string{
		"secure-port":                      "10250",
		"bind-address":                     "0.0.0.0",
		"cert-dir":                         "apiserver.local.config/certificates",
		"authorization-always-allow-paths": "[/healthz,/readyz,/livez]",
		"requestheader-username-headers":   "[x-remote-user]",
		"profiling":                        "true",
	} {
		if f := fs.Lookup(name); f == nil || f.DefValue != want {
			t.Errorf("--%s default = %v; want %q", name, f, want)
		}
	}

	var nfs cliflag.NamedFlagSets
	NewOptions().AddNamedFlags(&nfs)
	want := []string{"generic", "apiserver secure serving", "apiserver authentication", "apiserver authorization", "apiserver audit log", "features"}
	if diff := cmp.Diff(want, nfs.Order); diff != "" {
		t.Errorf("flag sections (-want +got):\n%s", diff)
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	o := NewOptions()
	if err := o.Validate(); err != nil {
		t.Errorf("Validate() of the defaults = %v", err)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--secure-port=-1", "--max-requests-inflight=-1"}); err != nil {
		t.Fatal(err)
	}
	err := o.Validate()
	if err == nil || !strings.Contains(err.Error(), "secure-port") || !strings.Contains(err.Error(), "max-requests-inflight") {
		t.Errorf("Validate() = %v; want both bad flags reported", err)
	}
}

// fakeKubeAPIServer answers TokenReviews and SubjectAccessReviews as a kube-apiserver would for
// the delegating authenticator and authorizer: token "admin" is user admin, who may do
// anything; every other user is denied; other tokens are not authenticated.
type fakeKubeAPIServer struct {
	*httptest.Server
	mu   sync.Mutex
	sars []string // "user verb group/resource namespace" or "user verb path", in arrival order
}

func newFakeKubeAPIServer(t *testing.T) *fakeKubeAPIServer {
	t.Helper()
	f := &fakeKubeAPIServer{}
	decode := func(r *http.Request, into any) error {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		obj, _, err := kubescheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
		if err != nil {
			return err
		}
		return kubescheme.Scheme.Convert(obj, into, nil)
	}
	reply := func(w http.ResponseWriter, obj any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(obj)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", func(w http.ResponseWriter, r *http.Request) {
		var tr authenticationv1.TokenReview
		if err := decode(r, &tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tr.APIVersion, tr.Kind = "authentication.k8s.io/v1", "TokenReview"
		if tr.Spec.Token == "admin" || tr.Spec.Token == "alice" {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: tr.Spec.Token, Groups: []string{"system:authenticated"}}}
		}
		reply(w, &tr)
	})
	mux.HandleFunc("POST /apis/authorization.k8s.io/v1/subjectaccessreviews", func(w http.ResponseWriter, r *http.Request) {
		var sar authorizationv1.SubjectAccessReview
		if err := decode(r, &sar); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sar.APIVersion, sar.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
		var s string
		if ra := sar.Spec.ResourceAttributes; ra != nil {
			s = fmt.Sprintf("%s %s %s/%s %s", sar.Spec.User, ra.Verb, ra.Group, ra.Resource, ra.Namespace)
		} else if nra := sar.Spec.NonResourceAttributes; nra != nil {
			s = fmt.Sprintf("%s %s %s", sar.Spec.User, nra.Verb, nra.Path)
		}
		f.mu.Lock()
		f.sars = append(f.sars, s)
		f.mu.Unlock()
		sar.Status.Allowed = sar.Spec.User == "admin"
		reply(w, &sar)
	})
	f.Server = httptest.NewTLSServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeKubeAPIServer) takeSARs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.sars
	f.sars = nil
	return out
}

func (f *fakeKubeAPIServer) writeKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"fake": {Server: f.URL, CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"hindsight": {Token: "hindsight-sa-token"}},
		Contexts:       map[string]*clientcmdapi.Context{"fake": {Cluster: "fake", AuthInfo: "hindsight"}},
		CurrentContext: "fake",
	}
	if err := clientcmd.WriteToFile(cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOptionsDelegatedAuth wires the server the way cmd does, through NewOptions, flags and
// ApplyTo, against a fake kube-apiserver, and checks the production authn/authz path: the
// anonymous user and an unknown token get 401 (metrics-server answers 403 to anonymous
// requests; Hindsight authorises none), admin the data, and the health endpoints need nothing.
func TestOptionsDelegatedAuth(t *testing.T) {
	kas := newFakeKubeAPIServer(t)
	kubeconfig := kas.writeKubeconfig(t)
	certDir := t.TempDir()

	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{
		"--bind-address=127.0.0.1",
		"--cert-dir=" + certDir,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		// No extension-apiserver-authentication ConfigMap here: no client certificates or
		// front-proxy headers, only tokens.
		"--authentication-skip-lookup",
	}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	o.SelfAuthorizedPaths = []string{"/self/*"}
	// A random port: tests cannot pick a free --secure-port without racing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.SecureServing.Listener = ln

	f := newFixture(t)
	reg := prometheus.NewRegistry()
	cfg := Config{Source: f.source, Nodes: f.nodes, Pods: f.pods, Registerer: reg}
	if err := o.ApplyTo(&cfg); err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	srv, err := cfg.Complete().New()
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	// A handler that authorizes requests itself, as the history API does.
	srv.HandlePrefix("/self/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := genericapirequest.UserFrom(r.Context())
		fmt.Fprintf(w, "self %s", u.GetName())
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	ts := &testServer{url: "https://" + ln.Addr().String()}
	ts.ready.Store(true)
	// The self-signed certificate ApplyTo generated, for localhost and 127.0.0.1.
	if ts.caData, err = os.ReadFile(filepath.Join(certDir, "apiserver.crt")); err != nil {
		t.Fatal(err)
	}
	eventually(t, healthTimeout, func() error {
		if code, body := ts.get(t, "/readyz", ""); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	kas.takeSARs()

	for _, path := range []string{"/healthz", "/livez", "/readyz"} {
		if code, body := ts.get(t, path, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token = %d %q; want 200", path, code, body)
		}
	}
	if sars := kas.takeSARs(); len(sars) > 0 {
		t.Errorf("health endpoints caused SubjectAccessReviews %v; want none (always-allow paths)", sars)
	}

	for _, tc := range []struct {
		token string
		check func(error) bool
		want  string
	}{
		{"", apierrors.IsUnauthorized, "Unauthorized (anonymous)"},
		{"wrong", apierrors.IsUnauthorized, "Unauthorized"},
	} {
		for _, c := range metricsClients(ts.clientset(t, tc.token, true)) {
			if _, err := c.listNodes(t.Context(), metav1.ListOptions{}); !tc.check(err) {
				t.Errorf("%s list nodes with token %q: %v; want %s", c.version, tc.token, err, tc.want)
			}
		}
	}
	kas.takeSARs()

	cs := ts.clientset(t, "admin", true)
	nodes, err := cs.MetricsV1().NodeMetricses().List(t.Context(), metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 2 {
		t.Errorf("v1 list nodes as admin = %v, %v; want 2 nodes", nodes, err)
	}
	pods, err := cs.MetricsV1beta1().PodMetricses("ns1").List(t.Context(), metav1.ListOptions{})
	if err != nil || len(pods.Items) != 3 {
		t.Errorf("v1beta1 list pods as admin = %v, %v; want 3 pods", pods, err)
	}
	if _, err := cs.MetricsV1beta1().PodMetricses("ns2").Get(t.Context(), "pod-c", metav1.GetOptions{}); err != nil {
		t.Errorf("v1beta1 get pod as admin: %v", err)
	}
	if code, _ := ts.get(t, "/metrics", "admin"); code != http.StatusOK {
		t.Errorf("GET /metrics as admin = %d; want 200", code)
	}
	// Self-authorized paths: authenticated, then left to the handler (no SAR for the path);
	// anonymous and unknown tokens still get 401.
	for _, tc := range []struct {
		token string
		code  int
		body  string
	}{
		{"", http.StatusUnauthorized, ""},
		{"wrong", http.StatusUnauthorized, ""},
		{"alice", http.StatusOK, "self alice"},
		{"admin", http.StatusOK, "self admin"},
	} {
		code, body := ts.get(t, "/self/a/b", tc.token)
		if code != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("GET /self/a/b with token %q = %d %q; want %d %q", tc.token, code, body, tc.code, tc.body)
		}
	}
	got := kas.takeSARs()
	slices.Sort(got)
	want := []string{
		"admin get /metrics",
		"admin get metrics.k8s.io/pods ns2",
		"admin list metrics.k8s.io/nodes ",
		"admin list metrics.k8s.io/pods ns1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SubjectAccessReviews (-want +got):\n%s", diff)
	}
}

// TestOwnLimit: the paths with limits of their own count as long-running (so that the
// max-in-flight and timeout filters pass them by); others are left to the next check.
func TestOwnLimit(t *testing.T) {
	check := ownLimit([]string{"/history/v1/*", "/prometheus/*", "/exact"}, func(r *http.Request, _ *apirequest.RequestInfo) bool {
		return r.URL.Path == "/watched"
	})
	for path, want := range map[string]bool{
		"/history/v1/":                      true,
		"/history/v1/cluster":               true,
		"/prometheus/api/v1/query":          true,
		"/exact":                            true,
		"/exact/more":                       false,
		"/watched":                          true,
		"/apis/metrics.k8s.io/v1beta1/pods": false,
		"/history":                          false,
		"/healthz":                          false,
	} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if got := check(r, &apirequest.RequestInfo{}); got != want {
			t.Errorf("%s: long-running %t, want %t", path, got, want)
		}
	}
}
