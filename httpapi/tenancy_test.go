package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/hindsight-metrics/hindsight/httpapi/promapi"
)

// rule is one right of a tenancy test user: verb resource of metrics.k8s.io in namespace
// ("" at the cluster scope).
type rule struct{ verb, resource, namespace string }

// tenancyUsers are the kinds of user of the tenancy matrix, by their RBAC rights.
var tenancyUsers = map[string][]rule{
	// cluster-wide: what system:aggregated-metrics-reader bound by a ClusterRoleBinding gives.
	"cluster": {{"get", "nodes", ""}, {"list", "nodes", ""}, {"get", "pods", ""}, {"list", "pods", ""}},
	// nodes only: get nodes.metrics.k8s.io, no pods anywhere.
	"nodes": {{"get", "nodes", ""}},
	// a tenant of shop: the aggregated role bound by a RoleBinding in shop.
	"tenant": {{"get", "pods", "shop"}, {"list", "pods", "shop"}},
	// a tenant of shop who may also read nodes.
	"tenant+nodes": {{"get", "pods", "shop"}, {"list", "pods", "shop"}, {"get", "nodes", ""}},
	// may list pods cluster-wide but not read nodes: not cluster-wide.
	"pods-everywhere": {{"get", "pods", ""}, {"list", "pods", ""}},
	"nobody":          nil,
}

// ruleAuthz is an authorizer over tenancyUsers: a rule with namespace "" allows every
// namespace, as a ClusterRoleBinding does.
type ruleAuthz struct{}

func (ruleAuthz) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if !a.IsResourceRequest() || a.GetAPIGroup() != "metrics.k8s.io" || a.GetSubresource() != "" {
		return authorizer.DecisionNoOpinion, "", nil
	}
	for _, r := range tenancyUsers[a.GetUser().GetName()] {
		if r.verb == a.GetVerb() && r.resource == a.GetResource() && (r.namespace == "" || r.namespace == a.GetNamespace()) {
			return authorizer.DecisionAllow, "", nil
		}
	}
	return authorizer.DecisionNoOpinion, "no RBAC policy matched", nil
}

// fakeNamespaces are the current incarnations, by name.
type fakeNamespaces map[string]time.Time

func (f fakeNamespaces) Incarnation(name string) (string, time.Time, bool) {
	c, ok := f[name]
	return "uid-" + name, c, ok
}

// may reports what the rules of user let them read: everything, nodes, the namespaces.
func may(user string, ns string) bool {
	for _, r := range tenancyUsers[user] {
		if r.verb == "get" && r.resource == "pods" && (r.namespace == "" || r.namespace == ns) {
			return true
		}
	}
	return false
}

func mayAll(user string) bool {
	return slices.Contains(tenancyUsers[user], rule{"get", "nodes", ""}) && slices.Contains(tenancyUsers[user], rule{"list", "pods", ""})
}

// mayRequest says whether user may make a request that names the namespaces named.
func mayRequest(user string, named []string) bool {
	if mayAll(user) {
		return true
	}
	if len(named) == 0 {
		return mayNodes(user)
	}
	for _, ns := range named {
		if !may(user, ns) {
			return false
		}
	}
	return true
}

func mayNodes(user string) bool { return slices.Contains(tenancyUsers[user], rule{"get", "nodes", ""}) }

// newPromHandler is the Prometheus-compatible API over e as cmd wires it.
func newPromHandler(t *testing.T, e *env, nss Namespaces) http.Handler {
	t.Helper()
	h, err := promapi.New(promapi.Config{
		Prefix:    "/prometheus/api/v1",
		Queryable: e.db.Queryable(),
		Authorize: RequireUser,
		Scope:     PrometheusScope(ruleAuthz{}, nss),
	}, slogt(t))
	if err != nil {
		t.Fatal(err)
	}
	return withTestUser(h)
}

// promAnswer returns the status code and data of a Prometheus API answer.
func promAnswer(t *testing.T, h http.Handler, user, path string, form url.Values) (int, json.RawMessage) {
	t.Helper()
	w := get(t, h, user, path+"?"+form.Encode())
	var r struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
		t.Fatalf("%s %s: %v: %s", user, path, err, w.Body)
	}
	return w.Code, r.Data
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

// seriesKeys renders label sets as sorted strings, for comparison.
func seriesKeys(sets []map[string]string) []string {
	keys := make([]string, 0, len(sets))
	for _, s := range sets {
		parts := make([]string, 0, len(s))
		for k, v := range s {
			parts = append(parts, k+"="+v)
		}
		slices.Sort(parts)
		keys = append(keys, strings.Join(parts, ","))
	}
	slices.Sort(keys)
	return keys
}

// visibleTo filters the cluster-wide reader's label sets to what user may see given the
// namespaces the request names: node series when they may read nodes, and the named
// namespaces' series.
func visibleTo(user string, named []string, sets []map[string]string) []map[string]string {
	if mayAll(user) {
		return sets
	}
	var out []map[string]string
	for _, s := range sets {
		ns := s["namespace"]
		if (ns == "" && mayNodes(user)) || (ns != "" && slices.Contains(named, ns)) {
			out = append(out, s)
		}
	}
	return out
}

// TestPrometheusTenancy is the matrix of endpoints × user kinds × namespaces named: a
// user reads exactly what the cluster-wide reader reads of the series they may read,
// and is refused when they name a namespace they may not read, or name none and may
// not read nodes.
func TestPrometheusTenancy(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := newPromHandler(t, e, nil)
	const p = "/prometheus/api/v1"
	evalAt := rfc(19 * time.Minute)
	type request struct {
		name  string
		sel   string   // the selector of the query, match[] and label endpoints
		param []string // namespace parameters
		named []string // the namespaces the request names, all told
	}
	requests := []request{
		{"all", `{__name__=~".+"}`, nil, nil},
		{"shop by matcher", `{__name__=~".+",namespace="shop"}`, nil, []string{"shop"}},
		{"other by matcher", `{__name__=~".+",namespace="other"}`, nil, []string{"other"}},
		{"shop by parameter", `{__name__=~".+"}`, []string{"shop"}, []string{"shop"}},
		{"shop and other by regexp", `{__name__=~".+",namespace=~"shop|other"}`, nil, []string{"other", "shop"}},
		{"shop by parameter, other by matcher", `{__name__=~".+",namespace="other"}`, []string{"shop"}, []string{"other", "shop"}},
		{"negative matcher", `{__name__=~".+",namespace!="shop"}`, []string{"shop"}, []string{"shop"}},
	}
	users := []string{"cluster", "nodes", "tenant", "tenant+nodes", "pods-everywhere", "nobody"}
	// The cluster-wide reader's series are the reference.
	reference := func(sel string) []map[string]string {
		code, data := promAnswer(t, h, "cluster", p+"/series", url.Values{"match[]": {sel}})
		if code != http.StatusOK {
			t.Fatalf("cluster series %s: %d %s", sel, code, data)
		}
		var sets []map[string]string
		if err := json.Unmarshal(data, &sets); err != nil {
			t.Fatal(err)
		}
		return sets
	}
	cells, visible := 0, map[string]int{}
	for _, rq := range requests {
		ref := reference(rq.sel)
		for _, user := range users {
			t.Run(rq.name+"/"+user, func(t *testing.T) {
				want := visibleTo(user, rq.named, ref)
				// The endpoints without a selector name only the parameters' namespaces.
				paramOnly := slices.Sorted(slices.Values(rq.param))
				wantAll := visibleTo(user, paramOnly, reference(`{__name__=~".+"}`))
				form := func(kv ...string) url.Values {
					v := url.Values{"namespace": rq.param}
					for i := 0; i+1 < len(kv); i += 2 {
						v.Add(kv[i], kv[i+1])
					}
					return v
				}
				for _, ep := range []struct {
					path  string
					form  url.Values
					named []string
					want  func() any // what the answer's data must be
					got   func(json.RawMessage) any
				}{
					{"/series", form("match[]", rq.sel), rq.named,
						func() any { return seriesKeys(want) },
						func(d json.RawMessage) any {
							var sets []map[string]string
							mustJSON(t, d, &sets)
							return seriesKeys(sets)
						}},
					{"/query", form("query", rq.sel, "time", evalAt), rq.named,
						func() any { return seriesKeys(live(want, e.f, 19*time.Minute)) },
						func(d json.RawMessage) any { return seriesKeys(metricsOf(t, d)) }},
					{"/query_range", form("query", rq.sel, "start", rfc(0), "end", evalAt, "step", "60"), rq.named,
						func() any { return seriesKeys(want) },
						func(d json.RawMessage) any { return seriesKeys(metricsOf(t, d)) }},
					{"/query", form("query", "count_over_time(sum by (namespace) ("+rq.sel+")[20m:1m])", "time", evalAt), rq.named,
						func() any { return seriesKeys(namespacesOf(want)) },
						func(d json.RawMessage) any { return seriesKeys(metricsOf(t, d)) }},
					{"/labels", form("match[]", rq.sel), rq.named,
						func() any { return labelNames(want) },
						func(d json.RawMessage) any { return strs(t, d) }},
					{"/labels", form(), paramOnly,
						func() any { return labelNames(wantAll) },
						func(d json.RawMessage) any { return strs(t, d) }},
					{"/label/namespace/values", form("match[]", rq.sel), rq.named,
						func() any { return valuesOf(want, "namespace") },
						func(d json.RawMessage) any { return strs(t, d) }},
					{"/label/pod/values", form(), paramOnly,
						func() any { return valuesOf(wantAll, "pod") },
						func(d json.RawMessage) any { return strs(t, d) }},
				} {
					code, data := promAnswer(t, h, user, p+ep.path, ep.form)
					cells++
					if !mayRequest(user, ep.named) {
						if code != http.StatusForbidden {
							t.Errorf("%s %v: status %d, want 403: %s", ep.path, ep.form, code, data)
						}
						continue
					}
					if code != http.StatusOK {
						t.Errorf("%s %v: status %d, want 200: %s", ep.path, ep.form, code, data)
						continue
					}
					got, w := ep.got(data), ep.want()
					if fmt.Sprint(got) != fmt.Sprint(w) {
						t.Errorf("%s %v:\n got %v\nwant %v", ep.path, ep.form, got, w)
					}
					if ep.path == "/series" {
						visible[user] = max(visible[user], len(got.([]string)))
					}
				}
			})
		}
	}
	t.Logf("tenancy matrix: %d requests (%d selectors × %d users × 8 endpoints); most series visible per user kind: %v", cells, len(requests), len(users), visible)
}

// live keeps the label sets of series with a sample within the lookback (5m) before
// evaluation time d: the pods of f alive then, and every node.
func live(sets []map[string]string, f *fixture, d time.Duration) []map[string]string {
	var out []map[string]string
	for _, s := range sets {
		uid := s["uid"]
		if uid == "" {
			out = append(out, s)
			continue
		}
		p := f.pod(uid)
		if p.from <= d && (p.to == 0 || p.to > d-5*time.Minute) {
			out = append(out, s)
		}
	}
	return out
}

// namespacesOf is the label sets {namespace=…} of count by (namespace): one per
// namespace of sets, {} for the series without one.
func namespacesOf(sets []map[string]string) []map[string]string {
	seen := map[string]bool{}
	var out []map[string]string
	for _, s := range sets {
		ns := s["namespace"]
		if seen[ns] {
			continue
		}
		seen[ns] = true
		if ns == "" {
			out = append(out, map[string]string{})
		} else {
			out = append(out, map[string]string{"namespace": ns})
		}
	}
	return out
}

func labelNames(sets []map[string]string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, s := range sets {
		for k := range s {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

func valuesOf(sets []map[string]string, name string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, s := range sets {
		if v := s[name]; v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

func metricsOf(t *testing.T, d json.RawMessage) []map[string]string {
	t.Helper()
	var qd struct {
		Result []promSample `json:"result"`
	}
	mustJSON(t, d, &qd)
	out := make([]map[string]string, 0, len(qd.Result))
	for _, s := range qd.Result {
		out = append(out, s.Metric)
	}
	return out
}

func strs(t *testing.T, d json.RawMessage) []string {
	t.Helper()
	var out []string
	mustJSON(t, d, &out)
	return out
}

func mustJSON(t *testing.T, d json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(d, v); err != nil {
		t.Fatalf("decode %s: %v", d, err)
	}
}

// incarnationFixture has two incarnations of the namespace shop: the first one's pod
// legacy-0 lives 0–8m, the namespace is re-created at 10m, and the second one's web-0
// lives from 11m on. other's pod x lives throughout.
func incarnationFixture() (*fixture, fakeNamespaces) {
	pod := func(uid, ns, name string, from, to time.Duration) podSpec {
		return podSpec{uid: uid, ns: ns, name: name, node: "n1", labels: map[string]string{"app": name}, qos: "BestEffort",
			from: from, to: to, containers: []ctrSpec{{name: "main", cores: constant(0.5), mem: 100 * mi}}}
	}
	f := &fixture{
		rounds: 80,
		now:    at(30 * time.Minute),
		nodes: []nodeSpec{{name: "n1", capacity: map[string]int64{"cpu": 4000, "memory": 16 * gi},
			allocatable: map[string]int64{"cpu": 3800, "memory": 15 * gi}, baseCores: 0.5, baseMem: gi}},
		pods: []podSpec{
			pod("u-legacy", "shop", "legacy-0", 0, 8*time.Minute),
			pod("u-web", "shop", "web-0", 11*time.Minute, 0),
			pod("u-x", "other", "x", 0, 0),
		},
	}
	return f, fakeNamespaces{"shop": at(10 * time.Minute), "other": at(-time.Hour)}
}

// incarnationHandler is the history API over incarnationFixture, its namespaces and the
// rule authorizer.
func incarnationHandler(t *testing.T) http.Handler {
	t.Helper()
	f, nss := incarnationFixture()
	cfg := newEnv(t, f).config()
	cfg.Authorizer = ruleAuthz{}
	cfg.Namespaces = nss
	return newTestHandler(t, cfg)
}

// TestPrometheusIncarnation: a tenant of a re-created namespace reads none of the
// earlier incarnation's series, samples, pod names or UIDs; the cluster-wide reader
// reads both.
func TestPrometheusIncarnation(t *testing.T) {
	f, nss := incarnationFixture()
	e := newEnv(t, f)
	h := newPromHandler(t, e, nss)
	const p = "/prometheus/api/v1"
	created := at(10 * time.Minute)
	for _, tc := range []struct {
		user     string
		pods     []string // label/pod/values of shop
		earliest time.Time
	}{
		{"cluster", []string{"legacy-0", "web-0"}, at(0)},
		{"tenant", []string{"web-0"}, created},
		{"tenant+nodes", []string{"web-0"}, created},
	} {
		ns := url.Values{"match[]": {`{namespace="shop"}`}}
		code, data := promAnswer(t, h, tc.user, p+"/label/pod/values", ns)
		if got := strs(t, data); code != http.StatusOK || fmt.Sprint(got) != fmt.Sprint(tc.pods) {
			t.Errorf("%s: label/pod/values: %d %v, want %v", tc.user, code, got, tc.pods)
		}
		code, data = promAnswer(t, h, tc.user, p+"/label/uid/values", ns)
		if got := strs(t, data); code != http.StatusOK || slices.Contains(got, "u-legacy") != (tc.user == "cluster") {
			t.Errorf("%s: label/uid/values: %d %v", tc.user, code, got)
		}
		code, data = promAnswer(t, h, tc.user, p+"/series", url.Values{"match[]": {`{namespace="shop"}`}})
		for _, s := range seriesKeysOf(t, data) {
			if strings.Contains(s, "legacy") && tc.user != "cluster" {
				t.Errorf("%s: series shows the earlier incarnation: %s", tc.user, s)
			}
		}
		if code != http.StatusOK {
			t.Errorf("%s: series: %d %s", tc.user, code, data)
		}
		// A range query over all of it: no sample before the incarnation, for any
		// selector of shop, in a subquery too.
		for _, q := range []string{`{namespace="shop"}`, `max_over_time(pod_cpu_usage_seconds_total{namespace="shop"}[30m:15s])`, `{namespace=~"shop|other",__name__=~"pod_.*"}`} {
			form := url.Values{"query": {q}, "start": {rfc(0)}, "end": {rfc(20 * time.Minute)}, "step": {"15"}}
			if tc.user != "cluster" && strings.Contains(q, "other") {
				form.Set("namespace", "other") // tenant may not read other: refused
				if code, _ := promAnswer(t, h, tc.user, p+"/query_range", form); code != http.StatusForbidden {
					t.Errorf("%s: %s: status %d, want 403", tc.user, q, code)
				}
				continue
			}
			code, data := promAnswer(t, h, tc.user, p+"/query_range", form)
			if code != http.StatusOK {
				t.Fatalf("%s: %s: %d %s", tc.user, q, code, data)
			}
			var qd struct {
				Result []promSample `json:"result"`
			}
			mustJSON(t, data, &qd)
			first := at(time.Hour)
			for _, s := range qd.Result {
				if s.Metric["namespace"] != "shop" {
					continue
				}
				if ts := time.UnixMilli(int64(s.Values[0][0].(float64) * 1000)); ts.Before(first) {
					first = ts
				}
			}
			if first.Before(tc.earliest) {
				t.Errorf("%s: %s: first sample of shop at %s, want not before %s", tc.user, q, first, tc.earliest)
			}
			t.Logf("%s: %s: %d series, first sample of shop at +%s", tc.user, q, len(qd.Result), first.Sub(t0))
		}
	}
}

func seriesKeysOf(t *testing.T, d json.RawMessage) []string {
	t.Helper()
	var sets []map[string]string
	mustJSON(t, d, &sets)
	return seriesKeys(sets)
}

// TestHistoryIncarnation: through the history API, a tenant of a re-created namespace
// sees neither the earlier incarnation's pods (by name, by UID, in lists) nor its usage in
// the namespace's total; the cluster-wide reader sees both.
func TestHistoryIncarnation(t *testing.T) {
	h := incarnationHandler(t)
	rng := grid{at(0), at(20 * time.Minute), time.Minute}.String()
	for _, tc := range []struct {
		user, path string
		status     int
		legacy     bool // the answer mentions the pod legacy-0
	}{
		{"cluster", "/namespaces/shop/pods", 200, true},
		{"tenant", "/namespaces/shop/pods", 200, false},
		{"cluster", "/namespaces/shop?by=pod", 200, true},
		{"tenant", "/namespaces/shop?by=pod", 200, false},
		{"cluster", "/pods/u-legacy", 200, true},
		{"tenant", "/pods/u-legacy", 404, false},
		{"tenant", "/pods/u-web", 200, false},
		{"cluster", "/namespaces/shop/pods/legacy-0", 200, true},
		{"tenant", "/namespaces/shop/pods/legacy-0", 200, false},
		{"tenant", "/namespaces/other/pods", 403, false},
		{"tenant", "/namespaces", 200, false},
	} {
		w := get(t, h, tc.user, "/history/v1"+tc.path+sep(tc.path)+rng)
		if w.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d: %s", tc.user, tc.path, w.Code, tc.status, w.Body)
			continue
		}
		if got := strings.Contains(w.Body.String(), "legacy-0"); got != tc.legacy {
			t.Errorf("%s %s: mentions the earlier incarnation: %v, want %v:\n%s", tc.user, tc.path, got, tc.legacy, w.Body)
		}
	}
	// The namespace's total: the tenant's starts after the re-creation and equals the
	// cluster-wide reader's there (web-0's usage only).
	c := decode(t, get(t, h, "cluster", "/history/v1/namespaces/shop?"+rng))
	tn := decode(t, get(t, h, "tenant", "/history/v1/namespaces/shop?"+rng))
	cs, ts := seriesOf(t, c, "Namespace", "shop"), seriesOf(t, tn, "Namespace", "shop")
	cv, tv := values(cs.Resources["cpu"].Values), ts.Resources["cpu"].Values
	if len(tv) == 0 || len(tv) >= len(cv) {
		t.Fatalf("tenant's total has %d steps, the cluster-wide one %d: want fewer", len(tv), len(cv))
	}
	// The tenant's grid is the end of the cluster-wide one.
	checkValues(t, "tenant's shop cpu", tv, cv[len(cv)-len(tv):])
	t.Logf("shop total: cluster-wide %d steps, tenant %d steps (from +%s)", len(cv), len(tv), time.Duration(len(cv)-len(tv))*time.Minute)
}

// TestHistoryJustAfterIncarnation: a tenant who asks for a range ending moments after the
// namespace's re-creation (before a step's lookback would be clear of the earlier
// incarnation) gets the steps from the re-creation on, not a 404, and reads no sample of
// the earlier incarnation; a range that ends before the re-creation is a 404.
func TestHistoryJustAfterIncarnation(t *testing.T) {
	h := incarnationHandler(t)
	for _, tc := range []struct {
		end, step time.Duration
		status    int
		steps     int
	}{
		{10 * time.Minute, time.Minute, 200, 1}, // the re-creation's step only
		{11 * time.Minute, time.Minute, 200, 2},
		{10 * time.Minute, 5 * time.Minute, 200, 1}, // a step whose window reaches legacy-0's life
		{9 * time.Minute, time.Minute, 404, 0},
	} {
		rng := grid{at(0), at(tc.end), tc.step}.String()
		w := get(t, h, "tenant", "/history/v1/namespaces/shop/pods?"+rng)
		if w.Code != tc.status {
			t.Errorf("range ending at +%s: status %d, want %d: %s", tc.end, w.Code, tc.status, w.Body)
			continue
		}
		if tc.status != 200 {
			continue
		}
		if strings.Contains(w.Body.String(), "legacy-0") {
			t.Errorf("range ending at +%s: mentions the earlier incarnation:\n%s", tc.end, w.Body)
		}
		tn := decode(t, get(t, h, "tenant", "/history/v1/namespaces/shop?"+rng))
		if got := len(seriesOf(t, tn, "Namespace", "shop").Resources["cpu"].Values); got != tc.steps {
			t.Errorf("range ending at +%s: %d steps, want %d", tc.end, got, tc.steps)
		}
	}
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}
