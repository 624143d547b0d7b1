package e2e

import (
	"context"
	stdcsv "encoding/csv"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
	dir := t.TempDir()
	ci, err := c.InstallChart(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ci.APIServices) != 4 {
		t.Fatalf("the chart rendered %d APIServices, want 4", len(ci.APIServices))
	}
	for _, o := range ci.APIServices {
		if skip, _, _ := unstructured.NestedBool(o.Object, "spec", "insecureSkipTLSVerify"); skip {
			t.Fatalf("APIService %s skips TLS verification", o.GetName())
		}
	}

	createFleet(ctx, t, c, smokePods)
	if _, err := c.CreateDeployment(ctx, cluster.DeploymentSpec{
		Namespace: "hpa", Name: "steady", Node: "kwok-a", Replicas: 2,
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
		Usage:    cluster.Usage{CPU: "40m", Memory: "32Mi"},
	}); err != nil {
		t.Fatal(err)
	}
	h, err := c.StartHindsight(ctx, cluster.HindsightOptions{Kubeconfig: ci.Kubeconfig, ServingCert: ci.ServingCert, ServingKey: ci.ServingKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterChart(ctx, ci, dir, h.Port); err != nil {
		t.Fatal(err)
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
		len(ci.RBAC), len(ci.APIServices), measured, len(records)-1)
}
