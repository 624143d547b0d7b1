package grafana

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

var update = flag.Bool("update", false, "rewrite hindsight.json from Dashboard()")

// promql is a PromQL parser with Prometheus' default options, as the API's.
var promql = parser.NewParser(parser.Options{})

const dashboardFile = "hindsight.json"

// TestDashboardFile checks that hindsight.json is what Dashboard builds.
func TestDashboardFile(t *testing.T) {
	d, err := Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(dashboardFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what Dashboard() builds: run go test ./deploy/grafana -update", dashboardFile)
	}
}

// testVars are values for the dashboard's variables.
var testVars = map[string]string{
	"node": "n1", "namespace": "ns", "workload": "web", "pod": "web-0",
	"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "datasource": "hindsight",
}

// TestDashboardQueries checks hindsight.json by the SDK's schema, and every query in it:
// PromQL that parses once its variables are substituted, selecting series Hindsight stores,
// from the dashboard's data source variable.
func TestDashboardQueries(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := PanelQueries(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 15 {
		t.Errorf("%d panel queries, want the five views' (15 or more)", len(qs))
	}
	for _, q := range qs {
		expr := Substitute(q.Expr, testVars)
		if strings.Contains(expr, "$") {
			t.Errorf("%s %s: a variable left in %q", q.Panel, q.RefID, expr)
		}
		e, err := promql.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s %s: %q: %v", q.Panel, q.RefID, expr, err)
			continue
		}
		n := 0
		parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				n++
				if _, ok := tsdb.LookupSeries(vs.Name); !ok {
					t.Errorf("%s %s: %s is no series Hindsight stores", q.Panel, q.RefID, vs.Name)
				}
			}
			return nil
		})
		if n == 0 {
			t.Errorf("%s %s: %q selects nothing", q.Panel, q.RefID, expr)
		}
	}
	// Every panel and query reads ${datasource}.
	if n := strings.Count(string(raw), `"uid": "${datasource}"`); n < 2*len(qs) {
		t.Errorf("%d references to ${datasource}, want one per panel and per query (%d queries)", n, len(qs))
	}

	vars := VariableQueries(d)
	var names []string
	for _, v := range vars {
		names = append(names, v.RefID)
		sel, label, err := LabelValues(Substitute(v.Expr, testVars))
		if err != nil {
			t.Error(err)
			continue
		}
		if _, err := promql.ParseMetricSelector(sel); err != nil {
			t.Errorf("variable %s: selector %q: %v", v.RefID, sel, err)
		}
		if !slices.Contains([]string{tsdb.LabelNode, tsdb.LabelNamespace, tsdb.LabelPod}, label) {
			t.Errorf("variable %s: label %q", v.RefID, label)
		}
	}
	if want := []string{"node", "namespace", "workload", "pod"}; !slices.Equal(names, want) {
		t.Errorf("query variables %v, want %v", names, want)
	}
}

// TestWorkloadRegex checks the workload variable's regex (JavaScript's syntax, the subset Go
// shares) on the pod names of each kind of workload.
func TestWorkloadRegex(t *testing.T) {
	d, err := Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	var re *regexp.Regexp
	for _, v := range d.Templating.List {
		if v.Name == "workload" && v.Regex != nil {
			re = regexp.MustCompile(strings.TrimSuffix(strings.TrimPrefix(*v.Regex, "/"), "/"))
		}
	}
	if re == nil {
		t.Fatal("no workload variable with a regex")
	}
	for pod, want := range map[string]string{
		"web-7d9f8b6c5d-x2x4z":   "web",    // Deployment
		"my-app-5f6d7c8b9-abcde": "my-app", // Deployment with a dash in its name
		"db-0":                   "db",     // StatefulSet
		"postgres-main-12":       "postgres-main",
		"node-agent-q8z2k":       "node-agent", // DaemonSet
		"backup-29012345-7xk2p":  "backup",     // a CronJob's Job's pod
		"solo":                   "",           // a bare pod: no workload
	} {
		got := ""
		if m := re.FindStringSubmatch(pod); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("pod %s: workload %q, want %q", pod, got, want)
		}
	}
}

// TestSubstitute checks Grafana's variable forms and that a longer name wins.
func TestSubstitute(t *testing.T) {
	got := Substitute(`rate(x{a="$pod", b="${pod}"}[$__rate_interval]) / $__interval $pods`, map[string]string{
		"pod": "p", "pods": "ps", "__rate_interval": "1m", "__interval": "15s",
	})
	if want := `rate(x{a="p", b="p"}[1m]) / 15s ps`; got != want {
		t.Errorf("Substitute: %q, want %q", got, want)
	}
}

// TestDatasourceFile checks the provisioning file: both data sources are Prometheus ones
// that read the tiers, one through the kube-apiserver's aggregated group, one direct.
func TestDatasourceFile(t *testing.T) {
	raw, err := os.ReadFile("datasource.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, Access, URL string
			IsDefault                    bool           `json:"isDefault"`
			JSONData                     map[string]any `json:"jsonData"`
			SecureJSONData               map[string]any `json:"secureJsonData"`
		} `json:"datasources"`
	}
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		t.Fatal(err)
	}
	if f.APIVersion != 1 || len(f.Datasources) != 2 {
		t.Fatalf("apiVersion %d, %d data sources: want 1 and 2", f.APIVersion, len(f.Datasources))
	}
	for i, want := range []string{"https://kubernetes.default.svc/apis/prometheus.hindsight.dev/v1", "https://hindsight.kube-system.svc:443/prometheus"} {
		ds := f.Datasources[i]
		if ds.URL != want || ds.Type != "prometheus" || ds.Access != "proxy" {
			t.Errorf("data source %s: url %s type %s access %s, want %s, prometheus, proxy", ds.Name, ds.URL, ds.Type, ds.Access, want)
		}
		if ds.JSONData["customQueryParameters"] != "max_source_resolution=auto" {
			t.Errorf("data source %s: custom query parameters %v", ds.Name, ds.JSONData["customQueryParameters"])
		}
		if !strings.HasPrefix(ds.SecureJSONData["httpHeaderValue1"].(string), "Bearer ") {
			t.Errorf("data source %s: no bearer token", ds.Name)
		}
	}
}

// TestParseRejects checks that Parse refuses what the dashboard schema does not hold.
func TestParseRejects(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"an unknown panel field": func(s string) string {
			return strings.Replace(s, `"type": "timeseries",`, `"type": "timeseries", "colour": "red",`, 1)
		},
		"an unknown query field": func(s string) string { return strings.Replace(s, `"expr":`, `"exp": "x", "expr":`, 1) },
		"a mistyped field":       func(s string) string { return strings.Replace(s, `"refresh": "1m"`, `"refresh": 60`, 1) },
		"not JSON":               func(s string) string { return s[:len(s)/2] },
	} {
		edited := edit(string(raw))
		if edited == string(raw) {
			t.Fatalf("%s: the edit changed nothing", name)
		}
		if _, err := Parse([]byte(edited)); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
}
