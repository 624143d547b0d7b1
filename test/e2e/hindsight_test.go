package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

var hindsightPods = append([]cluster.PodSpec{
	// No node and no scheduler: it stays Pending, and must have no metrics.
	{Name: "pending-0", Usage: cluster.Usage{CPU: "300m", Memory: "100Mi"}},
}, smokePods...)

// TestHindsight runs Hindsight as the cluster's metrics.k8s.io server (v1 and v1beta1) with
// no metrics-server registered, next to the metrics-server peer scraping the same kwok
// kubelets, and checks what users and the HPA see.
func TestHindsight(t *testing.T) {
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	createFleet(ctx, t, c, smokePods)
	pending := hindsightPods[0]
	if _, err := c.Client().CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pending.Name, Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "fake-image"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wantNodes, wantContainers := expectedUsage(smokePods)

	h, err := c.StartHindsight(ctx, cluster.HindsightOptions{Resolution: 10 * time.Second, Register: true})
	if err != nil {
		t.Fatal(err)
	}
	msrv, err := c.StartMetricsServer(ctx, cluster.MetricsServerOptions{Resolution: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	// kubectl top as users of Kubernetes 1.34 (metrics.k8s.io/v1beta1) and 1.37 (v1) run it;
	// -v=6 logs the URL of each request, which shows the version asked for.
	for _, kc := range []struct{ name, bin, version string }{
		{"1.34", c.Tools.Kubectl, "v1beta1"},
		{"1.37", c.Tools.Kubectl137, "v1"},
	} {
		top := func(ctx context.Context, args ...string) (string, error) {
			out, err := c.KubectlWith(ctx, kc.bin, append([]string{"top", "-v=6"}, args...)...)
			if err != nil {
				return "", err
			}
			var rows []string
			asked := false
			for _, line := range strings.Split(out, "\n") {
				switch {
				case strings.Contains(line, "/apis/metrics.k8s.io/"+kc.version+"/"):
					asked = true
				case strings.Contains(line, "/apis/metrics.k8s.io/"):
				case strings.Contains(line, "] "): // other klog lines
				default:
					rows = append(rows, line)
				}
			}
			if !asked {
				return "", fmt.Errorf("kubectl %s top %v did not ask for metrics.k8s.io/%s:\n%s", kc.name, args, kc.version, out)
			}
			return strings.Join(rows, "\n"), nil
		}
		t.Run("kubectl "+kc.name+" top nodes", func(t *testing.T) {
			var rows map[string]usage
			err := cluster.Poll(ctx, 2*time.Minute, time.Second, "kubectl top nodes to show every node", func(ctx context.Context) (bool, error) {
				out, err := top(ctx, "nodes", "--no-headers")
				if err != nil {
					return false, err
				}
				rows, err = parseTop(out, 0, 1, 3)
				return err == nil && len(rows) == len(wantNodes), err
			})
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range wantNodes {
				checkUsage(t, "node "+name, rows[name], want, 0.02)
			}
		})

		t.Run("kubectl "+kc.name+" top pods", func(t *testing.T) {
			var rows map[string]usage
			err := cluster.Poll(ctx, 2*time.Minute, time.Second, "kubectl top pods to show every container", func(ctx context.Context) (bool, error) {
				out, err := top(ctx, "pods", "-A", "--containers", "--no-headers")
				if err != nil {
					return false, err
				}
				rows, err = parseTop(out, 3, 3, 4, 0, 1, 2)
				return err == nil && len(rows) == len(wantContainers), err
			})
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range wantContainers {
				checkUsage(t, "container "+key, rows[key], want, 0.02)
			}
			if _, ok := rows["default/pending-0/app"]; ok {
				t.Error("pod pending-0 is not Running but has metrics")
			}
		})
	}

	for _, version := range []string{"v1", "v1beta1"} {
		t.Run("raw "+version, func(t *testing.T) {
			var nodes metricsv1beta1.NodeMetricsList // v1 has the same JSON shape
			out, err := c.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/"+version+"/nodes")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(out), &nodes); err != nil {
				t.Fatalf("decode %s: %v", out, err)
			}
			if nodes.APIVersion != "metrics.k8s.io/"+version || len(nodes.Items) != len(wantNodes) {
				t.Fatalf("got apiVersion %q with %d nodes, want %s with %d", nodes.APIVersion, len(nodes.Items), version, len(wantNodes))
			}
			for _, n := range nodes.Items {
				checkUsage(t, version+" node "+n.Name, usageOf(n.Usage), wantNodes[n.Name], 0.02)
				if n.Window.Duration < 5*time.Second || n.Window.Duration > 30*time.Second {
					t.Errorf("node %s: window %s, want about the 10s resolution", n.Name, n.Window.Duration)
				}
			}
			var pods metricsv1beta1.PodMetricsList
			out, err = c.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/"+version+"/namespaces/default/pods")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(out), &pods); err != nil {
				t.Fatalf("decode %s: %v", out, err)
			}
			for _, p := range pods.Items {
				if p.Namespace != "default" {
					t.Errorf("namespace default listed pod %s/%s", p.Namespace, p.Name)
				}
				if p.Name == "pending-0" {
					t.Error("pod pending-0 is not Running but has metrics")
				}
				for _, ctr := range p.Containers {
					checkUsage(t, version+" container "+p.Name+"/"+ctr.Name, usageOf(ctr.Usage), wantContainers["default/"+p.Name+"/"+ctr.Name], 0.02)
				}
			}
			if _, err := c.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/"+version+"/namespaces/default/pods/pending-0"); err == nil || !strings.Contains(err.Error(), "NotFound") {
				t.Errorf("get metrics of the pending pod: err = %v, want NotFound", err)
			}
		})
	}

	t.Run("agrees with metrics-server", func(t *testing.T) {
		token, err := readerToken(ctx, c, "kube-system", "metrics-comparer", true)
		if err != nil {
			t.Fatal(err)
		}
		hc, err := directClient(c, h.Port, token)
		if err != nil {
			t.Fatal(err)
		}
		mc, err := directClient(c, msrv.Port, token)
		if err != nil {
			t.Fatal(err)
		}
		// Both servers time a kwok sample by when they sent the request (kwok sends no
		// timestamps), so one window's rate carries that request's latency jitter, a few
		// percent on a loaded 2-core machine. Compare the medians of several windows.
		const windows = 5
		var hs, ms []map[string]usage
		hStart, mStart, tStart := procStats(t, h.Process), procStats(t, msrv.Process), time.Now()
		for i := range windows {
			var hn, hp, mn, mp map[string]usage
			err := cluster.Poll(ctx, 2*time.Minute, time.Second, "both servers to report every node and container", func(ctx context.Context) (bool, error) {
				var err error
				if hn, hp, err = snapshot(ctx, hc); err != nil {
					return false, err
				}
				if mn, mp, err = snapshot(ctx, mc); err != nil {
					return false, err
				}
				return len(hn) == len(wantNodes) && len(mn) == len(wantNodes) && len(hp) == len(wantContainers) && len(mp) == len(wantContainers), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			hs, ms = append(hs, merge(hn, hp)), append(ms, merge(mn, mp))
			if i < windows-1 {
				select { // the next window: both servers scrape every 10s
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				case <-time.After(10 * time.Second):
				}
			}
		}
		hEnd, mEnd, elapsed := procStats(t, h.Process), procStats(t, msrv.Process), time.Since(tStart)
		scrapes := elapsed.Seconds() / 10
		t.Logf("over %s (%.1f scrapes of 2 nodes): Hindsight %.1f ms CPU per scrape, RSS %.1f MiB; metrics-server %.1f ms CPU per scrape, RSS %.1f MiB (ratios %.2f CPU, %.2f RSS)",
			elapsed.Round(time.Second), scrapes,
			(hEnd.CPUSeconds-hStart.CPUSeconds)/scrapes*1000, float64(hEnd.RSSBytes)/(1<<20),
			(mEnd.CPUSeconds-mStart.CPUSeconds)/scrapes*1000, float64(mEnd.RSSBytes)/(1<<20),
			(hEnd.CPUSeconds-hStart.CPUSeconds)/max(mEnd.CPUSeconds-mStart.CPUSeconds, 0.01), float64(hEnd.RSSBytes)/float64(mEnd.RSSBytes))
		worstWindow := 0.0
		for i := range hs {
			for k, m := range ms[i] {
				worstWindow = max(worstWindow, relErr(hs[i][k].cpu, m.cpu))
			}
		}
		worstCPU, worstMem := 0.0, 0.0
		hm, mm := medians(hs), medians(ms)
		for k, m := range mm {
			h := hm[k]
			cpuErr, memDiff := relErr(h.cpu, m.cpu), math.Abs(h.mem-m.mem)
			worstCPU, worstMem = max(worstCPU, cpuErr), max(worstMem, memDiff)
			if cpuErr > 0.01 {
				t.Errorf("%s: Hindsight CPU %.6f, metrics-server %.6f (median of %d windows, %.2f%% apart, want ≤ 1%%)", k, h.cpu, m.cpu, windows, cpuErr*100)
			}
			if memDiff != 0 {
				t.Errorf("%s: Hindsight memory %.0f, metrics-server %.0f, want equal", k, h.mem, m.mem)
			}
		}
		t.Logf("Hindsight vs metrics-server over %d windows: median CPU differs by at most %.3f%% (single window: %.3f%%), memory by %.0f bytes",
			windows, worstCPU*100, worstWindow*100, worstMem)
	})

	t.Run("RBAC through aggregation", func(t *testing.T) {
		token, err := readerToken(ctx, c, "default", "no-rights", false)
		if err != nil {
			t.Fatal(err)
		}
		kc := filepath.Join(c.Dir, "kubeconfig", "no-rights.conf")
		if err := c.WriteTokenKubeconfig(kc, "no-rights", token); err != nil {
			t.Fatal(err)
		}
		out, err := c.Kubectl(ctx, "--kubeconfig", kc, "get", "--raw", "/apis/metrics.k8s.io/v1/nodes")
		if err == nil || !strings.Contains(strings.ToLower(out), "forbidden") {
			t.Errorf("a service account without RBAC read node metrics: err = %v, output %q; want forbidden", err, out)
		}
	})

	t.Run("anonymous direct", func(t *testing.T) {
		ca, err := c.PKI.CA()
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		for _, path := range []string{"/apis/metrics.k8s.io/v1/nodes", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", "/metrics"} {
			resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d%s", h.Port, path))
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("anonymous GET %s: %s, want 401 Unauthorized", path, resp.Status)
			}
		}
	})

	t.Run("HPA", func(t *testing.T) { testHPA(ctx, t, c) })
}

// testHPA runs a Deployment under an autoscaling/v2 HPA (CPU utilisation 50 % of a 100m
// request) and drives its usage up (200m: 4 replicas) and down (20m: back to 1).
func testHPA(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	if _, err := c.CreateDeployment(ctx, cluster.DeploymentSpec{
		Namespace: "hpa", Name: "load", Node: "kwok-a", Replicas: 1, Requests: req,
		Usage: cluster.Usage{CPU: "40m", Memory: "32Mi"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateHPA(ctx, cluster.HPASpec{Namespace: "hpa", Name: "load", MinReplicas: 1, MaxReplicas: 4, Utilization: 50}); err != nil {
		t.Fatal(err)
	}
	hpas := c.Client().AutoscalingV2().HorizontalPodAutoscalers("hpa")
	waitHPA := func(what string, timeout time.Duration, cond func(*autoscalingv2.HorizontalPodAutoscaler) bool) {
		t.Helper()
		start := time.Now()
		var last *autoscalingv2.HorizontalPodAutoscaler
		err := cluster.Poll(ctx, timeout, time.Second, what, func(ctx context.Context) (bool, error) {
			h, err := hpas.Get(ctx, "load", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			last = h
			return cond(h), nil
		})
		if err != nil {
			t.Fatalf("%v; last status %+v", err, last.Status)
		}
		t.Logf("%s after %s", what, time.Since(start).Round(time.Second))
	}
	utilisation := func(h *autoscalingv2.HorizontalPodAutoscaler) (int32, bool) {
		for _, m := range h.Status.CurrentMetrics {
			if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
				return *m.Resource.Current.AverageUtilization, true
			}
		}
		return 0, false
	}
	waitHPA("HPA to read 40% utilisation from Hindsight", 2*time.Minute, func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		u, ok := utilisation(h)
		return ok && u >= 38 && u <= 42 && h.Status.CurrentReplicas == 1
	})
	if err := c.SetDeploymentUsage(ctx, "hpa", "load", cluster.Usage{CPU: "200m", Memory: "32Mi"}); err != nil {
		t.Fatal(err)
	}
	waitHPA("HPA to scale up to 4", 4*time.Minute, func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		return h.Status.DesiredReplicas == 4 && h.Status.CurrentReplicas == 4
	})
	if err := c.SetDeploymentUsage(ctx, "hpa", "load", cluster.Usage{CPU: "20m", Memory: "32Mi"}); err != nil {
		t.Fatal(err)
	}
	waitHPA("HPA to scale back down to 1", 5*time.Minute, func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		return h.Status.DesiredReplicas == 1 && h.Status.CurrentReplicas == 1
	})
}

func usageOf(l corev1.ResourceList) usage {
	return usage{cpu: l.Cpu().AsApproximateFloat64(), mem: l.Memory().AsApproximateFloat64()}
}

// readerToken returns a token of a service account that may read metrics.k8s.io when
// allowed is true, and has no rights at all otherwise.
func readerToken(ctx context.Context, c *cluster.Cluster, ns, name string, allowed bool) (string, error) {
	token, err := c.ServiceAccountToken(ctx, ns, name)
	if err != nil || !allowed {
		return token, err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader:" + ns + ":" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:aggregated-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	if _, err := c.Client().RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("bind %s/%s: %w", ns, name, err)
	}
	return token, nil
}

// directClient talks to a metrics server on its own port, bypassing the aggregator, with a
// bearer token (delegated authentication works the same there).
func directClient(c *cluster.Cluster, port int, token string) (*metricsclient.Clientset, error) {
	ca, err := c.PKI.CA()
	if err != nil {
		return nil, err
	}
	return metricsclient.NewForConfig(&rest.Config{
		Host:            fmt.Sprintf("https://127.0.0.1:%d", port),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
	})
}

// snapshot lists node and container usage through metrics.k8s.io/v1beta1.
func snapshot(ctx context.Context, mc *metricsclient.Clientset) (nodes, containers map[string]usage, err error) {
	nl, err := mc.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, err
	}
	pl, err := mc.MetricsV1beta1().PodMetricses("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, err
	}
	nodes, containers = map[string]usage{}, map[string]usage{}
	for _, n := range nl.Items {
		nodes[n.Name] = usageOf(n.Usage)
	}
	for _, p := range pl.Items {
		for _, ctr := range p.Containers {
			containers[p.Namespace+"/"+p.Name+"/"+ctr.Name] = usageOf(ctr.Usage)
		}
	}
	return nodes, containers, nil
}

func merge(nodes, containers map[string]usage) map[string]usage {
	m := make(map[string]usage, len(nodes)+len(containers))
	for k, v := range nodes {
		m["node "+k] = v
	}
	for k, v := range containers {
		m["container "+k] = v
	}
	return m
}

// medians returns, per key, the median CPU and the median memory over the snapshots.
func medians(snaps []map[string]usage) map[string]usage {
	out := map[string]usage{}
	for k := range snaps[0] {
		var cpu, mem []float64
		for _, s := range snaps {
			cpu, mem = append(cpu, s[k].cpu), append(mem, s[k].mem)
		}
		out[k] = usage{cpu: median(cpu), mem: median(mem)}
	}
	return out
}

func median(v []float64) float64 {
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func procStats(t *testing.T, p *cluster.Process) cluster.ProcStats {
	t.Helper()
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
