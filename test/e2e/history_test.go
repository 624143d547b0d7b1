package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hindsight-metrics/hindsight/deploy/grafana"
	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// The history API's JSON, decoded by the test's own types.
type historyResponse struct {
	Query struct {
		Start, End, Step string
		Points           int
	}
	Timestamps []time.Time
	Series     []struct {
		Object struct {
			Kind, Namespace, Name, UID, Node string
			Deleted                          bool
			Members                          *int
		}
		Resources map[string]struct {
			Unit     string
			Values   []*float64
			Requests []*float64
			Summary  map[string]*float64
		}
	}
}

// phase is an interval of constant configured usage, in millicores, per object.
type phase struct {
	from, to time.Time
	cpu      map[string]float64 // object key -> cores
}

// TestHistory runs Hindsight on kwok for a few minutes of changing usage, with a pod whose
// usage changes, a Deployment rolled out to new pods, a pod deleted on the way, and asks
// the history API what each used in every interval, as a user with a namespace-scoped
// token would.
func TestHistory(t *testing.T) {
	t.Parallel() // six minutes of waiting on phases; see doc.go
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	const node = "kwok-h"
	if _, err := c.CreateNode(ctx, cluster.NodeSpec{Name: node, CPU: "8", Memory: "32Gi"}); err != nil {
		t.Fatal(err)
	}
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	mk := func(ns, name, cpu string) {
		t.Helper()
		if _, err := c.CreatePod(ctx, cluster.PodSpec{Namespace: ns, Name: name, Node: node, Requests: req,
			Labels: map[string]string{"tier": name}, Usage: cluster.Usage{CPU: cpu, Memory: "50Mi"}}); err != nil {
			t.Fatal(err)
		}
	}
	mk("hist", "solo", "100m")
	mk("hist", "gone", "80m")
	mk("other", "x", "70m")
	if _, err := c.CreateDeployment(ctx, cluster.DeploymentSpec{Namespace: "hist", Name: "web", Node: node, Replicas: 1,
		Requests: req, Usage: cluster.Usage{CPU: "50m", Memory: "40Mi"}}); err != nil {
		t.Fatal(err)
	}

	const resolution = 10 * time.Second
	// startHindsight waits for len(smokePods) pods: solo, gone, x and web's pod.
	h, _ := startHindsight(ctx, t, c, cluster.HindsightOptions{Resolution: resolution}, 4-len(smokePods))
	admin, err := adminHTTP(c)
	if err != nil {
		t.Fatal(err)
	}
	// A namespace-scoped reader: the aggregated metrics reader role, bound in "hist" only.
	viewerToken, err := c.ServiceAccountToken(ctx, "hist", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client().RbacV1().RoleBindings("hist").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer-metrics", Namespace: "hist"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:aggregated-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "viewer", Namespace: "hist"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	viewer, err := tokenHTTP(c, viewerToken)
	if err != nil {
		t.Fatal(err)
	}

	// Three phases of two minutes each; changes take effect at kwok's next evaluation.
	const phaseLen = 2 * time.Minute
	var phases []phase
	begin := func(cpu map[string]float64) {
		now := time.Now()
		if n := len(phases); n > 0 {
			phases[n-1].to = now
		}
		phases = append(phases, phase{from: now, cpu: cpu})
	}
	begin(map[string]float64{"solo": .1, "gone": .08, "web": .05})
	wait(ctx, t, phaseLen)

	if err := c.SetPodUsage(ctx, "hist", "solo", cluster.Usage{CPU: "300m"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeploymentUsage(ctx, "hist", "web", cluster.Usage{CPU: "150m", Memory: "40Mi"}); err != nil {
		t.Fatal(err) // a rollout: new pods replace the old one
	}
	if err := c.Client().CoreV1().Pods("hist").Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	begin(map[string]float64{"solo": .3, "web": .15})
	wait(ctx, t, phaseLen)

	if err := c.SetPodUsage(ctx, "hist", "solo", cluster.Usage{CPU: "200m"}); err != nil {
		t.Fatal(err)
	}
	begin(map[string]float64{"solo": .2, "web": .15})
	wait(ctx, t, phaseLen)
	phases[len(phases)-1].to = time.Now()
	// The last scrape of the last phase is stored.
	wait(ctx, t, resolution+time.Second)

	start := phases[0].from.Add(-time.Minute).UTC().Format(time.RFC3339)
	end := phases[len(phases)-1].to.UTC().Format(time.RFC3339)
	// The default step, as users get it: one resolution (10s). A raw CPU point counts in
	// every step its interval overlaps, so a scrape a little late never empties a step.
	q := url.Values{"start": {start}, "end": {end}, "resource": {"cpu"}}
	ask := func(t *testing.T, hc *http.Client, path string, q url.Values) historyResponse {
		t.Helper()
		code, body, err := get(ctx, hc, h.Port, path+"?"+q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		var r historyResponse
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
		return r
	}

	t.Run("pod", func(t *testing.T) {
		r := ask(t, viewer, "/history/v1/namespaces/hist/pods/solo", q)
		if len(r.Series) != 1 {
			t.Fatalf("%d series for pod solo, want 1", len(r.Series))
		}
		checkPhases(t, "pod hist/solo", r, 0, phases, "solo", resolution)
		if got := r.Series[0].Resources["cpu"].Requests; len(got) == 0 || got[len(got)-1] == nil || *got[len(got)-1] != 0.1 {
			t.Errorf("pod solo: requests line ends in %v, want 0.1 cores", lastOf(got))
		}
	})

	t.Run("deployment across a rollout", func(t *testing.T) {
		r := ask(t, viewer, "/history/v1/namespaces/hist/deployments/web", q)
		if len(r.Series) != 1 || r.Series[0].Object.Kind != "Deployment" {
			t.Fatalf("deployment web: %+v", r.Series)
		}
		checkPhases(t, "deployment hist/web", r, 0, phases, "web", resolution)
		byPod := url.Values{"by": {"pod"}}
		for k, v := range q {
			byPod[k] = v
		}
		pods := ask(t, viewer, "/history/v1/namespaces/hist/deployments/web", byPod)
		uids := map[string]bool{}
		for _, s := range pods.Series {
			uids[s.Object.UID] = true
		}
		if len(uids) < 2 {
			t.Errorf("deployment web by pod: %d pods, want at least 2 (the rollout replaced the first)", len(uids))
		}
	})

	t.Run("namespace", func(t *testing.T) {
		r := ask(t, viewer, "/history/v1/namespaces/hist", q)
		checkPhases(t, "namespace hist", r, 0, phases, "", resolution)
	})

	t.Run("node", func(t *testing.T) {
		r := ask(t, admin, "/history/v1/nodes/"+node, q)
		// The node runs every pod, "other/x" at 70m too.
		withX := make([]phase, len(phases))
		for i, p := range phases {
			withX[i] = phase{from: p.from, to: p.to, cpu: map[string]float64{"x": .07}}
			for k, v := range p.cpu {
				withX[i].cpu[k] = v
			}
		}
		checkPhases(t, "node "+node, r, 0, withX, "", resolution)
	})

	t.Run("deleted pod by name", func(t *testing.T) {
		r := ask(t, viewer, "/history/v1/namespaces/hist/pods/gone", q)
		if len(r.Series) != 1 || !r.Series[0].Object.Deleted {
			t.Fatalf("pod gone after deletion: %+v", r.Series)
		}
		checkPhases(t, "deleted pod hist/gone", r, 0, phases[:1], "gone", resolution)
	})

	prom := promtool{bin: c.Tools.Promtool, server: fmt.Sprintf("https://127.0.0.1:%d/prometheus", h.Port)}
	if err := prom.configure(ctx, c, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	// A cluster-wide reader's client for the Prometheus API, with promtool's token: what
	// Grafana's provisioned data source is.
	reader, err := tokenHTTP(c, prom.token)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("p95", func(t *testing.T) {
		// Over the second and third phases: about as many 10 s intervals at 300m as at
		// 200m, so the 95th percentile is 300m. The test also computes it itself from the
		// raw counter samples, read back with promtool through the Prometheus-compatible
		// API: rates between consecutive samples whose later one is in (start-step, end],
		// without intervals over 2.5 resolutions, linear interpolation between ranks.
		from := phases[1].from.Add(2 * resolution).Truncate(10 * time.Second)
		to := phases[2].to.Truncate(10 * time.Second)
		pq := url.Values{"start": {from.UTC().Format(time.RFC3339)}, "end": {to.UTC().Format(time.RFC3339)},
			"step": {"10s"}, "resource": {"cpu"}, "view": {"summary"}}
		r := ask(t, viewer, "/history/v1/namespaces/hist/pods/solo", pq)
		got := r.Series[0].Resources["cpu"].Summary["p95"]
		if got == nil {
			t.Fatal("no p95")
		}
		if math.Abs(*got-0.3) > 0.3*0.02 {
			t.Errorf("p95 of solo = %.4f cores, want 0.3 within 2%%", *got)
		}
		raw, err := prom.rawSamples(ctx, `pod_cpu_usage_seconds_total{namespace="hist",pod="solo"}`, from.Add(-time.Minute), to)
		if err != nil {
			t.Fatal(err)
		}
		var rates []float64
		for i := 1; i < len(raw); i++ {
			dt := raw[i].t.Sub(raw[i-1].t)
			if !raw[i].t.After(from.Add(-10*time.Second)) || raw[i].t.After(to) || dt > resolution*5/2 || raw[i].v < raw[i-1].v {
				continue
			}
			rates = append(rates, (raw[i].v-raw[i-1].v)/dt.Seconds())
		}
		want := percentile(rates, 0.95)
		if math.Abs(*got-want) > 1e-9 {
			t.Errorf("p95 of solo = %.9f cores; computed from %d raw intervals: %.9f", *got, len(rates), want)
		}
		if c := r.Series[0].Resources["cpu"].Summary["count"]; c == nil || int(*c) != len(rates) {
			t.Errorf("count of solo = %v, want %d raw intervals", c, len(rates))
		}
		t.Logf("p95 of hist/solo over phases 2-3: %.4f cores (independently: %.4f from %d intervals)", *got, want, len(rates))
	})

	t.Run("promtool query range", func(t *testing.T) {
		// The same CPU series through PromQL: away from the phases' edges, a rate over
		// the last 30 s equals the history's 10 s steps.
		from, to := phases[0].from.Truncate(10*time.Second), phases[2].to.Truncate(10*time.Second)
		series, err := prom.queryRange(ctx, `rate(pod_cpu_usage_seconds_total{namespace="hist",pod="solo"}[30s])`, from, to, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(series) != 1 {
			t.Fatalf("promtool: %d series, want 1", len(series))
		}
		hq := url.Values{"start": {from.UTC().Format(time.RFC3339)}, "end": {to.UTC().Format(time.RFC3339)}, "step": {"10s"}, "resource": {"cpu"}}
		r := ask(t, viewer, "/history/v1/namespaces/hist/pods/solo", hq)
		byTime := map[int64]*float64{}
		for i, ts := range r.Timestamps {
			byTime[ts.Unix()] = r.Series[0].Resources["cpu"].Values[i]
		}
		compared := 0
		for _, p := range series[0] {
			inside := false
			for _, ph := range phases {
				if p.t.Add(-30*time.Second).After(ph.from.Add(2*resolution)) && p.t.Add(2*resolution).Before(ph.to) {
					inside = true
				}
			}
			h := byTime[p.t.Unix()]
			if !inside || h == nil {
				continue
			}
			compared++
			if math.Abs(p.v-*h) > *h*0.02 {
				t.Errorf("at %s: promtool rate %.4f, history %.4f cores", p.t.Format(time.TimeOnly), p.v, *h)
			}
		}
		if compared < 3*len(phases) {
			t.Errorf("only %d steps compared between promtool and the history", compared)
		}
		t.Logf("promtool query range: %d steps equal to the history's within 2%%", compared)
	})

	t.Run("max_source_resolution", func(t *testing.T) {
		// Thanos' parameter through the real server: accepted, checked, and while no tier
		// holds a window yet (the store is minutes old) every value comes from the raw
		// samples, so the answers are the raw one's.
		from, to := phases[0].from.Truncate(10*time.Second), phases[2].to.Truncate(10*time.Second)
		form := url.Values{"query": {`rate(pod_cpu_usage_seconds_total{namespace="hist",pod="solo"}[30s])`},
			"start": {from.UTC().Format(time.RFC3339)}, "end": {to.UTC().Format(time.RFC3339)}, "step": {"10s"}}
		bodies := map[string]string{}
		for _, res := range []string{"raw", "auto", "1h", "fine"} {
			form.Set("max_source_resolution", res)
			code, body, err := get(ctx, reader, h.Port, "/prometheus/api/v1/query_range?"+form.Encode())
			if err != nil {
				t.Fatal(err)
			}
			want := http.StatusOK
			if res == "fine" {
				want = http.StatusBadRequest
			}
			if code != want || res == "fine" && !strings.Contains(body, `"bad_data"`) {
				t.Fatalf("max_source_resolution=%s: %d %.300s, want %d", res, code, body, want)
			}
			bodies[res] = body
		}
		if !strings.Contains(bodies["raw"], `"solo"`) {
			t.Fatalf("raw: no series of solo: %.300s", bodies["raw"])
		}
		for _, res := range []string{"auto", "1h"} {
			if bodies[res] != bodies["raw"] {
				t.Errorf("max_source_resolution=%s answers otherwise than raw with no tier window:\n%.300s\nraw:\n%.300s", res, bodies[res], bodies["raw"])
			}
		}
	})

	t.Run("grafana dashboard", func(t *testing.T) {
		// Every query of deploy/grafana/hindsight.json as Grafana sends it through the
		// provisioned data source (max_source_resolution=auto), its variables set to this
		// test's objects: each answers with data, and each variable lists them.
		raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "hindsight.json"))
		if err != nil {
			t.Fatal(err)
		}
		d, err := grafana.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		from, to := phases[0].from.Truncate(10*time.Second), phases[2].to.Truncate(10*time.Second)
		vars := map[string]string{"node": node, "namespace": "hist", "workload": "web", "pod": "solo",
			"__rate_interval": "40s", "__interval": "10s", "__range": fmt.Sprintf("%ds", int(to.Sub(from).Seconds()))}
		panels, err := grafana.PanelQueries(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range panels {
			expr := grafana.Substitute(q.Expr, vars)
			form := url.Values{"query": {expr}, "start": {from.UTC().Format(time.RFC3339)}, "end": {to.UTC().Format(time.RFC3339)},
				"step": {"10s"}, "max_source_resolution": {"auto"}}
			code, body, err := get(ctx, reader, h.Port, "/prometheus/api/v1/query_range?"+form.Encode())
			if err != nil {
				t.Fatal(err)
			}
			var r struct {
				Data struct {
					Result []struct {
						Values [][2]any `json:"values"`
					} `json:"result"`
				} `json:"data"`
			}
			if code != http.StatusOK {
				t.Errorf("panel %q %s: %s: %d %.300s", q.Panel, q.RefID, expr, code, body)
				continue
			}
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatal(err)
			}
			points := 0
			for _, s := range r.Data.Result {
				points += len(s.Values)
			}
			if points == 0 {
				t.Errorf("panel %q %s: %s: no data", q.Panel, q.RefID, expr)
			}
		}
		for _, v := range grafana.VariableQueries(d) {
			sel, label, err := grafana.LabelValues(grafana.Substitute(v.Expr, vars))
			if err != nil {
				t.Fatal(err)
			}
			form := url.Values{"match[]": {sel}, "start": {from.UTC().Format(time.RFC3339)}, "end": {to.UTC().Format(time.RFC3339)}}
			code, body, err := get(ctx, reader, h.Port, "/prometheus/api/v1/label/"+label+"/values?"+form.Encode())
			if err != nil {
				t.Fatal(err)
			}
			var r struct{ Data []string }
			if code != http.StatusOK || json.Unmarshal([]byte(body), &r) != nil {
				t.Fatalf("variable %s: %d %.300s", v.RefID, code, body)
			}
			want := vars[v.RefID]
			found := false
			for _, value := range r.Data {
				// The workload variable's regex keeps the name before a pod's suffixes.
				found = found || value == want || v.RefID == "workload" && strings.HasPrefix(value, want+"-")
			}
			if !found {
				t.Errorf("variable %s: values %v, want %s among them", v.RefID, r.Data, want)
			}
		}
		t.Logf("grafana dashboard: %d panel queries and %d variables answered", len(panels), len(grafana.VariableQueries(d)))
	})

	t.Run("prometheus API needs node metrics", func(t *testing.T) {
		code, body, err := get(ctx, viewer, h.Port, "/prometheus/api/v1/query?query=up")
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusForbidden {
			t.Errorf("viewer of hist: GET /prometheus/api/v1/query = %d %s, want 403", code, body)
		}
	})

	t.Run("authorization", func(t *testing.T) {
		for _, tc := range []struct {
			path string
			want int
		}{
			{"/history/v1/namespaces/hist/pods/solo", http.StatusOK},
			{"/history/v1/namespaces/other", http.StatusForbidden},
			{"/history/v1/namespaces/other/pods/x", http.StatusForbidden},
			{"/history/v1/nodes/" + node, http.StatusForbidden},
			{"/history/v1/nodes", http.StatusForbidden},
			{"/history/v1/cluster", http.StatusForbidden},
		} {
			code, body, err := get(ctx, viewer, h.Port, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Errorf("viewer of hist: GET %s = %d %s, want %d", tc.path, code, body, tc.want)
			}
		}
		code, body, err := get(ctx, viewer, h.Port, "/history/v1/openapi.json")
		if err != nil || code != http.StatusOK || !strings.Contains(body, `"openapi": "3.0.3"`) && !strings.Contains(body, `"openapi":"3.0.3"`) {
			t.Errorf("GET /history/v1/openapi.json = %d (%v), want 200 with an OpenAPI 3.0.3 document: %.200s", code, err, body)
		}
		code, body, err = get(ctx, viewer, h.Port, "/history/v1/namespaces?"+q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusOK || strings.Contains(body, `"other"`) || !strings.Contains(body, `"hist"`) {
			t.Errorf("viewer of hist: GET /history/v1/namespaces = %d, want 200 listing hist and not other:\n%.500s", code, body)
		}
		anon := &http.Client{Timeout: 5 * time.Second, Transport: viewer.Transport.(*bearer).base}
		if code, _, err := get(ctx, anon, h.Port, "/history/v1/namespaces/hist"); err != nil || code != http.StatusUnauthorized {
			t.Errorf("anonymous: GET /history/v1/namespaces/hist = %d (%v), want 401", code, err)
		}
	})

	t.Run("csv", func(t *testing.T) {
		cq := url.Values{"format": {"csv"}}
		for k, v := range q {
			cq[k] = v
		}
		code, body, err := get(ctx, viewer, h.Port, "/history/v1/namespaces/hist/pods/solo?"+cq.Encode())
		if err != nil || code != http.StatusOK {
			t.Fatalf("csv: %d %v", code, err)
		}
		lines := strings.Split(strings.TrimSpace(body), "\n")
		if !strings.HasPrefix(lines[0], "timestamp,unix,kind,namespace,name,uid") {
			t.Errorf("csv header: %s", lines[0])
		}
		r := ask(t, viewer, "/history/v1/namespaces/hist/pods/solo", q)
		if len(lines)-1 != r.Query.Points {
			t.Errorf("csv: %d rows, want one per step (%d)", len(lines)-1, r.Query.Points)
		}
	})
}

// checkPhases compares series i of r with the configured usage: each step whose interval
// lies inside a phase, away from its edges, must be the phase's sum of the objects whose
// key contains key ("" for all) within 2 %.
func checkPhases(t *testing.T, what string, r historyResponse, i int, phases []phase, key string, resolution time.Duration) {
	t.Helper()
	cpu := r.Series[i].Resources["cpu"]
	step, err := time.ParseDuration(r.Query.Step)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for j, ts := range r.Timestamps {
		for _, p := range phases {
			// Skip the first interval of a phase, which kwok may still report at the old
			// rate, and the time the rollout takes; and the steps whose covering scrape
			// interval may reach past the phase's end, where the usage changes (a rate is
			// the average over its whole interval, so it mixes both phases there).
			if ts.Add(-step).Before(p.from.Add(3*resolution)) || ts.Add(2*resolution).After(p.to) {
				continue
			}
			want := 0.0
			for k, v := range p.cpu {
				if key == "" || k == key {
					want += v
				}
			}
			if cpu.Values[j] == nil {
				t.Errorf("%s at %s: a gap, want %.3f cores", what, ts.Format(time.TimeOnly), want)
				continue
			}
			if got := *cpu.Values[j]; math.Abs(got-want) > want*0.02 {
				t.Errorf("%s at %s: %.4f cores, want %.3f within 2%%", what, ts.Format(time.TimeOnly), got, want)
			}
			checked++
		}
	}
	if checked < 3*len(phases) {
		t.Errorf("%s: only %d steps inside the phases were checked", what, checked)
	}
	t.Logf("%s: %d steps match the configured usage within 2%%", what, checked)
}

func lastOf(vs []*float64) any {
	if len(vs) == 0 || vs[len(vs)-1] == nil {
		return nil
	}
	return *vs[len(vs)-1]
}

// bearer adds a token to every request.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// tokenHTTP returns a client for Hindsight's port that verifies its certificate against
// the cluster CA and sends token.
func tokenHTTP(c *cluster.Cluster, token string) (*http.Client, error) {
	ca, err := c.PKI.CA()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no CA certificate in %s", c.PKI.Path("ca.crt"))
	}
	base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	return &http.Client{Timeout: 30 * time.Second, Transport: &bearer{token: token, base: base}}, nil
}

// percentile interpolates linearly between the closest ranks.
func percentile(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), vs...)
	slices.Sort(s)
	rank := q * float64(len(s)-1)
	lo, hi := int(math.Floor(rank)), int(math.Ceil(rank))
	w := rank - math.Floor(rank)
	return s[lo]*(1-w) + s[hi]*w
}

type sample struct {
	t time.Time
	v float64
}

// promtool runs the real promtool against Hindsight's Prometheus-compatible API.
type promtool struct {
	bin, server, config string
	token               string // the ServiceAccount token configure writes for it
}

// configure writes promtool's HTTP configuration: the cluster CA and a token of a
// ServiceAccount allowed to read node metrics.
func (p *promtool) configure(ctx context.Context, c *cluster.Cluster, dir string) error {
	caFile := c.PKI.Path("ca.crt")
	token, err := readerToken(ctx, c, "kube-system", "promtool", true)
	if err != nil {
		return err
	}
	p.token = token
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return err
	}
	p.config = filepath.Join(dir, "http.yml")
	cfg := fmt.Sprintf("authorization:\n  type: Bearer\n  credentials_file: %s\ntls_config:\n  ca_file: %s\n", tokenFile, caFile)
	return os.WriteFile(p.config, []byte(cfg), 0o600)
}

func (p *promtool) run(ctx context.Context, args ...string) ([]byte, error) {
	args = append([]string{"query", "--format=json", "--http.config.file=" + p.config}, args...)
	cmd := exec.CommandContext(ctx, p.bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("promtool %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// promMatrix is a matrix as promtool prints it with --format=json.
type promMatrix []struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

func (m promMatrix) samples() ([][]sample, error) {
	var out [][]sample
	for _, s := range m {
		var ss []sample
		for _, v := range s.Values {
			ts, ok := v[0].(float64)
			str, ok2 := v[1].(string)
			if !ok || !ok2 {
				return nil, fmt.Errorf("malformed sample %v", v)
			}
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				return nil, err
			}
			ss = append(ss, sample{t: time.UnixMilli(int64(math.Round(ts * 1000))), v: f})
		}
		out = append(out, ss)
	}
	return out, nil
}

func (p *promtool) queryRange(ctx context.Context, expr string, from, to time.Time, step time.Duration) ([][]sample, error) {
	out, err := p.run(ctx, "range", "--start="+from.UTC().Format(time.RFC3339), "--end="+to.UTC().Format(time.RFC3339),
		"--step="+step.String(), p.server, expr)
	if err != nil {
		return nil, err
	}
	var m promMatrix
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("promtool range output: %w: %.300s", err, out)
	}
	return m.samples()
}

// rawSamples reads the stored samples of one series in [from, to] with a range selector.
func (p *promtool) rawSamples(ctx context.Context, selector string, from, to time.Time) ([]sample, error) {
	d := to.Sub(from).Round(time.Second)
	out, err := p.run(ctx, "instant", "--time="+to.UTC().Format(time.RFC3339), p.server, fmt.Sprintf("%s[%ds]", selector, int(d.Seconds())))
	if err != nil {
		return nil, err
	}
	var m promMatrix
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("promtool instant output: %w: %.300s", err, out)
	}
	ss, err := m.samples()
	if err != nil {
		return nil, err
	}
	if len(ss) != 1 {
		return nil, fmt.Errorf("%s: %d series, want 1", selector, len(ss))
	}
	return ss[0], nil
}
