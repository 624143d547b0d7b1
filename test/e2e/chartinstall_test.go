package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	stdcsv "encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// TestChartInstall runs Hindsight out of the cluster as exactly what the chart installs
// with its default values: the chart's ServiceAccount (its token is Hindsight's only
// credential), the chart's RBAC, the chart's APIServices with the chart's caBundle, and the
// serving certificate the chart made. Only the APIServices' port differs (Hindsight's local
// port), and the chart's Service is the harness's ExternalName route to 127.0.0.1 of the
// same name. kubectl top, an HPA, history and PromQL through the kube-apiserver work.
func TestChartInstall(t *testing.T) {
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	manifest, err := renderChart(t, c.Tools, "default")
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeManifest(t, manifest)

	// The Service the APIServices name, routed to 127.0.0.1 as the harness does it.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hindsight", Namespace: chartNamespace},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost"},
	}
	if _, err := c.Client().CoreV1().Services(chartNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var identity, apiServices []*unstructured.Unstructured
	var serving *unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			identity = append(identity, o)
		case "APIService":
			apiServices = append(apiServices, o)
		case "Secret":
			serving = o
		}
	}
	if len(apiServices) != 4 || serving == nil {
		t.Fatalf("the chart rendered %d APIServices and secret %v, want 4 and the serving certificate", len(apiServices), serving)
	}
	applyObjects(ctx, t, c, dir, "rbac", identity)
	var files [2]string
	for i, key := range []string{"tls.crt", "tls.key"} {
		b64, _, _ := unstructured.NestedString(serving.Object, "data", key)
		data, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(data) == 0 {
			t.Fatalf("the chart's Secret %s: %q, %v", key, b64, err)
		}
		files[i] = filepath.Join(dir, key)
		if err := os.WriteFile(files[i], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	token, err := c.ServiceAccountToken(ctx, chartNamespace, "hindsight")
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(dir, "hindsight-sa.conf")
	if err := c.WriteTokenKubeconfig(kc, "system:serviceaccount:kube-system:hindsight", token); err != nil {
		t.Fatal(err)
	}

	createFleet(ctx, t, c, smokePods)
	if _, err := c.CreateDeployment(ctx, cluster.DeploymentSpec{
		Namespace: "hpa", Name: "steady", Node: "kwok-a", Replicas: 2,
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
		Usage:    cluster.Usage{CPU: "40m", Memory: "32Mi"},
	}); err != nil {
		t.Fatal(err)
	}
	h, err := c.StartHindsight(ctx, cluster.HindsightOptions{Kubeconfig: kc, ServingCert: files[0], ServingKey: files[1]})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range apiServices {
		if err := unstructured.SetNestedField(o.Object, int64(h.Port), "spec", "service", "port"); err != nil {
			t.Fatal(err)
		}
		if skip, _, _ := unstructured.NestedBool(o.Object, "spec", "insecureSkipTLSVerify"); skip {
			t.Fatalf("APIService %s skips TLS verification", o.GetName())
		}
	}
	applyObjects(ctx, t, c, dir, "apiservices", apiServices)
	for _, o := range apiServices {
		if err := c.WaitAPIServiceAvailable(ctx, o.GetName(), time.Minute); err != nil {
			t.Fatal(err)
		}
	}

	// kubectl top, once the first window is in.
	_, wantContainers := expectedUsage(smokePods)
	var rows map[string]usage
	err = cluster.Poll(ctx, 2*time.Minute, time.Second, "kubectl top pods through the chart's APIServices", func(ctx context.Context) (bool, error) {
		out, err := c.Kubectl(ctx, "top", "pods", "-A", "--containers", "--no-headers")
		if err != nil {
			return false, nil
		}
		if rows, err = parseTop(out, 3, 3, 4, 0, 1, 2); err != nil {
			return false, err
		}
		for key := range wantContainers {
			if _, ok := rows[key]; !ok {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range wantContainers {
		checkUsage(t, "chart install: container "+key, rows[key], want, 0.02)
	}
	if out, err := c.Kubectl(ctx, "top", "nodes", "--no-headers"); err != nil || strings.Count(out, "kwok-") < 2 {
		t.Errorf("kubectl top nodes: %v: %s", err, out)
	}

	// An HPA reads utilisation.
	hpas := c.Client().AutoscalingV2().HorizontalPodAutoscalers("hpa")
	if _, err := c.CreateHPA(ctx, cluster.HPASpec{Namespace: "hpa", Name: "steady", MinReplicas: 2, MaxReplicas: 4, Utilization: 50}); err != nil {
		t.Fatal(err)
	}
	err = cluster.Poll(ctx, 2*time.Minute, time.Second, "the HPA to read 40% utilisation", func(ctx context.Context) (bool, error) {
		h, err := hpas.Get(ctx, "steady", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, m := range h.Status.CurrentMetrics {
			if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
				u := *m.Resource.Current.AverageUtilization
				return u >= 38 && u <= 42, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// History and PromQL through the kube-apiserver.
	csv, err := c.Kubectl(ctx, "get", "--raw", "/apis/history.hindsight.dev/v1/namespaces/hpa/deployments/steady?start=-10m&format=csv&resource=cpu")
	if err != nil {
		t.Fatalf("history of hpa/steady through the kube-apiserver: %v: %.400s", err, csv)
	}
	records, err := stdcsv.NewReader(strings.NewReader(csv)).ReadAll()
	if err != nil || len(records) < 2 {
		t.Fatalf("history of hpa/steady: %v: %.400s", err, csv)
	}
	value := slices.Index(records[0], "value")
	measured := 0
	for _, rec := range records[1:] {
		if value >= 0 && rec[value] != "" {
			measured++
		}
	}
	if measured == 0 {
		t.Errorf("history of hpa/steady through the kube-apiserver: no measured point in %d rows: %.400s", len(records)-1, csv)
	}
	prom, err := c.Kubectl(ctx, "get", "--raw", "/apis/prometheus.hindsight.dev/v1/namespaces/hpa/api/v1/query?query=count(container_memory_working_set_bytes)")
	if err != nil || !strings.Contains(prom, `"status":"success"`) || !strings.Contains(prom, `"2"]`) {
		t.Errorf("PromQL through the kube-apiserver: %v: %.400s", err, prom)
	}
	t.Logf("chart install: %d RBAC objects and %d APIServices from the chart; kubectl top, the HPA, history (%d of %d CSV rows measured) and PromQL served",
		len(identity), len(apiServices), measured, len(records)-1)
}

// decodeManifest splits a multi-document YAML manifest into objects.
func decodeManifest(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	rd := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// applyObjects applies objs with kubectl apply --server-side.
func applyObjects(ctx context.Context, t *testing.T, c *cluster.Cluster, dir, name string, objs []*unstructured.Unstructured) {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	f := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(f, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "apply", "--server-side", "--field-manager=helm", "-f", f); err != nil {
		t.Fatalf("apply the chart's %s: %v: %s", name, err, out)
	}
}
