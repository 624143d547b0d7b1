package apiserver

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

func newTestStorage(t testing.TB, f *fixture, nodeSelector labels.Selector) (*nodeMetrics, *podMetrics, *prometheus.Registry, time.Time) {
	t.Helper()
	reg := prometheus.NewRegistry()
	am, err := newAPIMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	now := f.ts.Add(5 * time.Second)
	clock := func() time.Time { return now }
	if nodeSelector == nil {
		nodeSelector = labels.Everything()
	}
	return &nodeMetrics{source: f.source, nodes: f.nodes, selector: nodeSelector, metrics: am, now: clock},
		&podMetrics{source: f.source, pods: f.pods, metrics: am, now: clock},
		reg, now
}

func nodeSummary(items ...metrics.NodeMetrics) []string {
	out := make([]string, len(items))
	for i, n := range items {
		cpu, mem := n.Usage[corev1.ResourceCPU], n.Usage[corev1.ResourceMemory]
		out[i] = fmt.Sprintf("%s cpu=%s mem=%s window=%s ts=%s labels=%v", n.Name, cpu.String(), mem.String(), n.Window.Duration, n.Timestamp.UTC().Format(time.RFC3339), n.Labels)
	}
	return out
}

func podSummary(items ...metrics.PodMetrics) []string {
	out := make([]string, len(items))
	for i, p := range items {
		s := fmt.Sprintf("%s/%s window=%s ts=%s labels=%v", p.Namespace, p.Name, p.Window.Duration, p.Timestamp.UTC().Format(time.RFC3339), p.Labels)
		for _, c := range p.Containers {
			cpu, mem := c.Usage[corev1.ResourceCPU], c.Usage[corev1.ResourceMemory]
			s += fmt.Sprintf(" [%s cpu=%s mem=%s]", c.Name, cpu.String(), mem.String())
		}
		out[i] = s
	}
	return out
}

func listOptions(t testing.TB, labelSel, fieldSel string) *metainternalversion.ListOptions {
	t.Helper()
	opts := &metainternalversion.ListOptions{}
	if labelSel != "" {
		s, err := labels.Parse(labelSel)
		if err != nil {
			t.Fatal(err)
		}
		opts.LabelSelector = s
	}
	if fieldSel != "" {
		s, err := fields.ParseSelector(fieldSel)
		if err != nil {
			t.Fatal(err)
		}
		opts.FieldSelector = s
	}
	return opts
}

func TestNodeList(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ts := func(age time.Duration) string { return f.ts.Add(-age).UTC().Format(time.RFC3339) }
	nodeA := "node-a cpu=1500m mem=2Gi window=15s ts=" + ts(0) + " labels=map[role:control zone:a]"
	nodeB := "node-b cpu=12345n mem=1578392Ki window=14.5s ts=" + ts(time.Second) + " labels=map[role:worker zone:b]"
	tests := []struct {
		name         string
		nodeSelector string
		labelSel     string
		fieldSel     string
		nilOptions   bool
		want         []string
	}{
		{name: "all sorted, node without metrics left out", want: []string{nodeA, nodeB}},
		{name: "nil options", nilOptions: true, want: []string{nodeA, nodeB}},
		{name: "label selector", labelSel: "role=worker", want: []string{nodeB}},
		{name: "label selector matching nothing", labelSel: "role=none", want: []string{}},
		{name: "field selector on name", fieldSel: "metadata.name=node-a", want: []string{nodeA}},
		{name: "field selector on name, negated", fieldSel: "metadata.name!=node-a", want: []string{nodeB}},
		{name: "field selector on an unknown field matches nothing", fieldSel: "spec.unschedulable=true", want: []string{}},
		{name: "node selector", nodeSelector: "zone in (b,c)", want: []string{nodeB}},
		{name: "node selector and label selector", nodeSelector: "zone in (b,c)", labelSel: "role=control", want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ns labels.Selector
			if tc.nodeSelector != "" {
				var err error
				if ns, err = labels.Parse(tc.nodeSelector); err != nil {
					t.Fatal(err)
				}
			}
			nodes, _, _, _ := newTestStorage(t, f, ns)
			opts := listOptions(t, tc.labelSel, tc.fieldSel)
			if tc.nilOptions {
				opts = nil
			}
			obj, err := nodes.List(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			list := obj.(*metrics.NodeMetricsList)
			if diff := cmp.Diff(tc.want, nodeSummary(list.Items...)); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNodeGet(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	zoneA, err := labels.Parse("zone=a")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		node         string
		nodeSelector labels.Selector
		wantErr      string
	}{
		{name: "found", node: "node-b"},
		{name: "unknown node: the lister's NotFound", node: "node-x", wantErr: `node "node-x" not found`},
		{name: "known node without metrics", node: "node-c", wantErr: `nodemetrics.metrics.k8s.io "node-c" not found`},
		{name: "node outside the node selector", node: "node-b", nodeSelector: zoneA, wantErr: `nodemetrics.metrics.k8s.io "node-b" not found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes, _, _, _ := newTestStorage(t, f, tc.nodeSelector)
			obj, err := nodes.Get(context.Background(), tc.node, &metav1.GetOptions{})
			if tc.wantErr != "" {
				if !apierrors.IsNotFound(err) || err.Error() != tc.wantErr {
					t.Fatalf("Get(%s) = %v, %v; want NotFound %q", tc.node, obj, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := obj.(*metrics.NodeMetrics)
			if n.Name != tc.node {
				t.Errorf("Get(%s) returned %s", tc.node, n.Name)
			}
		})
	}
}

func TestPodList(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ts := func(age time.Duration) string { return f.ts.Add(-age).UTC().Format(time.RFC3339) }
	podA := "ns1/pod-a window=13s ts=" + ts(2*time.Second) + " labels=map[app:db] [app cpu=100m mem=64Mi] [sidecar cpu=5m mem=16Mi]"
	podB := "ns1/pod-b window=15s ts=" + ts(0) + " labels=map[app:web] [app cpu=4710169n mem=12240Ki]"
	podE := "ns1/pod-e window=15s ts=" + ts(0) + " labels=map[app:web] [app cpu=1n mem=1]"
	podC := "ns2/pod-c window=15s ts=" + ts(0) + " labels=map[app:web] [app cpu=250m mem=100Mi]"
	tests := []struct {
		name      string
		namespace string
		labelSel  string
		fieldSel  string
		want      []string
	}{
		{name: "all namespaces sorted, pod without metrics left out", want: []string{podA, podB, podE, podC}},
		{name: "one namespace", namespace: "ns1", want: []string{podA, podB, podE}},
		{name: "namespace without pods", namespace: "ns3", want: []string{}},
		{name: "label selector across namespaces", labelSel: "app=web", want: []string{podB, podE, podC}},
		{name: "label selector in a namespace", namespace: "ns2", labelSel: "app=web", want: []string{podC}},
		{name: "field selector on name", fieldSel: "metadata.name=pod-b", want: []string{podB}},
		{name: "field selector on namespace", fieldSel: "metadata.namespace=ns2", want: []string{podC}},
		{name: "field selector on both", fieldSel: "metadata.namespace=ns1,metadata.name!=pod-a", want: []string{podB, podE}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, pods, _, _ := newTestStorage(t, f, nil)
			ctx := genericapirequest.WithNamespace(context.Background(), tc.namespace)
			obj, err := pods.List(ctx, listOptions(t, tc.labelSel, tc.fieldSel))
			if err != nil {
				t.Fatal(err)
			}
			list := obj.(*metrics.PodMetricsList)
			if diff := cmp.Diff(tc.want, podSummary(list.Items...)); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodGet(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name, namespace, pod string
		wantErr              string
	}{
		{name: "found", namespace: "ns2", pod: "pod-c"},
		{name: "unknown pod: the lister's NotFound", namespace: "ns2", pod: "pod-x", wantErr: `pods "pod-x" not found`},
		{name: "pod in another namespace", namespace: "ns1", pod: "pod-c", wantErr: `pods "pod-c" not found`},
		{name: "Pending pod with a window", namespace: "ns1", pod: "pod-pending", wantErr: `pods "pod-pending" not found`},
		{name: "Succeeded pod with a window", namespace: "ns2", pod: "pod-done", wantErr: `pods "pod-done" not found`},
		{name: "known pod without metrics", namespace: "ns2", pod: "pod-d", wantErr: `podmetrics.metrics.k8s.io "ns2/pod-d" not found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, pods, _, _ := newTestStorage(t, f, nil)
			ctx := genericapirequest.WithNamespace(context.Background(), tc.namespace)
			obj, err := pods.Get(ctx, tc.pod, &metav1.GetOptions{})
			if tc.wantErr != "" {
				if !apierrors.IsNotFound(err) || err.Error() != tc.wantErr {
					t.Fatalf("Get(%s/%s) = %v, %v; want NotFound %q", tc.namespace, tc.pod, obj, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := obj.(*metrics.PodMetrics)
			if p.Namespace != tc.namespace || p.Name != tc.pod {
				t.Errorf("Get(%s/%s) returned %s/%s", tc.namespace, tc.pod, p.Namespace, p.Name)
			}
		})
	}
}

// A source that breaks its contract (answers out of order, or for names it was not asked
// about) must not make the storage panic, mislabel objects or serve them unsorted.
func TestSourceOutOfOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	nodes, pods, _, _ := newTestStorage(t, f, nil)
	nodes.source = reversedSource{f.source}
	pods.source = reversedSource{f.source}
	obj, err := nodes.List(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range obj.(*metrics.NodeMetricsList).Items {
		if n.Name != "node-b" {
			t.Errorf("served %s; want only the first answer that keeps the order (node-b)", n.Name)
		}
	}
	obj, err = pods.List(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(obj.(*metrics.PodMetricsList).Items); got != 1 {
		t.Errorf("served %d pods; want 1", got)
	}
}

type reversedSource struct{ s MetricsSource }

func (r reversedSource) NodeUsage(nodes []string) []tsdb.NodeUsage {
	out := r.s.NodeUsage(nodes)
	out = append(out, tsdb.NodeUsage{Node: "unknown"})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func (r reversedSource) PodUsage(pods []tsdb.PodRef) []tsdb.PodUsage {
	out := r.s.PodUsage(pods)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func TestFreshnessMetric(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	nodes, pods, reg, now := newTestStorage(t, f, nil)
	if _, err := nodes.List(context.Background(), nil); err != nil { // node-a (5s old), node-b (6s)
		t.Fatal(err)
	}
	ctx := genericapirequest.WithNamespace(context.Background(), "ns1")
	if _, err := pods.Get(ctx, "pod-a", &metav1.GetOptions{}); err != nil { // 7s old
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "pod-x", &metav1.GetOptions{}); err == nil { // not served: not observed
		t.Fatal("Get(pod-x) succeeded")
	}
	count, sum := gatherHistogram(t, reg, "hindsight_api_metric_freshness_seconds")
	if want := uint64(3); count != want {
		t.Errorf("sample count = %d; want %d", count, want)
	}
	if want := now.Sub(f.ts).Seconds()*3 + 1 + 2; math.Abs(sum-want) > 1e-9 {
		t.Errorf("sample sum = %v; want %v", sum, want)
	}
}

// gatherHistogram returns the sample count and sum of the unlabelled histogram name.
func gatherHistogram(t testing.TB, g prometheus.Gatherer, name string) (uint64, float64) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0, 0
}

func TestNewAPIMetricsReusesRegistered(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a, err := newAPIMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newAPIMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	a.observeFreshness(time.Unix(10, 0), time.Unix(8, 0))
	b.observeFreshness(time.Unix(10, 0), time.Unix(9, 0))
	if got, _ := gatherHistogram(t, reg, "hindsight_api_metric_freshness_seconds"); got != 2 {
		t.Errorf("sample count = %d; want 2 (one histogram shared)", got)
	}
	if _, err := newAPIMetrics(nil); err != nil {
		t.Errorf("newAPIMetrics(nil): %v", err)
	}
}

func TestQuantities(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		usage     tsdb.Usage
		cpu, mem  string
		cpuMilli  int64
		memBytes  int64
		checkVals bool
	}{
		{name: "zero", usage: tsdb.Usage{}, cpu: "0", mem: "0", checkVals: true},
		{name: "nanocores and bytes", usage: tsdb.Usage{CPUNanoCores: 12345, MemoryBytes: 1_616_273_408}, cpu: "12345n", mem: "1578392Ki"},
		{name: "whole cores and binary memory", usage: tsdb.Usage{CPUNanoCores: 2_000_000_000, MemoryBytes: 3 << 30}, cpu: "2", mem: "3Gi", cpuMilli: 2000, memBytes: 3 << 30, checkVals: true},
		{name: "above MaxInt64 loses one digit", usage: tsdb.Usage{CPUNanoCores: math.MaxUint64, MemoryBytes: math.MaxUint64}, cpu: "18446744073709551610n", mem: "18446744073709551610"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rl := resourceList(tc.usage)
			cpu, mem := rl[corev1.ResourceCPU], rl[corev1.ResourceMemory]
			if cpu.String() != tc.cpu || mem.String() != tc.mem {
				t.Errorf("cpu, memory = %s, %s; want %s, %s", cpu.String(), mem.String(), tc.cpu, tc.mem)
			}
			if cpu.Format != resource.DecimalSI || mem.Format != resource.BinarySI {
				t.Errorf("formats = %s, %s; want DecimalSI, BinarySI", cpu.Format, mem.Format)
			}
			if tc.checkVals && (cpu.MilliValue() != tc.cpuMilli || mem.Value() != tc.memBytes) {
				t.Errorf("values = %dm, %d; want %dm, %d", cpu.MilliValue(), mem.Value(), tc.cpuMilli, tc.memBytes)
			}
		})
	}
}
