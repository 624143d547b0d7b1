package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// TestTenancy runs the Prometheus-compatible API's tenancy matrix with real
// ServiceAccount tokens through real RBAC (delegated authentication and
// SubjectAccessReviews against the local kube-apiserver), then deletes and re-creates a
// namespace under the same name and checks that its new tenant reads nothing of the
// earlier incarnation, through PromQL and the history API, while a cluster-wide reader
// reads both.
func TestTenancy(t *testing.T) {
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	const node = "kwok-t"
	if _, err := c.CreateNode(ctx, cluster.NodeSpec{Name: node, CPU: "8", Memory: "32Gi"}); err != nil {
		t.Fatal(err)
	}
	mk := func(ns, name string) string {
		t.Helper()
		p, err := c.CreatePod(ctx, cluster.PodSpec{Namespace: ns, Name: name, Node: node, Usage: cluster.Usage{CPU: "100m", Memory: "50Mi"}})
		if err != nil {
			t.Fatal(err)
		}
		return string(p.UID)
	}
	oldUID := mk("team", "old-0")
	mk("rival", "r-0")
	h, _ := startHindsight(ctx, t, c, cluster.HindsightOptions{Resolution: 10 * time.Second, Register: true}, 2-len(smokePods))

	// The user kinds, by their RBAC rights.
	clusterToken, err := readerToken(ctx, c, "kube-system", "tenancy-cluster", true)
	if err != nil {
		t.Fatal(err)
	}
	nodesToken := nodesOnlyToken(ctx, t, c)
	tenantToken, err := c.ServiceAccountToken(ctx, "default", "team-tenant")
	if err != nil {
		t.Fatal(err)
	}
	bindTenant(ctx, t, c)
	nobodyToken, err := readerToken(ctx, c, "default", "tenancy-nobody", false)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]*http.Client{}
	for name, token := range map[string]string{"cluster": clusterToken, "nodes": nodesToken, "tenant": tenantToken, "nobody": nobodyToken} {
		hc, err := tokenHTTP(c, token)
		if err != nil {
			t.Fatal(err)
		}
		users[name] = hc
	}
	prom := func(user, path string, form url.Values) (int, json.RawMessage) {
		t.Helper()
		code, body, err := get(ctx, users[user], h.Port, "/prometheus/api/v1"+path+"?"+form.Encode())
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Data json.RawMessage `json:"data"`
		}
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatalf("%s %s: %v: %s", user, path, err, body)
			}
		}
		return code, r.Data
	}
	seriesOf := func(user string, form url.Values) (int, []map[string]string) {
		t.Helper()
		code, data := prom(user, "/series", form)
		var sets []map[string]string
		if code == http.StatusOK {
			if err := json.Unmarshal(data, &sets); err != nil {
				t.Fatal(err)
			}
		}
		return code, sets
	}
	// Wait for the stored series of both namespaces (the TSDB gets them a round after
	// the metrics API serves them).
	if err := cluster.Poll(ctx, 2*time.Minute, time.Second, "series of team and rival", func(context.Context) (bool, error) {
		_, sets := seriesOf("cluster", url.Values{"match[]": {`{namespace=~"team|rival"}`}})
		return len(namespaceSet(sets)) == 2, nil
	}); err != nil {
		t.Fatal(err)
	}

	// The matrix: user kind × endpoint × what the request names.
	type ask struct {
		name      string
		form      url.Values
		status    map[string]int      // by user; 200 when absent
		namespace map[string][]string // the namespaces visible, by user ("" for node series)
	}
	all := []string{"", "rival", "team"}
	asks := []ask{
		{"everything", url.Values{"match[]": {`{__name__=~".+"}`}},
			map[string]int{"tenant": 403, "nobody": 403},
			map[string][]string{"cluster": all, "nodes": {""}}},
		{"team by matcher", url.Values{"match[]": {`{namespace="team"}`}},
			map[string]int{"nodes": 403, "nobody": 403},
			map[string][]string{"cluster": {"team"}, "tenant": {"team"}}},
		{"team by parameter", url.Values{"match[]": {`{__name__=~".+"}`}, "namespace": {"team"}},
			map[string]int{"nodes": 403, "nobody": 403},
			map[string][]string{"cluster": all, "tenant": {"team"}}},
		{"rival", url.Values{"match[]": {`{namespace="rival"}`}},
			map[string]int{"nodes": 403, "tenant": 403, "nobody": 403},
			map[string][]string{"cluster": {"rival"}}},
		{"team or rival", url.Values{"match[]": {`{namespace=~"team|rival"}`}},
			map[string]int{"nodes": 403, "tenant": 403, "nobody": 403},
			map[string][]string{"cluster": {"rival", "team"}}},
		{"not team, team named", url.Values{"match[]": {`{__name__=~".+",namespace!="team"}`}, "namespace": {"team"}},
			map[string]int{"nodes": 403, "nobody": 403},
			map[string][]string{"cluster": {"", "rival"}, "tenant": nil}},
	}
	now := time.Now()
	cells := 0
	visible := map[string]int{}
	for _, a := range asks {
		for _, user := range []string{"cluster", "nodes", "tenant", "nobody"} {
			want := a.status[user]
			if want == 0 {
				want = http.StatusOK
			}
			sel := a.form.Get("match[]")
			for _, ep := range []struct {
				path string
				form url.Values
				got  func(json.RawMessage) []string // the namespaces of the answer
			}{
				{"/series", a.form, func(d json.RawMessage) []string { return namespaceSet(decodeSets(t, d)) }},
				{"/label/namespace/values", a.form, func(d json.RawMessage) []string { return withNodes(decodeStrings(t, d), a.namespace[user]) }},
				{"/query", with(a.form, "query", sel, "time", fmt.Sprint(now.Unix())),
					func(d json.RawMessage) []string { return namespaceSet(decodeMetrics(t, d)) }},
				{"/query_range", with(a.form, "query", sel, "start", fmt.Sprint(now.Add(-5*time.Minute).Unix()), "end", fmt.Sprint(now.Unix()), "step", "30"),
					func(d json.RawMessage) []string { return namespaceSet(decodeMetrics(t, d)) }},
			} {
				form := ep.form
				if ep.path != "/series" && ep.path != "/label/namespace/values" {
					form = without(form, "match[]")
				}
				code, data := prom(user, ep.path, form)
				cells++
				if code != want {
					t.Errorf("%s, %s %s: status %d, want %d", a.name, user, ep.path, code, want)
					continue
				}
				if code != http.StatusOK {
					continue
				}
				got := ep.got(data)
				if w := a.namespace[user]; fmt.Sprint(got) != fmt.Sprint(w) {
					t.Errorf("%s, %s %s: namespaces %q, want %q", a.name, user, ep.path, got, w)
				}
				if ep.path == "/series" {
					visible[user] = max(visible[user], len(decodeSets(t, data)))
				}
			}
		}
	}
	t.Logf("tenancy matrix: %d requests (%d asks × 4 users × 4 endpoints); most series visible per user kind: %v", cells, len(asks), visible)

	// Delete team and re-create it under the same name, with a new pod and the tenant's
	// binding again (a RoleBinding goes with its namespace).
	if err := c.Client().CoreV1().Namespaces().Delete(ctx, "team", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Poll(ctx, 3*time.Minute, time.Second, "namespace team deleted", func(ctx context.Context) (bool, error) {
		_, err := c.Client().CoreV1().Namespaces().Get(ctx, "team", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatal(err)
	}
	mk("team", "new-0")
	ns, err := c.Client().CoreV1().Namespaces().Get(ctx, "team", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := ns.CreationTimestamp.Time
	bindTenant(ctx, t, c)
	podsOfTeam := func(user string) (int, []string) {
		code, data := prom(user, "/label/pod/values", url.Values{"match[]": {`{namespace="team"}`}})
		if code != http.StatusOK {
			return code, nil
		}
		return code, decodeStrings(t, data)
	}
	if err := cluster.Poll(ctx, 2*time.Minute, time.Second, "series of team's new pod", func(context.Context) (bool, error) {
		_, pods := podsOfTeam("cluster")
		code, tenantPods := podsOfTeam("tenant") // once the tenant's binding is in the SAR cache too
		return slices.Contains(pods, "new-0") && code == http.StatusOK && len(tenantPods) > 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, pods := podsOfTeam("cluster"); fmt.Sprint(pods) != "[new-0 old-0]" {
		t.Errorf("cluster-wide reader: pods of team %v, want both incarnations' [new-0 old-0]", pods)
	}
	if code, pods := podsOfTeam("tenant"); code != http.StatusOK || fmt.Sprint(pods) != "[new-0]" {
		t.Errorf("tenant: pods of team %d %v, want the current incarnation's [new-0] only", code, pods)
	}
	// No sample of team before its re-creation for the tenant, all of them for the
	// cluster-wide reader.
	from := now.Add(-10 * time.Minute)
	for user, wantBefore := range map[string]bool{"cluster": true, "tenant": false} {
		code, data := prom(user, "/query_range", url.Values{"query": {`pod_cpu_usage_seconds_total{namespace="team"}`},
			"start": {fmt.Sprint(from.Unix())}, "end": {fmt.Sprint(time.Now().Unix())}, "step": {"10"}})
		if code != http.StatusOK {
			t.Fatalf("%s: query_range: %d %s", user, code, data)
		}
		first := earliest(t, data)
		if before := first.Before(created); before != wantBefore {
			t.Errorf("%s: first sample of team at %s, namespace re-created at %s: before it %v, want %v", user, first, created, before, wantBefore)
		}
		t.Logf("%s: first sample of team at %s (re-created at %s)", user, first.UTC().Format(time.RFC3339), created.UTC().Format(time.RFC3339))
	}
	// The history API: the earlier incarnation's pod by UID.
	for user, want := range map[string]int{"cluster": http.StatusOK, "tenant": http.StatusNotFound} {
		code, body, err := get(ctx, users[user], h.Port, "/history/v1/pods/"+oldUID+"?start="+url.QueryEscape(from.UTC().Format(time.RFC3339)))
		if err != nil {
			t.Fatal(err)
		}
		if code != want {
			t.Errorf("%s: history of the earlier incarnation's pod: %d, want %d: %.300s", user, code, want, body)
		}
	}
	code, body, err := get(ctx, users["tenant"], h.Port, "/history/v1/namespaces/team/pods?start="+url.QueryEscape(from.UTC().Format(time.RFC3339)))
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK || strings.Contains(body, "old-0") || !strings.Contains(body, "new-0") {
		i := max(strings.Index(body, "old-0")-300, 0)
		t.Errorf("tenant: history of team's pods: %d, want new-0 only: %.600s", code, body[i:])
	}

	throughAggregator(ctx, t, c, tenantToken)
}

// throughAggregator reads the history API and the Prometheus-compatible API through the
// kube-apiserver with nothing but a kubeconfig: the tenant (default/team-tenant, bound to
// view in team, which the readers' roles are aggregated into) reads team and not rival, and
// both checks hold: the kube-apiserver's RBAC on the aggregated groups, and Hindsight's own
// per-namespace check (a user granted the history groups but not pods.metrics.k8s.io is
// refused by Hindsight).
func throughAggregator(ctx context.Context, t *testing.T, c *cluster.Cluster, tenantToken string) {
	t.Helper()
	rbac := c.Client().RbacV1()
	bind := func(ns, name, sa, kind, role string) {
		t.Helper()
		if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: "default"}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind("team", "tenant-view", "team-tenant", "ClusterRole", "view")
	histOnly, err := c.ServiceAccountToken(ctx, "default", "history-only")
	if err != nil {
		t.Fatal(err)
	}
	bind("team", "history-only", "history-only", "ClusterRole", "hindsight:history-reader")

	dir := t.TempDir()
	kubectl := func(token string, args ...string) (string, error) {
		kc := filepath.Join(dir, fmt.Sprintf("kubeconfig-%x", sha256.Sum256([]byte(token))))
		if err := c.WriteTokenKubeconfig(kc, "user", token); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, c.Tools.Kubectl, append([]string{"--kubeconfig", kc}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	const history = "/apis/history.hindsight.dev/v1"
	// The aggregated view role takes a moment to include the readers' roles (the
	// clusterrole-aggregation controller), and the SubjectAccessReview cache 10 s.
	var csv string
	if err := cluster.Poll(ctx, time.Minute, time.Second, "tenant reads team's history through the kube-apiserver", func(context.Context) (bool, error) {
		out, err := kubectl(tenantToken, "get", "--raw", history+"/namespaces/team/pods?start=-10m&format=csv")
		csv = out
		return err == nil, nil
	}); err != nil {
		t.Fatalf("%v: %s", err, csv)
	}
	if lines := strings.Split(strings.TrimSpace(csv), "\n"); len(lines) < 2 || !strings.Contains(csv, "new-0") || strings.Contains(csv, "old-0") {
		t.Errorf("tenant: CSV of team's pods through the kube-apiserver: want a header and rows of new-0 only:\n%.600s", csv)
	}
	for _, tc := range []struct {
		who, token, path, want string
	}{
		// Refused by the kube-apiserver's RBAC: nothing granted in rival.
		{"tenant", tenantToken, history + "/namespaces/rival/pods?start=-10m", `cannot list resource "pods" in API group "history.hindsight.dev" in the namespace "rival"`},
		// Refused by Hindsight: the groups are granted, pods.metrics.k8s.io is not.
		{"history-only", histOnly, history + "/namespaces/team/pods?start=-10m", `cannot get resource "pods" in API group "metrics.k8s.io" in the namespace "team"`},
	} {
		out, err := kubectl(tc.token, "get", "--raw", tc.path)
		if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "Forbidden") {
			t.Errorf("%s: kubectl get --raw %s: %v, want Forbidden with %q: %.400s", tc.who, tc.path, err, tc.want, out)
		}
	}

	// promtool with the kube-apiserver's URL and the tenant's token: the tenant's own data
	// source (namespaced path, granted by the RoleBinding) reads team only; the cluster-wide
	// path is refused by the kube-apiserver (no ClusterRoleBinding).
	tokenFile := filepath.Join(dir, "tenant-token")
	if err := os.WriteFile(tokenFile, []byte(tenantToken), 0o600); err != nil {
		t.Fatal(err)
	}
	httpConfig := filepath.Join(dir, "http.yml")
	if err := os.WriteFile(httpConfig, fmt.Appendf(nil, "authorization:\n  type: Bearer\n  credentials_file: %s\ntls_config:\n  ca_file: %s\n", tokenFile, c.PKI.Path("ca.crt")), 0o600); err != nil {
		t.Fatal(err)
	}
	promtool := func(server string) (string, error) {
		cmd := exec.CommandContext(ctx, c.Tools.Promtool, "query", "instant", "--format=json", "--http.config.file="+httpConfig, server, "pod_cpu_usage_seconds_total")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	tenantSource := c.APIServerURL + "/apis/prometheus.hindsight.dev/v1/namespaces/team"
	out, err := promtool(tenantSource)
	if err != nil {
		t.Fatalf("promtool against %s: %v: %s", tenantSource, err, out)
	}
	var vec []struct {
		Metric map[string]string `json:"metric"`
	}
	if err := json.Unmarshal([]byte(out), &vec); err != nil {
		t.Fatalf("promtool output: %v: %s", err, out)
	}
	if got := namespaceSet(func() []map[string]string {
		var m []map[string]string
		for _, s := range vec {
			m = append(m, s.Metric)
		}
		return m
	}()); fmt.Sprint(got) != "[team]" {
		t.Errorf("promtool through the kube-apiserver as the tenant: namespaces %q, want [team]", got)
	}
	if out, err := promtool(c.APIServerURL + "/apis/prometheus.hindsight.dev/v1"); err == nil || !strings.Contains(out, "403") {
		t.Errorf("promtool on the cluster-wide path as the tenant: %v, want 403: %.400s", err, out)
	}
	t.Logf("through the kube-apiserver: tenant's CSV %d lines, PromQL %d series of team", strings.Count(csv, "\n"), len(vec))
}

// nodesOnlyToken returns the token of a ServiceAccount that may get nodes.metrics.k8s.io
// and nothing else.
func nodesOnlyToken(ctx context.Context, t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	token, err := c.ServiceAccountToken(ctx, "default", "tenancy-nodes")
	if err != nil {
		t.Fatal(err)
	}
	rbac := c.Client().RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "tenancy-node-metrics"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"nodes"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tenancy-node-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tenancy-node-metrics"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "tenancy-nodes", Namespace: "default"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return token
}

// bindTenant binds the aggregated metrics reader role to default/team-tenant in the
// namespace team only.
func bindTenant(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	t.Helper()
	if _, err := c.Client().RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-metrics", Namespace: "team"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:aggregated-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "team-tenant", Namespace: "default"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func with(v url.Values, kv ...string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

func without(v url.Values, key string) url.Values {
	out := with(v)
	out.Del(key)
	return out
}

// namespaceSet returns the sorted namespaces of label sets, "" for those without one.
func namespaceSet(sets []map[string]string) []string {
	var out []string
	for _, s := range sets {
		if ns := s["namespace"]; !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

// withNodes adds "" to label values when want has it: label values never list the
// empty value of the node series.
func withNodes(values, want []string) []string {
	if slices.Contains(want, "") {
		values = append([]string{""}, values...)
	}
	if len(values) == 0 {
		return nil
	}
	return values
}

func decodeSets(t *testing.T, d json.RawMessage) []map[string]string {
	t.Helper()
	var sets []map[string]string
	if err := json.Unmarshal(d, &sets); err != nil {
		t.Fatalf("decode %s: %v", d, err)
	}
	return sets
}

func decodeStrings(t *testing.T, d json.RawMessage) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal(d, &out); err != nil {
		t.Fatalf("decode %s: %v", d, err)
	}
	return out
}

type promSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

func decodeMetrics(t *testing.T, d json.RawMessage) []map[string]string {
	t.Helper()
	var qd struct {
		Result []promSeries `json:"result"`
	}
	if err := json.Unmarshal(d, &qd); err != nil {
		t.Fatalf("decode %s: %v", d, err)
	}
	out := make([]map[string]string, 0, len(qd.Result))
	for _, s := range qd.Result {
		out = append(out, s.Metric)
	}
	return out
}

// earliest returns the time of the first point of a range query's matrix.
func earliest(t *testing.T, d json.RawMessage) time.Time {
	t.Helper()
	var qd struct {
		Result []promSeries `json:"result"`
	}
	if err := json.Unmarshal(d, &qd); err != nil {
		t.Fatalf("decode %s: %v", d, err)
	}
	first := time.Now()
	for _, s := range qd.Result {
		if len(s.Values) == 0 {
			continue
		}
		if ts, ok := s.Values[0][0].(float64); ok {
			if at := time.UnixMilli(int64(ts * 1000)); at.Before(first) {
				first = at
			}
		}
	}
	return first
}
