package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// Greedy clients: how many, and how slowly they read.
const (
	greedyHistoryClients = 24 // heavy /history/v1 queries
	greedyPromClients    = 8  // heavy PromQL range queries
	greedyReadBytes      = 4 << 10
	greedyReadEvery      = 50 * time.Millisecond // 80 KiB/s per client
	greedySamples        = 200                   // latency samples per phase and API
	greedyWidePods       = 90                    // per kwok node, in the greedy clients' namespace
)

// TestGreedyClients: dozens of namespace-scoped clients send heavy history and PromQL
// queries over a namespace of some 180 pods, all reading their responses slowly, while
// an HPA scales and kubectl top's list runs: the metrics.k8s.io latency (through the
// aggregator, as kubectl top and the HPA read it) stays within 2× of the unloaded figure
// measured in the same test, before and after the load, and the HPA scales. The clients
// do as HTTP clients do with a 429: they wait its Retry-After before they ask again.
func TestGreedyClients(t *testing.T) {
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	createFleet(ctx, t, c, smokePods)
	for _, node := range []string{"kwok-a", "kwok-b"} {
		if _, err := c.CreateDeployment(ctx, cluster.DeploymentSpec{
			Name: "wide-" + node, Node: node, Replicas: greedyWidePods, Usage: cluster.Usage{CPU: "10m", Memory: "16Mi"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	pods := len(smokePods) + 2*greedyWidePods
	h, err := c.StartHindsight(ctx, cluster.HindsightOptions{Resolution: 10 * time.Second, Register: true})
	if err != nil {
		t.Fatal(err)
	}
	// Through the aggregator, as kubectl top and the HPA read, and without client-go's
	// client-side rate limit: at the harness's 100 requests/s the limiter's waits, not the
	// servers, would set the latency of reads made back to back.
	cfg := c.RESTConfig()
	cfg.QPS = -1
	mc, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := firstAnswer(ctx, mc, pods, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := createLoad(ctx, c); err != nil {
		t.Fatal(err)
	}

	// The kubectl top list (every pod) and the HPA's read (the pods of one namespace).
	reads := map[string]func(context.Context) error{
		"top": func(ctx context.Context) error {
			_, err := mc.MetricsV1beta1().PodMetricses("").List(ctx, metav1.ListOptions{})
			return err
		},
		"hpa": func(ctx context.Context) error {
			_, err := mc.MetricsV1beta1().PodMetricses("hpa").List(ctx, metav1.ListOptions{})
			return err
		},
	}
	// measure returns n latencies (ms) of each read, taken in turn.
	measure := func(phase string, n int) map[string][]float64 {
		out := map[string][]float64{}
		for range n {
			for name, read := range reads {
				start := time.Now()
				if err := read(ctx); err != nil {
					t.Fatalf("%s %s: %v", phase, name, err)
				}
				out[name] = append(out[name], float64(time.Since(start).Microseconds())/1000)
			}
		}
		for name, ms := range out {
			t.Logf("%s %s: p50 %.1f ms, p95 %.1f ms", phase, name, percentile(ms, 0.5), percentile(ms, 0.95))
		}
		return out
	}
	before := measure("unloaded before", greedySamples)

	// The greedy clients.
	clients, err := greedyClients(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now().Add(-3 * time.Hour).UTC().Format(time.RFC3339)
	historyPath := "/history/v1/namespaces/default/pods?resource=cpu,memory&step=1s&start=" + from
	promPath := fmt.Sprintf("/prometheus/api/v1/query_range?query=%s&start=%d&end=%d&step=1",
		url.QueryEscape(`rate(container_cpu_usage_seconds_total{namespace="default"}[1m])`), time.Now().Add(-3*time.Hour).Unix(), time.Now().Unix())
	var statuses sync.Map // status → *atomic.Int64
	count := func(key string) {
		v, _ := statuses.LoadOrStore(key, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, hc := range clients {
		path := historyPath
		if i >= greedyHistoryClients {
			path = promPath
		}
		wg.Go(func() {
			for loadCtx.Err() == nil {
				status, retryAfter := slowGet(loadCtx, hc, fmt.Sprintf("https://127.0.0.1:%d%s", h.Port, path))
				count(status)
				select { // a client's back-off, not synchronisation
				case <-loadCtx.Done():
				case <-time.After(retryAfter):
				}
			}
		})
	}
	// Load is on once the first responses are being read.
	answered := func(key string) bool {
		v, ok := statuses.Load(key)
		return ok && v.(*atomic.Int64).Load() > 0
	}
	if err := cluster.Poll(ctx, time.Minute, 100*time.Millisecond, "greedy clients to get answers", func(context.Context) (bool, error) {
		return answered("200") || answered("429"), nil
	}); err != nil {
		t.Fatal(err)
	}

	// The HPA scales while the load runs.
	hpaDone := make(chan error, 1)
	go func() { hpaDone <- scaleUp(ctx, c) }()
	loaded := measure("loaded", 2*greedySamples)
	if err := <-hpaDone; err != nil {
		t.Errorf("HPA under load: %v", err)
	}
	stopLoad()
	wg.Wait()
	// The baseline brackets the load: as many samples again once Hindsight is idle, so that
	// the control plane's own drift over the test (the fleet settling at the start, say)
	// weighs on both sides of the ratio.
	if err := waitIdle(ctx, h.PID()); err != nil {
		t.Fatal(err)
	}
	after := measure("unloaded after", greedySamples)
	statuses.Range(func(k, v any) bool {
		t.Logf("greedy responses %s: %d", k, v.(*atomic.Int64).Load())
		return true
	})
	for name := range reads {
		unloaded := append(before[name], after[name]...)
		for _, q := range []float64{0.5, 0.95} {
			l, u := percentile(loaded[name], q), percentile(unloaded, q)
			t.Logf("%s p%.0f loaded/unloaded: %.2f (%.1f ms / %.1f ms)", name, 100*q, l/u, l, u)
			if l/u > 2 {
				t.Errorf("%s p%.0f under greedy clients is %.2f× the unloaded figure, want at most 2×", name, 100*q, l/u)
			}
		}
	}
}

// waitIdle waits until the process pid has used less than a tenth of a CPU over half a
// second (its utime and stime in /proc): the greedy queries it was still computing for
// clients that left have ended.
func waitIdle(ctx context.Context, pid int) error {
	last, err := procCPU(pid)
	if err != nil {
		return err
	}
	lastAt := time.Now()
	return cluster.Poll(ctx, time.Minute, 500*time.Millisecond, "hindsight to go idle", func(context.Context) (bool, error) {
		if time.Since(lastAt) < 400*time.Millisecond {
			return false, nil // Poll's first call: nothing to compare yet
		}
		now, err := procCPU(pid)
		if err != nil {
			return false, err
		}
		used, over := now-last, time.Since(lastAt)
		last, lastAt = now, time.Now()
		return used*10 < over, nil
	})
}

// procCPU returns the CPU time process pid has used (utime and stime in /proc/pid/stat).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may hold spaces:
	// utime and stime are fields 14 and 15 of the line (clock ticks, 100 per second).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// greedyClients returns the HTTP clients of the greedy users: service accounts that may
// read pod metrics in the namespace default only.
func greedyClients(ctx context.Context, c *cluster.Cluster) ([]*http.Client, error) {
	var out []*http.Client
	for i := range greedyHistoryClients + greedyPromClients {
		name := fmt.Sprintf("greedy-%d", i)
		token, err := readerToken(ctx, c, "default", name, false)
		if err != nil {
			return nil, err
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:aggregated-metrics-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: "default"}},
		}
		if _, err := c.Client().RbacV1().RoleBindings("default").Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("bind %s: %w", name, err)
		}
		hc, err := tokenHTTP(c, token)
		if err != nil {
			return nil, err
		}
		hc.Timeout = time.Minute
		out = append(out, hc)
	}
	return out, nil
}

// slowGet gets url and reads the body greedyReadBytes every greedyReadEvery; it returns
// the status (or the error's kind), for counting, and how long to wait before the next
// request: a 429's Retry-After (whole seconds), else nothing.
func slowGet(ctx context.Context, hc *http.Client, url string) (string, time.Duration) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "request error", 0
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "stopped", 0
		}
		return "transport error", 0
	}
	defer resp.Body.Close()
	var retryAfter time.Duration
	if resp.StatusCode == http.StatusTooManyRequests {
		s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || s < 0 {
			return "429 without a Retry-After", 0
		}
		retryAfter = time.Duration(s) * time.Second
	}
	return readSlowly(ctx, resp), retryAfter
}

// readSlowly reads resp's body greedyReadBytes every greedyReadEvery and returns its
// status, or how reading ended when it did not reach the end.
func readSlowly(ctx context.Context, resp *http.Response) string {
	tick := time.NewTicker(greedyReadEvery)
	defer tick.Stop()
	buf := make([]byte, greedyReadBytes)
	for {
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Sprint(resp.StatusCode)
			}
			if ctx.Err() != nil {
				return "stopped"
			}
			return fmt.Sprintf("%d cut off", resp.StatusCode)
		}
		select {
		case <-ctx.Done():
			return "stopped"
		case <-tick.C:
		}
	}
}

// createLoad creates the Deployment hpa/load of scaleUp: one replica at 40 % of its CPU
// request.
func createLoad(ctx context.Context, c *cluster.Cluster) error {
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	_, err := c.CreateDeployment(ctx, cluster.DeploymentSpec{
		Namespace: "hpa", Name: "load", Node: "kwok-a", Replicas: 1, Requests: req,
		Usage: cluster.Usage{CPU: "40m", Memory: "32Mi"},
	})
	return err
}

// scaleUp is the short HPA scenario on createLoad's Deployment: a utilisation read, then
// 200 %: 4 replicas.
func scaleUp(ctx context.Context, c *cluster.Cluster) error {
	hpas := c.Client().AutoscalingV2().HorizontalPodAutoscalers("hpa")
	if _, err := c.CreateHPA(ctx, cluster.HPASpec{Namespace: "hpa", Name: "load", MinReplicas: 1, MaxReplicas: 4, Utilization: 50}); err != nil {
		return err
	}
	waitHPA := func(what string, timeout time.Duration, cond func(*autoscalingv2.HorizontalPodAutoscaler) bool) error {
		return cluster.Poll(ctx, timeout, time.Second, what, func(ctx context.Context) (bool, error) {
			h, err := hpas.Get(ctx, "load", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return cond(h), nil
		})
	}
	if err := waitHPA("HPA to read a utilisation", 2*time.Minute, func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		for _, m := range h.Status.CurrentMetrics {
			if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
				return true
			}
		}
		return false
	}); err != nil {
		return err
	}
	if err := c.SetDeploymentUsage(ctx, "hpa", "load", cluster.Usage{CPU: "200m", Memory: "32Mi"}); err != nil {
		return err
	}
	return waitHPA("HPA to scale up to 4", 4*time.Minute, func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		return h.Status.DesiredReplicas == 4
	})
}
