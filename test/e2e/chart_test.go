package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

var update = flag.Bool("update", false, "rewrite testdata/chart/*.golden.yaml from the current chart")

// chartValueSets are the value files under testdata/chart, by name.
var chartValueSets = []string{"default", "cert-manager", "existing-secret", "metrics-only"}

// renderChart renders deploy/helm/hindsight with one value set of testdata/chart.
func renderChart(t *testing.T, tools cluster.Tools, set string, extra ...string) (string, error) {
	t.Helper()
	return cluster.RenderChart(context.Background(), tools, append([]string{"--values", filepath.Join("testdata", "chart", set+".values.yaml")}, extra...)...)
}

// generated matches the chart-made certificate material, which differs on every render.
var generated = regexp.MustCompile(`(?m)^(\s*(?:tls\.crt|tls\.key|ca\.crt|caBundle): )(LS0t[A-Za-z0-9+/=]+)$`)

// TestChart renders the chart with each value set and compares it with its golden file
// (the chart-made certificates aside, which are checked for what they are instead), runs
// helm lint, checks that values.schema.json refuses unknown keys and wrong types, and that
// the chart grants exactly the RBAC rules of deploy/kustomize/base.
func TestChart(t *testing.T) {
	tools := cluster.NeedTools(t)
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(root, "deploy", "helm", "hindsight")
	if out, err := exec.Command(tools.Helm, "lint", "--strict", chart).CombinedOutput(); err != nil {
		t.Errorf("helm lint --strict: %v\n%s", err, out)
	}
	for _, set := range chartValueSets {
		t.Run(set, func(t *testing.T) {
			out, err := renderChart(t, tools, set)
			if err != nil {
				t.Fatal(err)
			}
			switch set {
			case "default":
				checkChartCertificate(t, out, "hindsight")
			case "metrics-only":
				checkChartCertificate(t, out, "hindsight-metrics")
			case "existing-secret":
				checkCABundle(t, out, filepath.Join("testdata", "chart", set+".values.yaml"))
			}
			got := generated.ReplaceAllString(out, "${1}<generated>")
			golden := filepath.Join("testdata", "chart", set+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("render differs from %s (go test -run TestChart ./test/e2e -update rewrites it):\n%s", golden, cmp.Diff(string(want), got))
			}
			if strings.Contains(got, "insecureSkipTLSVerify") {
				t.Errorf("value set %s registers an APIService with insecureSkipTLSVerify", set)
			}
		})
	}

	t.Run("schema", func(t *testing.T) {
		for _, tc := range []struct{ set, want string }{
			{"nosuchvalue=1", "additional properties 'nosuchvalue' not allowed"},
			{"tls.sorce=helm", "additional properties 'sorce' not allowed"},
			{"kubeletInsecureTLS=yes", "want boolean"},
			{"persistence.size=10GB", "does not match pattern"},
			{"metricResolution=fast", "does not match pattern"},
			{"tls.source=vault", "value must be one of"},
			{"service.port=0", "minimum"},
			{"args[0]=kubelet-insecure-tls", "does not match pattern"},
			{"tls.source=secret", "tls.secret.name is required"},
		} {
			_, err := renderChart(t, tools, "default", "--set", tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("--set %s: %v; want an error with %q", tc.set, err, tc.want)
			}
		}
	})

	t.Run("rbac as in kustomize", func(t *testing.T) {
		out, err := renderChart(t, tools, "default")
		if err != nil {
			t.Fatal(err)
		}
		roles := map[string]rbacv1.ClusterRole{}
		for _, doc := range strings.Split(out, "\n---\n") {
			var cr rbacv1.ClusterRole
			if err := yaml.Unmarshal([]byte(doc), &cr); err == nil && cr.Kind == "ClusterRole" {
				roles[cr.Name] = cr
			}
		}
		own, err := cluster.LoadHindsightRBAC()
		if err != nil {
			t.Fatal(err)
		}
		readers, err := cluster.LoadRBAC(filepath.Join(root, cluster.ReadersRBACManifest))
		if err != nil {
			t.Fatal(err)
		}
		for chartName, base := range map[string]*rbacv1.ClusterRole{
			"system:hindsight":                    own.ClusterRole("system:hindsight"),
			"hindsight:aggregated-metrics-reader": readers.ClusterRole("system:aggregated-metrics-reader"),
			"hindsight:history-reader":            readers.ClusterRole("hindsight:history-reader"),
		} {
			got, ok := roles[chartName]
			if !ok || base == nil {
				t.Errorf("ClusterRole %s: in the chart %v, its kustomize counterpart found %v", chartName, ok, base != nil)
				continue
			}
			if !reflect.DeepEqual(got.Rules, base.Rules) {
				t.Errorf("ClusterRole %s: chart rules %v, kustomize rules %v", chartName, got.Rules, base.Rules)
			}
			for _, l := range []string{"view", "edit", "admin"} {
				key := "rbac.authorization.k8s.io/aggregate-to-" + l
				if got.Labels[key] != base.Labels[key] {
					t.Errorf("ClusterRole %s: label %s %q in the chart, %q in kustomize", chartName, key, got.Labels[key], base.Labels[key])
				}
			}
		}
		if len(roles) != 3 {
			t.Errorf("chart ClusterRoles %v; want the three above", slices.Sorted(maps.Keys(roles)))
		}
	})

	t.Run("readme lists every value", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var values map[string]any
		if err := yaml.Unmarshal(data, &values); err != nil {
			t.Fatal(err)
		}
		readme, err := os.ReadFile(filepath.Join(chart, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		var leaves []string
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			m, ok := v.(map[string]any)
			if !ok || len(m) == 0 {
				leaves = append(leaves, prefix)
				return
			}
			for k, v := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), v)
			}
		}
		walk("", values)
		for _, leaf := range leaves {
			documented := false
			for p := leaf; p != "" && !documented; {
				documented = bytes.Contains(readme, []byte("| `"+p+"` |"))
				i := strings.LastIndex(p, ".")
				if i < 0 {
					break
				}
				p = p[:i]
			}
			if !documented {
				t.Errorf("value %s (or a parent) has no row in the chart's README.md", leaf)
			}
		}
	})

	t.Run("notes warn of insecure settings", func(t *testing.T) {
		for _, tc := range []struct {
			set  string
			want bool
		}{{"kubeletInsecureTLS=true", true}, {"kubeletInsecureTLS=false", false}} {
			cmd := exec.Command(tools.Helm, "install", "hindsight", chart, "--namespace", cluster.ChartNamespace, "--dry-run=client", "--set", tc.set)
			cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(t.TempDir(), "none"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("helm install --dry-run=client --set %s: %v\n%s", tc.set, err, out)
			}
			notes := string(out[bytes.Index(out, []byte("NOTES:")):])
			if got := strings.Contains(notes, "WARNING: kubeletInsecureTLS is set"); got != tc.want {
				t.Errorf("--set %s: NOTES warn %v, want %v:\n%s", tc.set, got, tc.want, notes)
			}
		}
	})
}

// checkChartCertificate checks the chart-made serving certificate: signed by the CA that
// every APIService's caBundle holds, for the Service's DNS name.
func checkChartCertificate(t *testing.T, manifest, service string) {
	t.Helper()
	values := map[string][]string{}
	for _, m := range generated.FindAllStringSubmatch(manifest, -1) {
		key := strings.TrimSuffix(strings.TrimSpace(m[1]), ":")
		data, err := base64.StdEncoding.DecodeString(m[2])
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		values[key] = append(values[key], string(data))
	}
	if len(values["tls.crt"]) != 1 || len(values["ca.crt"]) != 1 || len(values["caBundle"]) == 0 {
		t.Fatalf("want one tls.crt and ca.crt and caBundles, got %d, %d, %d", len(values["tls.crt"]), len(values["ca.crt"]), len(values["caBundle"]))
	}
	for _, b := range values["caBundle"] {
		if b != values["ca.crt"][0] {
			t.Errorf("an APIService's caBundle is not the Secret's ca.crt")
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(values["ca.crt"][0])) {
		t.Fatal("ca.crt holds no certificate")
	}
	block, _ := pem.Decode([]byte(values["tls.crt"][0]))
	if block == nil {
		t.Fatal("tls.crt holds no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{service + "." + cluster.ChartNamespace + ".svc", service + "." + cluster.ChartNamespace + ".svc.cluster.local"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("serving certificate for %s: %v", name, err)
		}
	}
}

// checkCABundle checks that every APIService's caBundle is the PEM of tls.secret.caBundle
// in the values file.
func checkCABundle(t *testing.T, manifest, valuesFile string) {
	t.Helper()
	data, err := os.ReadFile(valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		TLS struct {
			Secret struct {
				CABundle string `json:"caBundle"`
			} `json:"secret"`
		} `json:"tls"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range generated.FindAllStringSubmatch(manifest, -1) {
		if strings.TrimSpace(m[1]) != "caBundle:" {
			continue
		}
		n++
		if got, _ := base64.StdEncoding.DecodeString(m[2]); string(got) != v.TLS.Secret.CABundle {
			t.Errorf("caBundle %q, want the values' %q", got, v.TLS.Secret.CABundle)
		}
	}
	if n != 4 {
		t.Errorf("%d APIServices with a caBundle, want 4", n)
	}
}
