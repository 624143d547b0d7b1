package scraper

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

// TestHostileKubelet scrapes two nodes into a real tsdb.DB for several rounds. "honest" reports
// victims/db-0, the pod the API places on it. "hostile" reports, each round, 100,000 pod names
// nobody created (with a container each) and victims/db-0 with a hundred times its CPU and
// memory. The victim's current window and stored history must be the honest node's only,
// nothing of the invented pods may be stored, the drops must be counted, and the heap must not
// grow with what the hostile node sends.
func TestHostileKubelet(t *testing.T) {
	const (
		rounds      = 4
		invented    = 100_000
		victimCPU   = 1.5       // core-seconds per round: 0.1 cores at 15 s
		victimMem   = 100 << 20 // bytes
		hostileMult = 100
		heapBound   = 64 << 20 // bytes of heap growth over all rounds
	)
	db, err := tsdb.Open(tsdb.Config{Dir: t.TempDir(), Resolution: testResolution}, testlog.New(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})

	// Timestamps end at now, one resolution apart, so that the window has two points.
	base := time.Now().Truncate(time.Millisecond).Add(-rounds * testResolution)
	start := base.Add(-time.Hour)
	round := 0
	sample := func(cpu, mem float64) tsdb.Sample {
		return cpuMem(base.Add(time.Duration(round)*testResolution), cpu, mem)
	}
	f := &fakeFetcher{fn: func(_ context.Context, node *corev1.Node, _ int) (tsdb.NodeScrape, error) {
		r := float64(round + 1)
		// Scraped when the samples were taken, as a healthy kubelet's clock is.
		ns := tsdb.NodeScrape{Node: node.Name, ScrapeTime: base.Add(time.Duration(round) * testResolution), HasNode: true, NodeSample: sample(100*r, 1<<30)}
		mult := 1.0
		if node.Name == "hostile" {
			mult = hostileMult
			ns.Pods = make([]tsdb.PodSample, 0, invented+1)
			ns.Containers = make([]tsdb.ContainerSample, 0, invented+1)
			for i := range invented {
				pod := fmt.Sprintf("fake-%d-%d", round, i)
				ns.Pods = append(ns.Pods, tsdb.PodSample{Namespace: "flood", Pod: pod, Sample: sample(r, 1)})
				ns.Containers = append(ns.Containers, tsdb.ContainerSample{Namespace: "flood", Pod: pod, Container: "c", StartTime: start, Sample: sample(r, 1)})
			}
		}
		ns.Pods = append(ns.Pods, tsdb.PodSample{Namespace: "victims", Pod: "db-0", Sample: sample(mult*victimCPU*r, mult*victimMem)})
		ns.Containers = append(ns.Containers, tsdb.ContainerSample{Namespace: "victims", Pod: "db-0", Container: "db", StartTime: start, Sample: sample(mult*victimCPU*r, mult*victimMem)})
		return ns, nil
	}}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	addNode(t, idx, "honest", nil)
	addNode(t, idx, "hostile", nil)
	pods := fakePodUIDs{"victims/db-0": {"uid-db-0", "honest"}}
	s, err := New(Config{Resolution: testResolution}, corev1listers.NewNodeLister(idx), pods, f, db, testlog.New(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for round = range rounds {
		s.round(t.Context(), time.Now())
	}
	after := heap()
	growth := int64(after) - int64(before)
	t.Logf("heap after GC: %d MiB before, %d MiB after %d rounds of %d invented pods; growth %+.1f MiB (bound %d MiB)",
		before>>20, after>>20, rounds, invented, float64(growth)/(1<<20), heapBound>>20)
	if growth > heapBound {
		t.Errorf("heap grew by %d bytes over %d rounds, more than %d", growth, rounds, heapBound)
	}

	// Counted: every invented pod and container sample, and the victim's two of the hostile node.
	if got, want := counterValue(t, s.m.dropped, DropUnknownPod), float64(rounds*2*invented); got != want {
		t.Errorf("dropped_samples_total{reason=unknown_pod} = %v, want %v", got, want)
	}
	if got, want := counterValue(t, s.m.dropped, DropWrongNode), float64(rounds*2); got != want {
		t.Errorf("dropped_samples_total{reason=wrong_node} = %v, want %v", got, want)
	}

	// The current window (PodMetrics) is the honest node's.
	usage := db.PodUsage([]tsdb.PodRef{{Namespace: "victims", Name: "db-0"}})
	if len(usage) != 1 || len(usage[0].Containers) != 1 {
		t.Fatalf("PodUsage(victims/db-0) = %+v, want one pod with one container", usage)
	}
	if c := usage[0].Containers[0]; c.CPUNanoCores != uint64(victimCPU/testResolution.Seconds()*1e9) || c.MemoryBytes != victimMem {
		t.Errorf("victim's window: %d nanocores, %d bytes; want the honest node's %v, %d",
			c.CPUNanoCores, c.MemoryBytes, uint64(victimCPU/testResolution.Seconds()*1e9), victimMem)
	}

	// The stored history is the honest node's: every series of the victim, and nothing of the
	// invented pods or of the hostile node's pods.
	q := tsdb.RangeQuery{Start: base, End: base.Add(rounds * testResolution), Step: testResolution, Resource: tsdb.ResourceMemory, Agg: tsdb.AggMax}
	series := func(sel tsdb.Selector) (ids []tsdb.SeriesID, maxMem float64) {
		t.Helper()
		maxMem = math.Inf(-1)
		err := db.Range(t.Context(), sel, q, func(rs *tsdb.RangeSeries) error {
			ids = append(ids, rs.ID)
			for _, v := range rs.Values {
				if !math.IsNaN(v) {
					maxMem = max(maxMem, v)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Range(%+v) = %v", sel, err)
		}
		return ids, maxMem
	}
	for _, obj := range []tsdb.Object{tsdb.ObjectPod, tsdb.ObjectContainer} {
		ids, maxMem := series(tsdb.Selector{Object: obj, Namespace: "victims", Pod: "db-0"})
		if len(ids) != 1 || ids[0].Node != "honest" || ids[0].UID != "uid-db-0" || maxMem != victimMem {
			t.Errorf("%v history of victims/db-0: series %+v, max memory %v; want one series of node honest at %d", obj, ids, maxMem, victimMem)
		}
		if ids, _ := series(tsdb.Selector{Object: obj, Namespace: "flood"}); len(ids) != 0 {
			t.Errorf("%d %v series of invented pods stored", len(ids), obj)
		}
		if ids, _ := series(tsdb.Selector{Object: obj, Node: "hostile"}); len(ids) != 0 {
			t.Errorf("%d %v series stored from the hostile node, first %+v", len(ids), obj, ids[0])
		}
	}
	// The hostile node's own sample is its to report.
	if ids, _ := series(tsdb.Selector{Object: tsdb.ObjectNode, Node: "hostile"}); len(ids) != 1 {
		t.Errorf("hostile node's own series: %+v, want 1", ids)
	}
}

func TestPlacePods(t *testing.T) {
	t.Parallel()
	pods := fakePodUIDs{
		"shop/web-0":     {"uid-web-0", "node-a"},
		"shop/web-1":     {"uid-web-1", "node-b"},
		"shop/pending-0": {"uid-pending-0", ""},
	}
	ctr := func(ns, pod, c string) tsdb.ContainerSample {
		return tsdb.ContainerSample{Namespace: ns, Pod: pod, Container: c}
	}
	tests := []struct {
		name           string
		pods           []tsdb.PodSample
		containers     []tsdb.ContainerSample
		wantPods       []string // namespace/pod/uid
		wantContainers []string // namespace/pod/container/uid
		wantUnknown    float64
		wantWrong      float64
	}{
		{
			name:           "a pod the API places on the node keeps its samples and gets its UID",
			pods:           []tsdb.PodSample{{Namespace: "shop", Pod: "web-0"}},
			containers:     []tsdb.ContainerSample{ctr("shop", "web-0", "app"), ctr("shop", "web-0", "proxy")},
			wantPods:       []string{"shop/web-0/uid-web-0"},
			wantContainers: []string{"shop/web-0/app/uid-web-0", "shop/web-0/proxy/uid-web-0"},
		},
		{
			name:        "a pod the cache does not hold (invented, or created a moment ago)",
			pods:        []tsdb.PodSample{{Namespace: "shop", Pod: "new-0"}},
			containers:  []tsdb.ContainerSample{ctr("shop", "new-0", "app")},
			wantUnknown: 2,
		},
		{
			name:        "the same name in another namespace is another pod",
			pods:        []tsdb.PodSample{{Namespace: "other", Pod: "web-0"}},
			wantUnknown: 1,
		},
		{
			name:       "a pod the API places on another node",
			pods:       []tsdb.PodSample{{Namespace: "shop", Pod: "web-1"}},
			containers: []tsdb.ContainerSample{ctr("shop", "web-1", "app")},
			wantWrong:  2,
		},
		{
			name:       "a pod not scheduled yet",
			containers: []tsdb.ContainerSample{ctr("shop", "pending-0", "app")},
			wantWrong:  1,
		},
		{
			name:           "mixed: only the placed pod's samples remain, in order",
			pods:           []tsdb.PodSample{{Namespace: "shop", Pod: "new-0"}, {Namespace: "shop", Pod: "web-0"}, {Namespace: "shop", Pod: "web-1"}},
			containers:     []tsdb.ContainerSample{ctr("shop", "new-0", "a"), ctr("shop", "web-0", "a"), ctr("shop", "web-1", "a"), ctr("shop", "web-0", "b")},
			wantPods:       []string{"shop/web-0/uid-web-0"},
			wantContainers: []string{"shop/web-0/a/uid-web-0", "shop/web-0/b/uid-web-0"},
			wantUnknown:    2,
			wantWrong:      2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			s, err := New(Config{Resolution: testResolution}, corev1listers.NewNodeLister(idx), pods, &fakeFetcher{}, newFakeWriter(), testlog.New(t), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			r := tsdb.NodeScrape{Node: "node-a", Pods: tt.pods, Containers: tt.containers}
			s.placePods(&r, "node-a")
			var gotPods, gotContainers []string
			for _, p := range r.Pods {
				gotPods = append(gotPods, p.Namespace+"/"+p.Pod+"/"+p.UID)
			}
			for _, c := range r.Containers {
				gotContainers = append(gotContainers, c.Namespace+"/"+c.Pod+"/"+c.Container+"/"+c.UID)
			}
			if diff := cmp.Diff(tt.wantPods, gotPods); diff != "" {
				t.Errorf("pods (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantContainers, gotContainers); diff != "" {
				t.Errorf("containers (-want +got):\n%s", diff)
			}
			if got := counterValue(t, s.m.dropped, DropUnknownPod); got != tt.wantUnknown {
				t.Errorf("dropped{unknown_pod} = %v, want %v", got, tt.wantUnknown)
			}
			if got := counterValue(t, s.m.dropped, DropWrongNode); got != tt.wantWrong {
				t.Errorf("dropped{wrong_node} = %v, want %v", got, tt.wantWrong)
			}
		})
	}
}
