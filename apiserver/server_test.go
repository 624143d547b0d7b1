package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/server/healthz"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/metrics/pkg/apis/metrics"
	"k8s.io/metrics/pkg/client/clientset/versioned"
)

// testServer is the package served in-process over real HTTPS on 127.0.0.1, with a fake
// authenticator and authorizer standing in for the kube-apiserver's TokenReview and
// SubjectAccessReview:
//
//	Bearer admin  → user "admin", allowed everything
//	Bearer nobody → user "nobody", denied everything but the health endpoints (403)
//	other token   → 401
//	no token      → 401, except /healthz, /livez and /readyz (anonymous, allowed), as with
//	                kube-apiserver's anonymous auth restricted to the health endpoints
type testServer struct {
	url    string
	caData []byte
	ready  atomic.Bool // drives the metric-storage-ready check

	mu           sync.Mutex
	contentTypes []string // response Content-Types seen by clients built with record
}

const healthTimeout = 30 * time.Second

// extraGroupVersion is the aggregated group the test server serves its extra handler as.
var extraGroupVersion = schema.GroupVersion{Group: "extra.example.com", Version: "v1"}

func startServer(t testing.TB, f *fixture) *testServer {
	t.Helper()
	ts := &testServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serving := genericoptions.NewSecureServingOptions().WithLoopback()
	serving.Listener = ln
	serving.ServerCert.CertDirectory = t.TempDir()
	if err := serving.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	cfg := Config{
		Generic:      NewGenericConfig(),
		Source:       f.source,
		Nodes:        f.nodes,
		Pods:         f.pods,
		HealthChecks: []healthz.HealthChecker{MetadataInformerSyncCheck(func() bool { return true })},
		LivezChecks:  []healthz.HealthChecker{CollectionTimelyCheck(func() error { return nil })},
		ReadyzChecks: []healthz.HealthChecker{
			StorageReadyCheck(func() error {
				if !ts.ready.Load() {
					return errors.New("no metrics to serve")
				}
				return nil
			}),
			InformerSyncCheck(func() bool { return true }, func() bool { return true }),
		},
		Registerer: legacyregistry.Registerer(),
	}
	if err := serving.ApplyTo(&cfg.Generic.SecureServing, &cfg.Generic.LoopbackClientConfig); err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	cfg.Generic.Authentication.Authenticator = fakeAuthenticator{}
	cfg.Generic.Authorization.Authorizer = authorizer.AuthorizerFunc(fakeAuthorize)
	srv, err := cfg.Complete().New()
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	// What cmd does with the history API: same port, same authn/authz, and the same
	// handler as an aggregated API group.
	extra := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := genericapirequest.UserFrom(r.Context())
		if !ok {
			http.Error(w, "no user", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %s %s", u.GetName(), r.URL.Path, r.URL.RawQuery)
	})
	srv.HandlePrefix("/extra/", extra)
	srv.HandleGroup(extraGroupVersion, "/extra/", extra)
	if ts.caData, err = os.ReadFile(serving.ServerCert.CertKey.CertFile); err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	ts.url = "https://" + ln.Addr().String()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, healthTimeout, func() error {
		code, _ := ts.get(t, "/healthz", "")
		if code != http.StatusOK {
			return fmt.Errorf("/healthz: %d", code)
		}
		return nil
	})
	return ts
}

// eventually polls f until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("still failing after %s: %v", timeout, err)
		case <-tick.C:
		}
	}
}

// get requests path with an optional bearer token and returns the status and body; a
// transport error counts as status 0.
func (ts *testServer) get(t testing.TB, path, token string) (int, string) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ts.caData) {
		t.Fatal("no CA certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, ts.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// restConfig returns a client config for token (none when empty), asking for protobuf when
// protobuf is set, and recording response Content-Types.
func (ts *testServer) restConfig(token string, protobuf bool) *rest.Config {
	c := &rest.Config{
		Host:            ts.url,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ts.caData},
		Timeout:         10 * time.Second,
		QPS:             -1, // no client-side rate limit: these are not load tests
	}
	// Set both ways: the generated clientset of this client-go version defaults to protobuf.
	c.ContentType = "application/json"
	if protobuf {
		c.ContentType = "application/vnd.kubernetes.protobuf"
	}
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err == nil {
				ts.mu.Lock()
				ts.contentTypes = append(ts.contentTypes, resp.Header.Get("Content-Type"))
				ts.mu.Unlock()
			}
			return resp, err
		})
	})
	return c
}

func (ts *testServer) takeContentTypes() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := ts.contentTypes
	ts.contentTypes = nil
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func (ts *testServer) clientset(t testing.TB, token string, protobuf bool) *versioned.Clientset {
	t.Helper()
	cs, err := versioned.NewForConfig(ts.restConfig(token, protobuf))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

type fakeAuthenticator struct{}

func (fakeAuthenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	h := req.Header.Get("Authorization")
	if h == "" {
		if isHealthPath(req.URL.Path) {
			return &authenticator.Response{User: &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}}, true, nil
		}
		return nil, false, nil
	}
	switch token, _ := strings.CutPrefix(h, "Bearer "); token {
	case "admin", "nobody", "reader":
		return &authenticator.Response{User: &user.DefaultInfo{Name: token, Groups: []string{user.AllAuthenticated}}}, true, nil
	}
	return nil, false, errors.New("invalid bearer token")
}

// fakeAuthorize allows admin everything and everyone the health endpoints.
func fakeAuthorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if u := a.GetUser(); u != nil && u.GetName() == "admin" {
		return authorizer.DecisionAllow, "", nil
	}
	if !a.IsResourceRequest() && isHealthPath(a.GetPath()) {
		return authorizer.DecisionAllow, "", nil
	}
	// reader may read the extra group's pods in ns1, and discovery.
	if u := a.GetUser(); u != nil && u.GetName() == "reader" {
		if !a.IsResourceRequest() && (a.GetPath() == "/api" || a.GetPath() == "/apis" || strings.HasPrefix(a.GetPath(), "/apis/")) {
			return authorizer.DecisionAllow, "", nil
		}
		if a.IsResourceRequest() && a.GetAPIGroup() == extraGroupVersion.Group && a.GetNamespace() == "ns1" &&
			a.GetResource() == "pods" && (a.GetVerb() == "get" || a.GetVerb() == "list") {
			return authorizer.DecisionAllow, "", nil
		}
	}
	return authorizer.DecisionNoOpinion, "denied by the test authorizer", nil
}

// metricsClient reads metrics.k8s.io through one version of the real clientset and returns
// internal objects, so both versions are checked against the same expectations.
type metricsClient struct {
	version   string
	listNodes func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
	getNode   func(ctx context.Context, name string) (runtime.Object, error)
	listPods  func(ctx context.Context, ns string, opts metav1.ListOptions) (runtime.Object, error)
	getPod    func(ctx context.Context, ns, name string) (runtime.Object, error)
}

func metricsClients(cs *versioned.Clientset) []metricsClient {
	b, v := cs.MetricsV1beta1(), cs.MetricsV1()
	return []metricsClient{
		{
			version: "v1beta1",
			listNodes: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return b.NodeMetricses().List(ctx, o)
			},
			getNode: func(ctx context.Context, n string) (runtime.Object, error) {
				return b.NodeMetricses().Get(ctx, n, metav1.GetOptions{})
			},
			listPods: func(ctx context.Context, ns string, o metav1.ListOptions) (runtime.Object, error) {
				return b.PodMetricses(ns).List(ctx, o)
			},
			getPod: func(ctx context.Context, ns, n string) (runtime.Object, error) {
				return b.PodMetricses(ns).Get(ctx, n, metav1.GetOptions{})
			},
		},
		{
			version: "v1",
			listNodes: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return v.NodeMetricses().List(ctx, o)
			},
			getNode: func(ctx context.Context, n string) (runtime.Object, error) {
				return v.NodeMetricses().Get(ctx, n, metav1.GetOptions{})
			},
			listPods: func(ctx context.Context, ns string, o metav1.ListOptions) (runtime.Object, error) {
				return v.PodMetricses(ns).List(ctx, o)
			},
			getPod: func(ctx context.Context, ns, n string) (runtime.Object, error) {
				return v.PodMetricses(ns).Get(ctx, n, metav1.GetOptions{})
			},
		},
	}
}

// summarize converts a versioned object to the internal version and summarizes it.
func summarize(t testing.TB, obj runtime.Object) []string {
	t.Helper()
	kinds, _, err := scheme.ObjectKinds(obj)
	if err != nil {
		t.Fatal(err)
	}
	switch kinds[0].Kind {
	case "NodeMetricsList":
		var out metrics.NodeMetricsList
		if err := scheme.Convert(obj, &out, nil); err != nil {
			t.Fatal(err)
		}
		return nodeSummary(out.Items...)
	case "NodeMetrics":
		var out metrics.NodeMetrics
		if err := scheme.Convert(obj, &out, nil); err != nil {
			t.Fatal(err)
		}
		return nodeSummary(out)
	case "PodMetricsList":
		var out metrics.PodMetricsList
		if err := scheme.Convert(obj, &out, nil); err != nil {
			t.Fatal(err)
		}
		return podSummary(out.Items...)
	case "PodMetrics":
		var out metrics.PodMetrics
		if err := scheme.Convert(obj, &out, nil); err != nil {
			t.Fatal(err)
		}
		return podSummary(out)
	}
	t.Fatalf("unexpected kind %v", kinds[0])
	return nil
}

func TestServer(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f)
	ctx := t.Context()

	at := func(age time.Duration) string { return f.ts.Add(-age).UTC().Format(time.RFC3339) }
	nodeA := "node-a cpu=1500m mem=2Gi window=15s ts=" + at(0) + " labels=map[role:control zone:a]"
	nodeB := "node-b cpu=12345n mem=1578392Ki window=14.5s ts=" + at(time.Second) + " labels=map[role:worker zone:b]"
	podA := "ns1/pod-a window=13s ts=" + at(2*time.Second) + " labels=map[app:db] [app cpu=100m mem=64Mi] [sidecar cpu=5m mem=16Mi]"
	podB := "ns1/pod-b window=15s ts=" + at(0) + " labels=map[app:web] [app cpu=4710169n mem=12240Ki]"
	podE := "ns1/pod-e window=15s ts=" + at(0) + " labels=map[app:web] [app cpu=1n mem=1]"
	podC := "ns2/pod-c window=15s ts=" + at(0) + " labels=map[app:web] [app cpu=250m mem=100Mi]"

	t.Run("health endpoints without credentials", func(t *testing.T) {
		code, body := ts.get(t, "/readyz?verbose", "")
		if code != http.StatusInternalServerError || !strings.Contains(body, "[-]metric-storage-ready failed") {
			t.Errorf("/readyz before storage is ready = %d %q; want 500 naming metric-storage-ready", code, body)
		}
		ts.ready.Store(true)
		eventually(t, healthTimeout, func() error {
			if code, body := ts.get(t, "/readyz", ""); code != http.StatusOK {
				return fmt.Errorf("/readyz = %d %q", code, body)
			}
			return nil
		})
		for path, want := range map[string][]string{
			"/readyz?verbose":  {"[+]metric-storage-ready ok", "[+]metric-informer-sync ok", "[+]metadata-informer-sync ok"},
			"/livez?verbose":   {"[+]metric-collection-timely ok", "[+]metadata-informer-sync ok"},
			"/healthz?verbose": {"[+]metadata-informer-sync ok"},
		} {
			code, body := ts.get(t, path, "")
			if code != http.StatusOK {
				t.Errorf("%s = %d %q; want 200", path, code, body)
			}
			for _, w := range want {
				if !strings.Contains(body, w) {
					t.Errorf("%s body %q lacks %q", path, body, w)
				}
			}
		}
		if code, body := ts.get(t, "/livez/metric-collection-timely", ""); code != http.StatusOK {
			t.Errorf("/livez/metric-collection-timely = %d %q; want 200", code, body)
		}
	})

	for _, protobuf := range []bool{false, true} {
		encoding := map[bool]string{false: "json", true: "protobuf"}[protobuf]
		wantContentType := map[bool]string{false: "application/json", true: "application/vnd.kubernetes.protobuf"}[protobuf]
		for _, c := range metricsClients(ts.clientset(t, "admin", protobuf)) {
			t.Run(c.version+"/"+encoding, func(t *testing.T) {
				tests := []struct {
					name string
					call func() (runtime.Object, error)
					want []string
				}{
					{"list nodes", func() (runtime.Object, error) { return c.listNodes(ctx, metav1.ListOptions{}) }, []string{nodeA, nodeB}},
					{"list nodes by label", func() (runtime.Object, error) {
						return c.listNodes(ctx, metav1.ListOptions{LabelSelector: "role=worker"})
					}, []string{nodeB}},
					{"list nodes by name", func() (runtime.Object, error) {
						return c.listNodes(ctx, metav1.ListOptions{FieldSelector: "metadata.name=node-a"})
					}, []string{nodeA}},
					{"get node", func() (runtime.Object, error) { return c.getNode(ctx, "node-b") }, []string{nodeB}},
					{"list pods in all namespaces", func() (runtime.Object, error) {
						return c.listPods(ctx, metav1.NamespaceAll, metav1.ListOptions{})
					}, []string{podA, podB, podE, podC}},
					{"list pods in a namespace", func() (runtime.Object, error) { return c.listPods(ctx, "ns1", metav1.ListOptions{}) }, []string{podA, podB, podE}},
					{"list pods by label", func() (runtime.Object, error) {
						return c.listPods(ctx, metav1.NamespaceAll, metav1.ListOptions{LabelSelector: "app=web"})
					}, []string{podB, podE, podC}},
					{"list pods by namespace field", func() (runtime.Object, error) {
						return c.listPods(ctx, metav1.NamespaceAll, metav1.ListOptions{FieldSelector: "metadata.namespace=ns2"})
					}, []string{podC}},
					{"list pods by name field in a namespace", func() (runtime.Object, error) {
						return c.listPods(ctx, "ns1", metav1.ListOptions{FieldSelector: "metadata.name=pod-e"})
					}, []string{podE}},
					{"list pods in an empty namespace", func() (runtime.Object, error) { return c.listPods(ctx, "ns9", metav1.ListOptions{}) }, []string{}},
					{"get pod", func() (runtime.Object, error) { return c.getPod(ctx, "ns1", "pod-a") }, []string{podA}},
				}
				for _, tc := range tests {
					obj, err := tc.call()
					if err != nil {
						t.Errorf("%s: %v", tc.name, err)
						continue
					}
					if diff := cmp.Diff(tc.want, summarize(t, obj)); diff != "" {
						t.Errorf("%s (-want +got):\n%s", tc.name, diff)
					}
				}
				notFound := []struct {
					name string
					call func() (runtime.Object, error)
					want string
				}{
					{"node without metrics", func() (runtime.Object, error) { return c.getNode(ctx, "node-c") }, `nodemetrics.metrics.k8s.io "node-c" not found`},
					{"unknown node", func() (runtime.Object, error) { return c.getNode(ctx, "node-x") }, `node "node-x" not found`},
					{"pod without metrics", func() (runtime.Object, error) { return c.getPod(ctx, "ns2", "pod-d") }, `podmetrics.metrics.k8s.io "ns2/pod-d" not found`},
					{"unknown pod", func() (runtime.Object, error) { return c.getPod(ctx, "ns2", "pod-x") }, `pods "pod-x" not found`},
				}
				for _, tc := range notFound {
					_, err := tc.call()
					if !apierrors.IsNotFound(err) || err.Error() != tc.want {
						t.Errorf("%s: err = %v; want NotFound %q", tc.name, err, tc.want)
					}
				}
				for _, ct := range ts.takeContentTypes() {
					if ct != wantContentType {
						t.Errorf("response Content-Type %q; want %q", ct, wantContentType)
					}
				}
			})
		}
	}

	t.Run("table output", func(t *testing.T) {
		rc := ts.clientset(t, "admin", false).MetricsV1beta1().RESTClient()
		tests := []struct {
			path, labelSelector string
			want                [][]any
		}{
			{"/apis/metrics.k8s.io/v1beta1/nodes", "", [][]any{{"node-a", "1500m", "2Gi", "15s"}, {"node-b", "12345n", "1578392Ki", "14.5s"}}},
			{"/apis/metrics.k8s.io/v1/nodes/node-b", "", [][]any{{"node-b", "12345n", "1578392Ki", "14.5s"}}},
			{"/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods", "", [][]any{{"pod-a", "105m", "80Mi", "13s"}, {"pod-b", "4710169n", "12240Ki", "15s"}, {"pod-e", "1n", "1", "15s"}}},
			{"/apis/metrics.k8s.io/v1/pods", "app=web", [][]any{{"pod-b", "4710169n", "12240Ki", "15s"}, {"pod-e", "1n", "1", "15s"}, {"pod-c", "250m", "100Mi", "15s"}}},
			{"/apis/metrics.k8s.io/v1/namespaces/ns9/pods", "", [][]any{}},
		}
		for _, tc := range tests {
			req := rc.Get().AbsPath(tc.path)
			if tc.labelSelector != "" {
				req = req.Param("labelSelector", tc.labelSelector)
			}
			raw, err := req.SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
			if err != nil {
				t.Errorf("GET %s as table: %v", tc.path, err)
				continue
			}
			var table metav1.Table
			if err := json.Unmarshal(raw, &table); err != nil {
				t.Fatalf("GET %s: %v: %s", tc.path, err, raw)
			}
			if table.Kind != "Table" {
				t.Errorf("GET %s: kind %q; want Table", tc.path, table.Kind)
			}
			var cols []string
			for _, c := range table.ColumnDefinitions {
				cols = append(cols, c.Name)
			}
			if diff := cmp.Diff([]string{"Name", "cpu", "memory", "Window"}, cols); diff != "" {
				t.Errorf("GET %s: columns (-want +got):\n%s", tc.path, diff)
			}
			cells := [][]any{}
			for _, r := range table.Rows {
				cells = append(cells, r.Cells)
			}
			if diff := cmp.Diff(tc.want, cells); diff != "" {
				t.Errorf("GET %s: cells (-want +got):\n%s", tc.path, diff)
			}
		}
		ts.takeContentTypes()
	})

	t.Run("discovery", func(t *testing.T) {
		dc := ts.clientset(t, "admin", false).Discovery()
		groups, err := dc.ServerGroups()
		if err != nil {
			t.Fatal(err)
		}
		var versions []string
		for _, g := range groups.Groups {
			if g.Name == metrics.GroupName {
				for _, v := range g.Versions {
					versions = append(versions, v.Version)
				}
			}
		}
		if diff := cmp.Diff([]string{"v1", "v1beta1"}, versions); diff != "" {
			t.Errorf("metrics.k8s.io versions (-want +got):\n%s", diff)
		}
		for _, gv := range []string{"metrics.k8s.io/v1beta1", "metrics.k8s.io/v1"} {
			rl, err := dc.ServerResourcesForGroupVersion(gv)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rl.APIResources {
				got = append(got, fmt.Sprintf("%s kind=%s namespaced=%t verbs=%v", r.Name, r.Kind, r.Namespaced, r.Verbs))
			}
			slices.Sort(got)
			want := []string{
				"nodes kind=NodeMetrics namespaced=false verbs=[get list]",
				"pods kind=PodMetrics namespaced=true verbs=[get list]",
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s resources (-want +got):\n%s", gv, diff)
			}
		}
		ts.takeContentTypes()
	})

	t.Run("watch is not supported, list still works", func(t *testing.T) {
		cs := ts.clientset(t, "admin", true)
		sendInitialEvents := true
		for _, opts := range []metav1.ListOptions{
			{},
			// What client-go's watch-list (kube-controller-manager ≥1.32) sends.
			{SendInitialEvents: &sendInitialEvents, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, AllowWatchBookmarks: true},
		} {
			w, err := cs.MetricsV1beta1().PodMetricses("ns1").Watch(ctx, opts)
			if err == nil {
				w.Stop()
				t.Errorf("Watch(%+v) succeeded; want an error", opts)
			} else if !apierrors.IsMethodNotSupported(err) {
				t.Errorf("Watch(%+v) = %v; want MethodNotSupported", opts, err)
			}
		}
		list, err := cs.MetricsV1beta1().PodMetricses("ns1").List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) != 3 {
			t.Errorf("List after failed watch = %v, %v; want 3 pods", list, err)
		}
		ts.takeContentTypes()
	})

	t.Run("authentication and authorization", func(t *testing.T) {
		for _, tc := range []struct {
			token string
			check func(error) bool
			want  string
		}{
			{"", apierrors.IsUnauthorized, "Unauthorized"},
			{"wrong", apierrors.IsUnauthorized, "Unauthorized"},
			{"nobody", apierrors.IsForbidden, "Forbidden"},
		} {
			for _, c := range metricsClients(ts.clientset(t, tc.token, true)) {
				if _, err := c.listNodes(ctx, metav1.ListOptions{}); !tc.check(err) {
					t.Errorf("%s list nodes with token %q: %v; want %s", c.version, tc.token, err, tc.want)
				}
				if _, err := c.getPod(ctx, "ns1", "pod-a"); !tc.check(err) {
					t.Errorf("%s get pod with token %q: %v; want %s", c.version, tc.token, err, tc.want)
				}
			}
		}
		for path, want := range map[string]int{"/metrics": http.StatusUnauthorized, "/apis": http.StatusUnauthorized, "/openapi/v2": http.StatusUnauthorized} {
			if code, _ := ts.get(t, path, ""); code != want {
				t.Errorf("GET %s without a token = %d; want %d", path, code, want)
			}
		}
		if code, _ := ts.get(t, "/metrics", "nobody"); code != http.StatusForbidden {
			t.Errorf("GET /metrics as nobody = %d; want 403", code)
		}
		for _, tc := range []struct {
			token    string
			code     int
			wantBody string
		}{
			{"admin", http.StatusOK, "admin /extra/a/b "},
			{"nobody", http.StatusForbidden, ""},
			{"", http.StatusUnauthorized, ""},
		} {
			code, body := ts.get(t, "/extra/a/b", tc.token)
			if code != tc.code || (tc.wantBody != "" && body != tc.wantBody) {
				t.Errorf("GET /extra/a/b (HandlePrefix) with token %q = %d %q; want %d %q", tc.token, code, body, tc.code, tc.wantBody)
			}
		}
		ts.takeContentTypes()
	})

	t.Run("aggregated group", func(t *testing.T) {
		dc, err := discovery.NewDiscoveryClientForConfig(ts.restConfig("reader", false))
		if err != nil {
			t.Fatal(err)
		}
		// Aggregated discovery (/apis as one document) first, as kubectl asks for it.
		_, lists, err := dc.ServerGroupsAndResources()
		if err != nil {
			t.Fatalf("discovery: %v", err)
		}
		var found bool
		for _, l := range lists {
			if l.GroupVersion == extraGroupVersion.String() {
				found = true
				if len(l.APIResources) != 0 {
					t.Errorf("%s lists resources %v; want none", l.GroupVersion, l.APIResources)
				}
			}
		}
		if !found {
			t.Errorf("aggregated discovery lacks %s", extraGroupVersion)
		}
		// Unaggregated discovery: what the aggregator's availability check reads.
		for path, want := range map[string]string{
			"/apis/" + extraGroupVersion.Group:    `"kind":"APIGroup"`,
			"/apis/" + extraGroupVersion.String(): `"kind":"APIResourceList"`,
		} {
			code, body := ts.get(t, path, "reader")
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("GET %s = %d %q; want 200 with %s", path, code, body, want)
			}
		}
		base := "/apis/" + extraGroupVersion.String()
		for _, tc := range []struct {
			token, path string
			code        int
			body        string
		}{
			{"reader", base + "/namespaces/ns1/pods/a?start=-1h&format=csv", http.StatusOK, "reader /extra/namespaces/ns1/pods/a start=-1h&format=csv"},
			{"reader", base + "/namespaces/ns1/pods", http.StatusOK, "reader /extra/namespaces/ns1/pods "},
			{"reader", base + "/namespaces/ns2/pods/a", http.StatusForbidden, ""},
			{"reader", base + "/nodes/n1", http.StatusForbidden, ""},
			// The direct path is a non-resource URL: the group's RBAC does not grant it.
			{"reader", "/extra/namespaces/ns1/pods/a", http.StatusForbidden, ""},
			{"admin", base + "/cluster", http.StatusOK, "admin /extra/cluster "},
			{"", base + "/namespaces/ns1/pods/a", http.StatusUnauthorized, ""},
		} {
			code, body := ts.get(t, tc.path, tc.token)
			if code != tc.code || (tc.body != "" && body != tc.body) {
				t.Errorf("GET %s as %q = %d %q; want %d %q", tc.path, tc.token, code, body, tc.code, tc.body)
			}
		}
	})

	t.Run("metrics endpoint", func(t *testing.T) {
		code, body := ts.get(t, "/metrics", "admin")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics = %d", code)
		}
		for _, want := range []string{
			"# TYPE hindsight_api_metric_freshness_seconds histogram",
			"hindsight_api_metric_freshness_seconds_count ",
			"apiserver_request_total{", // the generic apiserver's own metrics, from the same registry
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		if strings.Contains(body, "hindsight_api_metric_freshness_seconds_count 0\n") {
			t.Error("/metrics: no freshness observed after serving metrics")
		}
	})

	t.Run("openapi", func(t *testing.T) {
		for path, want := range map[string]string{
			"/openapi/v2":                        "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics",
			"/openapi/v3/apis/metrics.k8s.io/v1": "io.k8s.metrics.pkg.apis.metrics.v1.PodMetrics",
		} {
			code, body := ts.get(t, path, "admin")
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("GET %s = %d (%d bytes); want 200 mentioning %s", path, code, len(body), want)
			}
		}
	})
}
