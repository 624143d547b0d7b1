package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", filepath.Join("_output", "demo"), "directory for the cluster's PKI, kubeconfigs, data and logs (wiped at start)")
	nodes := fs.Int("nodes", 3, "number of simulated (kwok) nodes")
	resolution := fs.Duration("metric-resolution", 15*time.Second, "scrape interval of the metrics server")
	peer := fs.Bool("metrics-server", false, "serve metrics.k8s.io with the metrics-server peer instead of Hindsight")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nodes < 1 || *nodes > 50 {
		return fmt.Errorf("--nodes must be between 1 and 50, got %d", *nodes)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fmt.Errorf("resolve --dir: %w", err)
	}
	if err := os.RemoveAll(abs); err != nil {
		return fmt.Errorf("clean %s: %w", abs, err)
	}

	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Dir: abs, Progress: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\ndemo: stopping every process the demo started ...")
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return
		}
		fmt.Println("demo: stopped; logs are in", filepath.Join(abs, "logs"))
	}()

	if err := populate(ctx, c, *nodes); err != nil {
		return err
	}
	binDir := filepath.Join(abs, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("create bin dir: %w", err)
	}
	if err := os.Symlink(c.Tools.Kubectl, filepath.Join(binDir, "kubectl")); err != nil {
		return fmt.Errorf("link kubectl: %w", err)
	}
	var server, history string
	if *peer {
		ms, err := c.StartMetricsServer(ctx, cluster.MetricsServerOptions{Resolution: *resolution, Register: true})
		if err != nil {
			return err
		}
		server = fmt.Sprintf("the metrics-server %s peer (pid %d, https://127.0.0.1:%d)", cluster.MetricsServerVersion, ms.PID(), ms.Port)
	} else {
		// Registered with what the Helm chart installs: its ServiceAccount (whose token is
		// Hindsight's credential), its RBAC, its APIServices with their caBundle, and the
		// serving certificate it made.
		fmt.Println("demo: rendering the Helm chart, building and starting Hindsight as its ServiceAccount ...")
		chartDir := filepath.Join(abs, "chart")
		ci, err := c.InstallChart(ctx, chartDir)
		if err != nil {
			return err
		}
		h, err := c.StartHindsight(ctx, cluster.HindsightOptions{Resolution: *resolution,
			Kubeconfig: ci.Kubeconfig, ServingCert: ci.ServingCert, ServingKey: ci.ServingKey})
		if err != nil {
			return err
		}
		if err := c.RegisterChart(ctx, ci, chartDir, h.Port); err != nil {
			return err
		}
		server = fmt.Sprintf("Hindsight (pid %d, https://127.0.0.1:%d, data in %s, log in %s)", h.PID(), h.Port, h.StorageDir, filepath.Join(abs, "logs", "hindsight.log"))
		history = historyHelp(h.Port)
	}
	fmt.Printf(`
demo: ready in %s. metrics.k8s.io (v1 and v1beta1) is served by %s.
      (Hindsight also serves history.hindsight.dev and prometheus.hindsight.dev.)
      In another terminal:

  export KUBECONFIG=%s PATH=%s:$PATH
  kubectl top nodes                    # numbers after the first scrapes (%s apart)
  kubectl top pods -A --containers
  kubectl get --raw /apis/metrics.k8s.io/v1/namespaces/batch/pods | head -c 600
  kubectl get hpa -n shop -w           # web's CPU jumps from 60%% to 180%% of its request every 90s
%s
Press Ctrl-C to stop everything.
`, time.Since(start).Round(time.Second), server, c.Kubeconfig(), binDir, *resolution, history)

	varyUsage(ctx, c)
	return nil
}

// populate creates the simulated fleet: nodes in two zones, three Deployments in namespace
// shop (one under an HPA), and batch pods whose usage varyUsage changes.
func populate(ctx context.Context, c *cluster.Cluster, nodes int) error {
	for i := range nodes {
		zone := []string{"zone-a", "zone-b"}[i%2]
		if _, err := c.CreateNode(ctx, cluster.NodeSpec{Name: fmt.Sprintf("kwok-node-%d", i), Labels: map[string]string{
			"topology.kubernetes.io/zone": zone, "node.kubernetes.io/instance-type": "kwok.large",
		}}); err != nil {
			return err
		}
	}
	node := func(i int) string { return fmt.Sprintf("kwok-node-%d", i%nodes) }
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}
	for i, d := range []cluster.DeploymentSpec{
		{Name: "web", Replicas: 1, Usage: cluster.Usage{CPU: "60m", Memory: "96Mi"}},
		{Name: "api", Replicas: 2, Usage: cluster.Usage{CPU: "80m", Memory: "200Mi"}},
		{Name: "cache", Replicas: 1, Usage: cluster.Usage{CPU: "30m", Memory: "900Mi"}},
	} {
		d.Namespace, d.Node, d.Requests = "shop", node(i), req
		if _, err := c.CreateDeployment(ctx, d); err != nil {
			return err
		}
	}
	if _, err := c.CreateHPA(ctx, cluster.HPASpec{Namespace: "shop", Name: "web", MinReplicas: 1, MaxReplicas: 5, Utilization: 80}); err != nil {
		return err
	}
	for i := range 3 {
		if _, err := c.CreatePod(ctx, cluster.PodSpec{
			Namespace: "batch", Name: fmt.Sprintf("cruncher-%d", i), Node: node(i + 1),
			Containers: []string{"main", "log-shipper"}, Labels: map[string]string{"app": "cruncher"},
			Usage: cluster.Usage{CPU: "200m", Memory: "256Mi"}, Requests: req,
		}); err != nil {
			return err
		}
	}
	return nil
}

// varyUsage changes the simulated usage every 30 seconds until ctx ends: the crunchers
// follow a sine wave, and web's pods alternate every 90 seconds between 60m (60 % of their
// request) and 180m, which the HPA answers by scaling web out and back in. Pods are patched
// directly, not through web's template, so that no rollout replaces them.
func varyUsage(ctx context.Context, c *cluster.Cluster) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for step := 1; ; step++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i := range 3 {
			cpu := 200 + 150*math.Sin(float64(step+i)/2)
			u := cluster.Usage{CPU: fmt.Sprintf("%dm", int(cpu)), Memory: fmt.Sprintf("%dMi", 200+20*((step+i)%5))}
			if err := c.SetPodUsage(ctx, "batch", fmt.Sprintf("cruncher-%d", i), u); err != nil && ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "demo:", err)
			}
		}
		web := cluster.Usage{CPU: "60m"}
		if (step/3)%2 == 0 {
			web.CPU = "180m"
		}
		pods, err := c.Client().CoreV1().Pods("shop").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "demo:", err)
			}
			continue
		}
		for _, p := range pods.Items {
			if err := c.SetPodUsage(ctx, "shop", p.Name, web); err != nil && ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "demo:", err)
			}
		}
	}
}

// historyHelp returns the lines that read the history API and the Prometheus-compatible
// API through the kube-apiserver, as their aggregated API groups, with the kubeconfig
// alone (no token to copy, no port-forward); port is the direct port, for in-cluster
// scripts.
func historyHelp(port int) string {
	return fmt.Sprintf(`
  # history (every sample is kept), through the kube-apiserver: docs/history-api.md has every endpoint
  kubectl get --raw "/apis/history.hindsight.dev/v1/namespaces/shop/deployments/web?start=-10m&step=1m&resource=cpu"
  kubectl get --raw "/apis/history.hindsight.dev/v1/namespaces/batch/pods?start=-1h&view=summary&format=csv"
  kubectl get --raw "/apis/history.hindsight.dev/v1/nodes?start=-30m&step=5m&format=csv"
  kubectl get --raw "/apis/prometheus.hindsight.dev/v1/api/v1/query?query=sum(rate(container_cpu_usage_seconds_total%%5B1m%%5D))"
  # (Hindsight's own port, for in-cluster scripts with a token: https://127.0.0.1:%d/history/v1/...)
`, port)
}
