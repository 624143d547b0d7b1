package scraper

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns how many lines contain every one of subs.
func (l *lockedBuffer) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
lines:
	for _, line := range strings.Split(l.b.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue lines
			}
		}
		n++
	}
	return n
}

// TestRunSkewedKubeletClocks scrapes healthy kubelets among ones whose clocks are hours
// ahead, days ahead and hours behind, and one hours ahead that recovers: the skewed nodes
// are left out of every batch, counted with reason clock_skew, logged once when they start
// and once when they recover, and listed by CheckClocks; a node that leaves is forgotten.
// The batches, written to a real TSDB, hold every healthy node's and pod's history.
func TestRunSkewedKubeletClocks(t *testing.T) {
	const (
		rounds    = 12
		recoverAt = 4 // the round from which "recovers" has the right time
		leaveAt   = 8 // "ahead-days" leaves the node list before this round
	)
	healthy := []string{"h1", "h2", "h3"}
	offsets := map[string]time.Duration{"ahead-hours": 2 * time.Hour, "ahead-days": 3 * 24 * time.Hour, "behind-hours": -3 * time.Hour, "recovers": 2 * time.Hour}
	skewOf := maps.Clone(offsets) // the offsets while skewed
	var batches []tsdb.Batch

	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex // guards offsets
		f := &fakeFetcher{fn: func(_ context.Context, node *corev1.Node, attempt int) (tsdb.NodeScrape, error) {
			now := time.Now()
			mu.Lock()
			off := offsets[node.Name]
			mu.Unlock()
			ts := now.Add(-5*time.Second + off) // stats cached 5s before the request
			s := cpuMem(ts, float64(attempt), 1e6)
			return tsdb.NodeScrape{
				Node: node.Name, ScrapeTime: now, HasNode: true, NodeSample: s,
				Pods:       []tsdb.PodSample{{Namespace: "ns", Pod: "pod-" + node.Name, Sample: s}},
				Containers: []tsdb.ContainerSample{{Namespace: "ns", Pod: "pod-" + node.Name, Container: "c", Sample: s}},
			}, nil
		}}
		idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		pods := fakePodUIDs{}
		for _, n := range append(append([]string{}, healthy...), "ahead-hours", "ahead-days", "behind-hours", "recovers") {
			addNode(t, idx, n, nil)
			pods["ns/pod-"+n] = placed{uid: "uid-" + n, node: n}
		}
		var logs lockedBuffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		w := newFakeWriter()
		s, err := New(Config{Resolution: testResolution}, corev1listers.NewNodeLister(idx), pods, f, w, log, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		env := &testEnv{s: s, nodes: idx, fetcher: f, writer: w}
		stop := env.run(t)
		defer stop()

		wantErrors := 0.0
		for i := range rounds {
			b := <-w.batches
			batches = append(batches, b)
			want := append([]string{}, healthy...)
			skewed := []string{"ahead-hours", "behind-hours"}
			if i < leaveAt {
				skewed = append(skewed, "ahead-days")
			}
			if i >= recoverAt {
				want = append(want, "recovers")
			} else {
				skewed = append(skewed, "recovers")
			}
			wantErrors += float64(len(skewed))
			if diff := cmp.Diff(sortedCopy(want), batchNodes(b)); diff != "" {
				t.Errorf("round %d: batch nodes (-want +got):\n%s", i, diff)
			}
			if got := counterValue(t, s.m.errors, ReasonClockSkew); got != wantErrors {
				t.Errorf("round %d: scrape_errors_total{reason=clock_skew} = %v, want %v", i, got, wantErrors)
			}
			check := s.CheckClocks()
			if check == nil {
				t.Fatalf("round %d: CheckClocks() = nil", i)
			}
			wantCheck := fmt.Sprintf("%d kubelet clocks are off the scraper's by more than 30s", len(skewed))
			if !strings.Contains(check.Error(), wantCheck) {
				t.Errorf("round %d: CheckClocks() = %q, want it to contain %q", i, check, wantCheck)
			}
			for _, n := range skewed {
				if !strings.Contains(check.Error(), n+" "+tsdb.FormatOffset(skewOf[n]-5*time.Second)) {
					t.Errorf("round %d: CheckClocks() = %q, want it to name %s with its offset", i, check, n)
				}
			}
			if i < recoverAt == !strings.Contains(check.Error(), "recovers") {
				t.Errorf("round %d: CheckClocks() = %q: recovers listed while skewed only", i, check)
			}
			s.clockMu.Lock()
			if len(s.skewed) != len(skewed) {
				t.Errorf("round %d: %d nodes in the clock state, want %d", i, len(s.skewed), len(skewed))
			}
			s.clockMu.Unlock()

			switch i + 1 {
			case recoverAt:
				mu.Lock()
				offsets["recovers"] = 0
				mu.Unlock()
			case leaveAt:
				if err := idx.Delete(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ahead-days"}}); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, n := range []string{"ahead-hours", "ahead-days", "behind-hours", "recovers"} {
			if got := logs.count("level=WARN", "kubelet clock is off", "node="+n+" ", "offset="+tsdb.FormatOffset(skewOf[n]-5*time.Second)); got != 1 {
				t.Errorf("%s: %d warnings logged, want 1", n, got)
			}
		}
		if got := logs.count("level=WARN", "kubelet clock is off"); got != 4 {
			t.Errorf("%d clock warnings logged, want 4 (one per skewed node)", got)
		}
		if got := logs.count("level=INFO", "kubelet clock is back", "node=recovers", "offset=-5s"); got != 1 {
			t.Errorf("%d recoveries logged for recovers, want 1", got)
		}
		if got := logs.count("kubelet clock is back"); got != 1 {
			t.Errorf("%d recoveries logged, want 1", got)
		}
	})

	// The rounds' batches, stored: complete history of every healthy node and pod, and of
	// "recovers" from its recovery; nothing of the skewed nodes.
	db, err := tsdb.Open(tsdb.Config{Dir: t.TempDir(), Resolution: testResolution}, testlog.New(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}()
	for i, b := range batches {
		if err := db.Write(context.Background(), b); err != nil {
			t.Fatalf("write round %d: %v", i, err)
		}
	}
	if err := db.StorageHealth(); err != nil {
		t.Errorf("StorageHealth() = %v", err)
	}
	got := storedPerNode(t, db)
	want := map[string]int{"recovers": 6 * (rounds - recoverAt)} // node, pod and container CPU and memory
	for _, n := range healthy {
		want[n] = 6 * rounds
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("samples stored per node (-want +got):\n%s", diff)
	}
	t.Logf("stored samples per node: %v", got)
	if us := db.NodeUsage([]string{"recovers", "ahead-hours"}); len(us) != 1 || us[0].Node != "recovers" {
		t.Errorf("NodeUsage = %+v, want recovers only", us)
	}
}

func sortedCopy(s []string) []string {
	c := append([]string{}, s...)
	slices.Sort(c)
	return c
}

// storedPerNode counts the samples of every series in db by their node label.
func storedPerNode(t *testing.T, db *tsdb.DB) map[string]int {
	t.Helper()
	q, err := db.Queryable().Querier(0, time.Now().Add(365*24*time.Hour).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	out := make(map[string]int)
	for ss.Next() {
		s := ss.At()
		it := s.Iterator(nil)
		for it.Next() != 0 {
			out[s.Labels().Get("node")]++
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
