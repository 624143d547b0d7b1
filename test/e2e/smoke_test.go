package e2e

import (
	"context"
	"fmt"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// smokeCluster is the cluster of the smoke test: two kwok nodes and pods of known usage.
// kwok gives every container its pod's usage annotation; a pod without one uses 1m / 1Mi.
var smokePods = []cluster.PodSpec{
	{Name: "web-0", Node: "kwok-a", Containers: []string{"app", "sidecar"}, Usage: cluster.Usage{CPU: "250m", Memory: "300Mi"}},
	{Name: "worker-0", Node: "kwok-a", Usage: cluster.Usage{CPU: "100m", Memory: "64Mi"}},
	{Name: "batch-0", Namespace: "jobs", Node: "kwok-b", Usage: cluster.Usage{CPU: "500m", Memory: "1Gi"}},
	{Name: "idle-0", Node: "kwok-b"},
}

// TestSmokeMetricsServerPeer brings up the local control plane, registers the
// metrics-server peer for metrics.k8s.io and checks that the pinned kubectl's `top` shows
// the configured usage within 5 %. It proves the harness end to end: build, PKI, etcd,
// kube-apiserver with aggregation, kube-controller-manager, kwok, RBAC, APIService.
func TestSmokeMetricsServerPeer(t *testing.T) {
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	createFleet(ctx, t, c, smokePods)
	wantNodes, wantContainers := expectedUsage(smokePods)

	// The shipped manifests are valid for a real kube-apiserver (server-side apply, dry
	// run), before any metrics server has registered its APIServices.
	checkManifestsApply(ctx, t, c)

	if _, err := c.StartMetricsServer(ctx, cluster.MetricsServerOptions{Resolution: 10 * time.Second, Register: true}); err != nil {
		t.Fatal(err)
	}

	var nodeRows map[string]usage
	err := cluster.Poll(ctx, 2*time.Minute, time.Second, "kubectl top nodes to show every node", func(ctx context.Context) (bool, error) {
		out, err := c.Kubectl(ctx, "top", "nodes", "--no-headers")
		if err != nil {
			return false, err
		}
		nodeRows, err = parseTop(out, 0, 1, 3)
		return err == nil && len(nodeRows) == len(wantNodes), err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range wantNodes {
		checkUsage(t, "node "+name, nodeRows[name], want, 0.05)
	}

	var ctrRows map[string]usage
	err = cluster.Poll(ctx, 2*time.Minute, time.Second, "kubectl top pods to show every container", func(ctx context.Context) (bool, error) {
		out, err := c.Kubectl(ctx, "top", "pods", "-A", "--containers", "--no-headers")
		if err != nil {
			return false, err
		}
		// NAMESPACE POD NAME CPU MEMORY
		ctrRows, err = parseTop(out, 3, 3, 4, 0, 1, 2)
		return err == nil && len(ctrRows) == len(wantContainers), err
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range wantContainers {
		checkUsage(t, "container "+key, ctrRows[key], want, 0.05)
	}

	ls, err := c.Listeners()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) == 0 {
		t.Fatal("found no listening sockets of the cluster's processes")
	}
	for _, l := range ls {
		if !l.Addr.IsLoopback() {
			t.Errorf("%s listens on %s:%d, beyond loopback", l.Process, l.Addr, l.Port)
		}
	}

	pids := c.PIDs()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("%s (pid %d) is still running after Stop (kill 0: %v)", name, pid, err)
		}
	}
}

// createFleet creates the kwok nodes the pods name and then the pods, waiting for each.
func createFleet(ctx context.Context, t *testing.T, c *cluster.Cluster, pods []cluster.PodSpec) {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range pods {
		if p.Node == "" || seen[p.Node] {
			continue
		}
		seen[p.Node] = true
		if _, err := c.CreateNode(ctx, cluster.NodeSpec{Name: p.Node}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pods {
		if _, err := c.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
}

type usage struct{ cpu, mem float64 } // cores, bytes

// expectedUsage computes what kwok reports: every container gets its pod's annotation (1m
// and 1Mi without one); a node's usage is the sum over its pods.
func expectedUsage(pods []cluster.PodSpec) (nodes, containers map[string]usage) {
	nodes, containers = map[string]usage{}, map[string]usage{}
	for _, p := range pods {
		cpu, mem := "1m", "1Mi"
		if p.Usage.CPU != "" {
			cpu = p.Usage.CPU
		}
		if p.Usage.Memory != "" {
			mem = p.Usage.Memory
		}
		cq, mq := resource.MustParse(cpu), resource.MustParse(mem)
		u := usage{cpu: cq.AsApproximateFloat64(), mem: mq.AsApproximateFloat64()}
		names := p.Containers
		if len(names) == 0 {
			names = []string{"app"}
		}
		ns := p.Namespace
		if ns == "" {
			ns = "default"
		}
		for _, n := range names {
			containers[ns+"/"+p.Name+"/"+n] = u
			nu := nodes[p.Node]
			nu.cpu += u.cpu
			nu.mem += u.mem
			nodes[p.Node] = nu
		}
	}
	return nodes, containers
}

// parseTop parses kubectl top output without headers. cpuCol and memCol index the columns;
// the key joins keyCols with "/" (or is column keyCol alone).
func parseTop(out string, minCols, cpuCol, memCol int, keyCols ...int) (map[string]usage, error) {
	if len(keyCols) == 0 {
		keyCols = []int{0}
	}
	rows := map[string]usage{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) <= max(cpuCol, memCol, minCols) {
			return nil, fmt.Errorf("short line %q", line)
		}
		cpu, err := resource.ParseQuantity(f[cpuCol])
		if err != nil {
			return nil, fmt.Errorf("cpu in %q: %w", line, err)
		}
		mem, err := resource.ParseQuantity(f[memCol])
		if err != nil {
			return nil, fmt.Errorf("memory in %q: %w", line, err)
		}
		var key []string
		for _, k := range keyCols {
			key = append(key, f[k])
		}
		rows[strings.Join(key, "/")] = usage{cpu: cpu.AsApproximateFloat64(), mem: mem.AsApproximateFloat64()}
	}
	return rows, nil
}

// checkUsage compares within a relative tolerance plus what kubectl top's display adds: it
// prints whole millicores rounded up (up to 1m more than the served value) and whole
// mebibytes.
func checkUsage(t *testing.T, what string, got, want usage, tol float64) {
	t.Helper()
	if math.Abs(got.cpu-want.cpu) > tol*want.cpu+0.001 {
		t.Errorf("%s: CPU %.4f cores, want %.4f ± %.0f%% + 1m", what, got.cpu, want.cpu, tol*100)
	}
	if math.Abs(got.mem-want.mem) > tol*want.mem+1<<20 {
		t.Errorf("%s: memory %.0f bytes, want %.0f ± %.0f%% + 1Mi", what, got.mem, want.mem, tol*100)
	}
}

func relErr(got, want float64) float64 {
	if want == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-want) / want
}
