package e2e

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/hindsight-metrics/hindsight/test/cluster"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// TestRestartServesAtOnce migrates an HPA from metrics-server to Hindsight, counting its
// missing-metrics events across the takeover, then restarts Hindsight while the HPA
// watches a Deployment and measures how soon the new process serves pod metrics again, next to metrics-server restarted on the
// same cluster with the same resolution. Hindsight rebuilds the current window from the
// points it stored, so it needs no fresh scrapes; metrics-server needs two.
func TestRestartServesAtOnce(t *testing.T) {
	const hpaSync = 5 * time.Second
	c := cluster.New(t, cluster.Options{HPASyncPeriod: hpaSync})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	createFleet(ctx, t, c, smokePods)
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
	if _, err := c.CreateDeployment(ctx, cluster.DeploymentSpec{
		Namespace: "hpa", Name: "steady", Node: "kwok-a", Replicas: 2, Requests: req,
		Usage: cluster.Usage{CPU: "40m", Memory: "32Mi"},
	}); err != nil {
		t.Fatal(err)
	}
	_, wantContainers := expectedUsage(smokePods)
	wantPods := len(smokePods) + 2 // and the Deployment's two

	const resolution = 10 * time.Second
	token, err := readerToken(ctx, c, "kube-system", "restart-watcher", true)
	if err != nil {
		t.Fatal(err)
	}

	// Migration, as docs/install.md has it: the HPA scales on metrics-server; Hindsight is
	// started beside it, takes metrics.k8s.io over (the APIService updated in place) once it
	// serves every pod, and metrics-server goes. The HPA starts once metrics-server serves,
	// so that any missing-metrics event below comes from the switch or the restarts.
	ms0, err := c.StartMetricsServer(ctx, cluster.MetricsServerOptions{Resolution: resolution, Register: true})
	if err != nil {
		t.Fatal(err)
	}
	mc0, err := directClient(c, ms0.Port, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := firstAnswer(ctx, mc0, wantPods, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	hpas := c.Client().AutoscalingV2().HorizontalPodAutoscalers("hpa")
	if _, err := c.CreateHPA(ctx, cluster.HPASpec{Namespace: "hpa", Name: "steady", MinReplicas: 2, MaxReplicas: 4, Utilization: 50}); err != nil {
		t.Fatal(err)
	}
	err = cluster.Poll(ctx, 2*time.Minute, time.Second, "the HPA to read utilisation from metrics-server", func(ctx context.Context) (bool, error) {
		h, err := hpas.Get(ctx, "steady", metav1.GetOptions{})
		return err == nil && len(h.Status.CurrentMetrics) > 0, err
	})
	if err != nil {
		t.Fatal(err)
	}
	before := missingMetricsEvents(ctx, t, c)
	h, hc := startHindsight(ctx, t, c, cluster.HindsightOptions{Resolution: resolution}, wantPods-len(smokePods))
	if err := c.RegisterAPIService(ctx, "hindsight", h.Port, "metrics.k8s.io", "v1beta1", "v1"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1beta1", "v1"} {
		if err := c.WaitAPIServiceAvailable(ctx, v+".metrics.k8s.io", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := ms0.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Three HPA syncs on Hindsight alone; a missed switch would show as a missing metric.
	wait(ctx, t, 3*hpaSync)
	if _, err := c.Kubectl(ctx, "top", "pods", "-n", "hpa"); err != nil {
		t.Fatalf("kubectl top after the takeover, metrics-server stopped: %v", err)
	}
	migration := missingMetricsEvents(ctx, t, c) - before
	t.Logf("migration from metrics-server: %d missing-metrics HPA events across the takeover (%d before it)", migration, before)
	if migration != 0 {
		t.Errorf("migration: %d missing-metrics HPA events across the takeover, want 0", migration)
	}

	// Let the stored window age a little, as it would in a rollout.
	wait(ctx, t, resolution/2)

	for round := 1; round <= 2; round++ {
		if err := h.Stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		restartedAt := time.Now()
		if err := c.RestartHindsight(ctx, h); err != nil {
			t.Fatal(err)
		}
		if _, err := firstAnswer(ctx, hc, wantPods, time.Minute); err != nil {
			t.Fatal(err)
		}
		took := time.Since(restartedAt) // from just before the process was started
		t.Logf("restart %d: Hindsight answered with every pod %s after its process started", round, took.Round(10*time.Millisecond))
		if took > 2*time.Second {
			t.Errorf("restart %d: first complete answer %s after start, want ≤ 2s", round, took)
		}
		// Through the aggregator, as users and the HPA reach it. For about 0.1 s after the
		// start, Hindsight's front-proxy authentication is not ready and the aggregator gets a
		// 401 (seen in kube-apiserver's availability check too), so poll rather than ask once.
		var rows map[string]usage
		err = cluster.Poll(ctx, 5*time.Second, 50*time.Millisecond, "kubectl top pods after the restart", func(ctx context.Context) (bool, error) {
			out, err := c.Kubectl(ctx, "top", "pods", "-A", "--containers", "--no-headers")
			if err != nil {
				return false, err
			}
			rows, err = parseTop(out, 3, 3, 4, 0, 1, 2)
			return err == nil && len(rows) >= len(wantContainers), err
		})
		if err != nil {
			t.Fatal(err)
		}
		topTook := time.Since(restartedAt)
		t.Logf("restart %d: kubectl top pods answered %s after the process started", round, topTook.Round(10*time.Millisecond))
		if topTook > 2*time.Second {
			t.Errorf("restart %d: kubectl top pods answered %s after start, want ≤ 2s", round, topTook)
		}
		for key, want := range wantContainers {
			checkUsage(t, "after restart: container "+key, rows[key], want, 0.02)
		}
		wait(ctx, t, resolution+resolution/2) // let the HPA sync against the new process
	}

	// The same for metrics-server, on its own port.
	ms, err := c.StartMetricsServer(ctx, cluster.MetricsServerOptions{Resolution: resolution})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := directClient(c, ms.Port, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := firstAnswer(ctx, mc, wantPods, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := ms.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	msStart := time.Now()
	ms2, err := c.StartMetricsServer(ctx, cluster.MetricsServerOptions{Resolution: resolution})
	if err != nil {
		t.Fatal(err)
	}
	mc2, err := directClient(c, ms2.Port, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := firstAnswer(ctx, mc2, wantPods, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("metrics-server answered with every pod %s after its process started (resolution %s)", time.Since(msStart).Round(10*time.Millisecond), resolution)

	// The catalog, fed from the informers across the restarts, knows the Deployment's pods
	// with their owner and requests.
	if err := h.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Open(filepath.Join(h.StorageDir, "catalog.db"), catalog.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	recs, err := cat.PodsByOwner("hpa", "Deployment", "steady", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 2 {
		t.Errorf("catalog has %d pods of Deployment hpa/steady, want at least 2", len(recs))
	}
	for _, r := range recs {
		if r.Owner != (catalog.Owner{Kind: "Deployment", Name: "steady"}) || r.Controller.Kind != "ReplicaSet" {
			t.Errorf("pod %s: owner %v via %v, want Deployment/steady via a ReplicaSet", r.Name, r.Owner, r.Controller)
		}
		// status.qosClass, which the kube-apiserver sets on every pod it creates.
		if r.QoSClass != "Burstable" {
			t.Errorf("pod %s: QoS class %q, want Burstable (a 100m request without limits)", r.Name, r.QoSClass)
		}
		if len(r.Containers) != 1 || r.Containers[0].Requests["cpu"] != 100 {
			t.Errorf("pod %s: containers %+v, want one requesting 100m CPU", r.Name, r.Containers)
		}
	}

	if n := missingMetricsEvents(ctx, t, c) - before; n != 0 {
		t.Errorf("%d missing-metrics HPA events across the takeover and the restarts, want 0", n)
	}
}

// missingMetricsEvents counts the missing-metrics events of the HPA hpa/steady (each event's
// count), logging each.
func missingMetricsEvents(ctx context.Context, t *testing.T, c *cluster.Cluster) int {
	t.Helper()
	events, err := c.Client().CoreV1().Events("hpa").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=steady,involvedObject.kind=HorizontalPodAutoscaler"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events.Items {
		msg := strings.ToLower(e.Message)
		if strings.Contains(msg, "no metrics returned") || strings.Contains(msg, "did not receive metrics") {
			t.Logf("HPA event: %s: %s (x%d)", e.Reason, e.Message, e.Count)
			n += int(max(e.Count, 1))
		}
	}
	return n
}

// startHindsight starts Hindsight and waits until it serves every pod of smokePods (and
// want more) through a client that reads metrics.k8s.io with a ServiceAccount token
// straight from Hindsight's port.
func startHindsight(ctx context.Context, t *testing.T, c *cluster.Cluster, o cluster.HindsightOptions, extraPods int) (*cluster.Hindsight, *metricsclient.Clientset) {
	t.Helper()
	h, err := c.StartHindsight(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	token, err := readerToken(ctx, c, "kube-system", "e2e-reader", true)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := directClient(c, h.Port, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := firstAnswer(ctx, hc, len(smokePods)+extraPods, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	return h, hc
}

// firstAnswer polls a metrics server until it lists at least want pods with metrics and
// returns how long that took.
func firstAnswer(ctx context.Context, mc *metricsclient.Clientset, want int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := cluster.Poll(ctx, timeout, 20*time.Millisecond, "pod metrics for every pod", func(ctx context.Context) (bool, error) {
		l, err := mc.MetricsV1beta1().PodMetricses("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil // not serving yet
		}
		return len(l.Items) >= want, nil
	})
	return time.Since(start), err
}

func wait(ctx context.Context, t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	case <-time.After(d):
	}
}
