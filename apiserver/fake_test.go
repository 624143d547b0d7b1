package apiserver

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// fakeSource is a MetricsSource over fixed maps. It keeps the contract: input order, entries
// without a window left out. It is read-only after construction, so safe for concurrent use.
type fakeSource struct {
	nodes map[string]tsdb.NodeUsage
	pods  map[tsdb.PodRef]tsdb.PodUsage
}

func (f *fakeSource) NodeUsage(nodes []string) []tsdb.NodeUsage {
	var out []tsdb.NodeUsage
	for _, n := range nodes {
		if u, ok := f.nodes[n]; ok {
			out = append(out, u)
		}
	}
	return out
}

func (f *fakeSource) PodUsage(pods []tsdb.PodRef) []tsdb.PodUsage {
	var out []tsdb.PodUsage
	for _, p := range pods {
		if u, ok := f.pods[p]; ok {
			out = append(out, u)
		}
	}
	return out
}

// fixture is the cluster every test here serves: three nodes (node-c without metrics) and
// five Running pods in two namespaces (ns2/pod-d without metrics), unsorted on purpose.
type fixture struct {
	ts     time.Time // newest point; whole seconds, since JSON drops sub-second precision
	source *fakeSource
	nodes  corev1listers.NodeLister
	pods   corev1listers.PodLister
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ts := time.Now().Add(-10 * time.Second).Truncate(time.Second)
	nodeIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "node-b", Labels: map[string]string{"role": "worker", "zone": "b"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "node-c", Labels: map[string]string{"role": "worker", "zone": "c"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{"role": "control", "zone": "a"}}},
	} {
		if err := nodeIdx.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	podIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, p := range []struct {
		ns, name, app string
		phase         corev1.PodPhase
	}{
		{"ns2", "pod-d", "db", corev1.PodRunning},
		{"ns1", "pod-b", "web", corev1.PodRunning},
		{"ns2", "pod-c", "web", corev1.PodRunning},
		{"ns1", "pod-a", "db", corev1.PodRunning},
		{"ns1", "pod-e", "web", corev1.PodRunning},
		// Not Running: never served, although the source has a window for each.
		{"ns1", "pod-pending", "web", corev1.PodPending},
		{"ns2", "pod-done", "db", corev1.PodSucceeded},
	} {
		obj := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: map[string]string{"app": p.app}},
			Status:     corev1.PodStatus{Phase: p.phase},
		}
		if err := podIdx.Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	usage := func(age time.Duration, window time.Duration, cpu, mem uint64) tsdb.Usage {
		return tsdb.Usage{Timestamp: ts.Add(-age), Window: window, CPUNanoCores: cpu, MemoryBytes: mem}
	}
	src := &fakeSource{
		nodes: map[string]tsdb.NodeUsage{
			"node-a": {Node: "node-a", Usage: usage(0, 15*time.Second, 1_500_000_000, 2<<30)},
			"node-b": {Node: "node-b", Usage: usage(time.Second, 14500*time.Millisecond, 12345, 1_616_273_408)},
		},
		pods: map[tsdb.PodRef]tsdb.PodUsage{},
	}
	for _, p := range []struct {
		ref        tsdb.PodRef
		containers []tsdb.ContainerUsage
	}{
		{tsdb.PodRef{Namespace: "ns1", Name: "pod-a"}, []tsdb.ContainerUsage{
			{Name: "app", Usage: usage(0, 15*time.Second, 100_000_000, 64<<20)},
			{Name: "sidecar", Usage: usage(2*time.Second, 13*time.Second, 5_000_000, 16<<20)},
		}},
		{tsdb.PodRef{Namespace: "ns1", Name: "pod-b"}, []tsdb.ContainerUsage{
			{Name: "app", Usage: usage(0, 15*time.Second, 4_710_169, 12_533_760)},
		}},
		{tsdb.PodRef{Namespace: "ns1", Name: "pod-e"}, []tsdb.ContainerUsage{
			{Name: "app", Usage: usage(0, 15*time.Second, 1, 1)},
		}},
		{tsdb.PodRef{Namespace: "ns2", Name: "pod-c"}, []tsdb.ContainerUsage{
			{Name: "app", Usage: usage(0, 15*time.Second, 250_000_000, 100<<20)},
		}},
		{tsdb.PodRef{Namespace: "ns1", Name: "pod-pending"}, []tsdb.ContainerUsage{
			{Name: "app", Usage: usage(0, 15*time.Second, 7, 7)},
		}},
		{tsdb.PodRef{Namespace: "ns2", Name: "pod-done"}, []tsdb.ContainerUsage{
			{Name: "app", Usage: usage(0, 15*time.Second, 7, 7)},
		}},
	} {
		earliest := p.containers[0].Usage
		for _, c := range p.containers {
			if c.Timestamp.Before(earliest.Timestamp) {
				earliest = c.Usage
			}
		}
		src.pods[p.ref] = tsdb.PodUsage{PodRef: p.ref, Timestamp: earliest.Timestamp, Window: earliest.Window, Containers: p.containers}
	}
	return &fixture{
		ts:     ts,
		source: src,
		nodes:  corev1listers.NewNodeLister(nodeIdx),
		pods:   corev1listers.NewPodLister(podIdx),
	}
}
