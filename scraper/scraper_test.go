package scraper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

const testResolution = 15 * time.Second

// fakeFetcher answers from fn and records every call. fn gets the 1-based attempt number of
// that node within the test.
type fakeFetcher struct {
	fn func(ctx context.Context, node *corev1.Node, attempt int) (tsdb.NodeScrape, error)

	mu          sync.Mutex // guards the fields below
	calls       map[string][]time.Time
	inFlight    int
	maxInFlight int
}

func (f *fakeFetcher) Fetch(ctx context.Context, node *corev1.Node) (tsdb.NodeScrape, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[string][]time.Time)
	}
	f.calls[node.Name] = append(f.calls[node.Name], time.Now())
	attempt := len(f.calls[node.Name])
	f.inFlight++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	if f.fn == nil {
		return okScrape(node.Name), nil
	}
	return f.fn(ctx, node, attempt)
}

func (f *fakeFetcher) callTimes(node string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls[node])
}

// okScrape is what a healthy node answers: its own sample and one pod with one container.
func okScrape(node string) tsdb.NodeScrape {
	now := time.Now()
	s := cpuMem(now, 1, 2)
	return tsdb.NodeScrape{
		Node: node, ScrapeTime: now, HasNode: true, NodeSample: s,
		Pods:       []tsdb.PodSample{{Namespace: "ns", Pod: "pod-" + node, Sample: s}},
		Containers: []tsdb.ContainerSample{{Namespace: "ns", Pod: "pod-" + node, Container: "c", Sample: s}},
	}
}

// fakeWriter hands every batch to the test through a channel; receiving from it blocks
// durably, so a synctest bubble advances its clock until the next write.
type fakeWriter struct {
	batches chan tsdb.Batch
	err     error
	block   bool // block until ctx is done
}

func newFakeWriter() *fakeWriter { return &fakeWriter{batches: make(chan tsdb.Batch, 100)} }

func (w *fakeWriter) Write(ctx context.Context, b tsdb.Batch) error {
	if w.block {
		<-ctx.Done()
		return ctx.Err()
	}
	w.batches <- b
	return w.err
}

// fakePodUIDs is a pod cache: "namespace/name" → the pod's UID and node.
type fakePodUIDs map[string]placed

type placed struct{ uid, node string }

func (f fakePodUIDs) PodNode(namespace, name string) (uid, node string, ok bool) {
	p, ok := f[namespace+"/"+name]
	return p.uid, p.node, ok
}

type testEnv struct {
	s       *Scraper
	nodes   cache.Indexer
	fetcher *fakeFetcher
	writer  *fakeWriter
	reg     *prometheus.Registry
}

func newTestEnv(t *testing.T, cfg Config, f *fakeFetcher, nodes ...string) *testEnv {
	t.Helper()
	if cfg.Resolution == 0 {
		cfg.Resolution = testResolution
	}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range nodes {
		addNode(t, idx, n, nil)
	}
	env := &testEnv{nodes: idx, fetcher: f, writer: newFakeWriter(), reg: prometheus.NewRegistry()}
	uids := fakePodUIDs{}
	for _, n := range nodes {
		uids["ns/pod-"+n] = placed{"uid-" + n, n}
	}
	s, err := New(cfg, corev1listers.NewNodeLister(idx), uids, f, env.writer, testlog.New(t), env.reg)
	if err != nil {
		t.Fatal(err)
	}
	env.s = s
	return env
}

func addNode(t testing.TB, idx cache.Indexer, name string, lbls map[string]string) {
	t.Helper()
	if err := idx.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}); err != nil {
		t.Fatal(err)
	}
}

// run starts Run and returns a function that stops it and checks its result.
func (e *testEnv) run(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.s.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil on a clean stop", err)
		}
	}
}

func batchNodes(b tsdb.Batch) []string {
	var names []string
	for _, n := range b.Nodes {
		names = append(names, n.Node)
	}
	slices.Sort(names)
	return names
}

func counterValue(t *testing.T, c *prometheus.CounterVec, lv string) float64 {
	t.Helper()
	return testutil.ToFloat64(c.WithLabelValues(lv))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (Config{Resolution: MinResolution}).Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	err := Config{Resolution: 5 * time.Second, Concurrency: -1, MaxAttempts: -1, RetryBackoff: -1}.Validate()
	for _, want := range []string{"below 10s", "concurrency", "attempts", "backoff"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	lister := corev1listers.NewNodeLister(cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}))
	cfg := Config{Resolution: testResolution}
	if _, err := New(Config{}, lister, nil, &fakeFetcher{}, newFakeWriter(), testlog.New(t), prometheus.NewRegistry()); err == nil {
		t.Error("New() accepted an invalid Config")
	}
	if _, err := New(cfg, lister, fakePodUIDs{}, nil, newFakeWriter(), testlog.New(t), prometheus.NewRegistry()); err == nil {
		t.Error("New() accepted a nil Fetcher")
	}
	if _, err := New(cfg, lister, nil, &fakeFetcher{}, newFakeWriter(), testlog.New(t), prometheus.NewRegistry()); err == nil {
		t.Error("New() accepted a nil pod lookup")
	}

	// A registration conflict registers nothing.
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "hindsight_scrape_errors_total", Help: "conflict"}))
	if _, err := New(cfg, lister, fakePodUIDs{}, &fakeFetcher{}, newFakeWriter(), testlog.New(t), reg); err == nil {
		t.Fatal("New() succeeded despite a conflicting metric")
	}
	if _, err := New(cfg, lister, fakePodUIDs{}, &fakeFetcher{}, newFakeWriter(), testlog.New(t), prometheus.NewPedanticRegistry()); err != nil {
		t.Errorf("New() on a fresh registry: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "hindsight_kubelet") || strings.HasPrefix(mf.GetName(), "hindsight_manager") {
			t.Errorf("failed New() left %s registered", mf.GetName())
		}
	}
}

func TestRunTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		env := newTestEnv(t, Config{}, &fakeFetcher{}, "a", "b", "c")
		stop := env.run(t)
		defer stop()

		b := <-env.writer.batches
		// First round at once: only the random start delay (up to 8 ms per node) passed.
		if d := time.Since(start); d >= 3*delayPerNode {
			t.Errorf("first batch after %v, want < %v", d, 3*delayPerNode)
		}
		if got := batchNodes(b); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Errorf("first batch nodes = %v", got)
		}
		for _, n := range b.Nodes {
			want := "uid-" + n.Node
			if n.Pods[0].UID != want || n.Containers[0].UID != want {
				t.Errorf("node %s: UIDs %q, %q; want %q", n.Node, n.Pods[0].UID, n.Containers[0].UID, want)
			}
		}
		if !env.s.LastTick().Equal(start) {
			t.Errorf("LastTick() = %v, want %v", env.s.LastTick(), start)
		}

		for round := 1; round <= 2; round++ {
			b = <-env.writer.batches
			tick := start.Add(time.Duration(round) * testResolution)
			if d := time.Since(tick); d < 0 || d >= 3*delayPerNode {
				t.Errorf("round %d written %v after its tick", round, d)
			}
			if !env.s.LastTick().Equal(tick) {
				t.Errorf("round %d: LastTick() = %v, want %v", round, env.s.LastTick(), tick)
			}
			if len(b.Nodes) != 3 {
				t.Errorf("round %d: %d nodes", round, len(b.Nodes))
			}
		}
		if got := counterValue(t, env.s.m.requestTotal, "true"); got != 9 {
			t.Errorf("request_total{success=true} = %v, want 9", got)
		}
		if got := testutil.CollectAndCount(env.s.m.tickDuration); got != 1 {
			t.Errorf("tick duration series = %d", got)
		}
	})
}

func TestRunRetriesTransientFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeFetcher{fn: func(_ context.Context, node *corev1.Node, attempt int) (tsdb.NodeScrape, error) {
			if node.Name == "flaky" && attempt <= 2 {
				return tsdb.NodeScrape{}, fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
			}
			return okScrape(node.Name), nil
		}}
		env := newTestEnv(t, Config{}, f, "flaky", "ok")
		stop := env.run(t)
		defer stop()

		b := <-env.writer.batches
		if got := batchNodes(b); !slices.Equal(got, []string{"flaky", "ok"}) {
			t.Errorf("batch nodes = %v, want the retried node too", got)
		}
		calls := f.callTimes("flaky")
		if len(calls) != 3 {
			t.Fatalf("flaky fetched %d times, want 3", len(calls))
		}
		if d1, d2 := calls[1].Sub(calls[0]), calls[2].Sub(calls[1]); d1 != time.Second || d2 != 2*time.Second {
			t.Errorf("backoff %v then %v, want 1s then 2s", d1, d2)
		}
		if got := counterValue(t, env.s.m.errors, ReasonNetwork); got != 2 {
			t.Errorf("scrape_errors_total{reason=network} = %v, want 2", got)
		}
		if f, s := counterValue(t, env.s.m.requestTotal, "false"), counterValue(t, env.s.m.requestTotal, "true"); f != 2 || s != 2 {
			t.Errorf("request_total false=%v true=%v, want 2 and 2", f, s)
		}
	})
}

func TestRunDoesNotRetryPermanentFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeFetcher{fn: func(_ context.Context, node *corev1.Node, _ int) (tsdb.NodeScrape, error) {
			if node.Name == "forbidden" {
				return tsdb.NodeScrape{}, &StatusError{Code: http.StatusForbidden, Status: "403 Forbidden"}
			}
			return okScrape(node.Name), nil
		}}
		env := newTestEnv(t, Config{}, f, "forbidden", "ok")
		stop := env.run(t)
		defer stop()

		b := <-env.writer.batches
		if got := batchNodes(b); !slices.Equal(got, []string{"ok"}) {
			t.Errorf("batch nodes = %v, want only ok", got)
		}
		if n := len(f.callTimes("forbidden")); n != 1 {
			t.Errorf("forbidden fetched %d times, want 1", n)
		}
		if got := counterValue(t, env.s.m.errors, ReasonHTTPStatus); got != 1 {
			t.Errorf("scrape_errors_total{reason=http_status} = %v", got)
		}
	})
}

func TestRunRoundEndsWithItsPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		f := &fakeFetcher{fn: func(ctx context.Context, node *corev1.Node, _ int) (tsdb.NodeScrape, error) {
			switch node.Name {
			case "hangs":
				<-ctx.Done()
				return tsdb.NodeScrape{}, ctx.Err()
			case "refuses":
				return tsdb.NodeScrape{}, syscall.ECONNREFUSED
			}
			return okScrape(node.Name), nil
		}}
		env := newTestEnv(t, Config{MaxAttempts: 10}, f, "hangs", "refuses", "ok")
		stop := env.run(t)
		defer stop()

		b := <-env.writer.batches
		if d := time.Since(start); d != testResolution {
			t.Errorf("batch written after %v, want exactly one period (%v) since a node hung", d, testResolution)
		}
		if got := batchNodes(b); !slices.Equal(got, []string{"ok"}) {
			t.Errorf("batch nodes = %v", got)
		}
		if got := counterValue(t, env.s.m.errors, ReasonTimeout); got != 1 {
			t.Errorf("scrape_errors_total{reason=timeout} = %v, want 1", got)
		}
		// Retries after 1, 2 and 4 s; the next one (8 s) would not leave a second of the period.
		calls := f.callTimes("refuses")
		if len(calls) != 4 {
			t.Errorf("refusing node fetched %d times in one period, want 4: %v", len(calls), calls)
		}
		if last := calls[len(calls)-1]; last.Sub(start) >= testResolution {
			t.Errorf("a retry started after the period: %v", last.Sub(start))
		}
	})
}

func TestRunBoundsConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeFetcher{fn: func(ctx context.Context, node *corev1.Node, _ int) (tsdb.NodeScrape, error) {
			select {
			case <-ctx.Done():
				return tsdb.NodeScrape{}, ctx.Err()
			case <-time.After(time.Second):
			}
			return okScrape(node.Name), nil
		}}
		var nodes []string
		for i := range 20 {
			nodes = append(nodes, fmt.Sprintf("n%02d", i))
		}
		env := newTestEnv(t, Config{Concurrency: 3}, f, nodes...)
		stop := env.run(t)
		defer stop()

		b := <-env.writer.batches
		if len(b.Nodes) != 20 {
			t.Errorf("batch has %d nodes, want 20", len(b.Nodes))
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.maxInFlight != 3 {
			t.Errorf("max in flight = %d, want 3", f.maxInFlight)
		}
	})
}

func TestRunSpreadsStartDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		f := &fakeFetcher{}
		var nodes []string
		for i := range 1000 {
			nodes = append(nodes, fmt.Sprintf("n%04d", i))
		}
		env := newTestEnv(t, Config{}, f, nodes...)
		stop := env.run(t)
		defer stop()

		<-env.writer.batches
		var first, last time.Duration = maxDelay, 0
		for _, n := range nodes {
			calls := f.callTimes(n)
			if len(calls) != 1 {
				t.Fatalf("node %s fetched %d times", n, len(calls))
			}
			d := calls[0].Sub(start)
			first, last = min(first, d), max(last, d)
		}
		// 1000 nodes × 8 ms is capped at 4 s.
		if last >= maxDelay || last < maxDelay/2 || first > maxDelay/2 {
			t.Errorf("start delays span [%v, %v], want them spread over [0, %v)", first, last, maxDelay)
		}
	})
}

func TestRunNodeSelector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sel, err := labels.Parse("pool=metrics")
		if err != nil {
			t.Fatal(err)
		}
		env := newTestEnv(t, Config{NodeSelector: sel}, &fakeFetcher{})
		addNode(t, env.nodes, "in", map[string]string{"pool": "metrics"})
		addNode(t, env.nodes, "out", map[string]string{"pool": "other"})
		stop := env.run(t)
		defer stop()

		if got := batchNodes(<-env.writer.batches); !slices.Equal(got, []string{"in"}) {
			t.Errorf("batch nodes = %v, want [in]", got)
		}
	})
}

func TestRunPrunesNodeMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		env := newTestEnv(t, Config{}, &fakeFetcher{}, "stays", "leaves")
		stop := env.run(t)
		defer stop()

		<-env.writer.batches
		if n, err := testutil.GatherAndCount(env.reg, "hindsight_kubelet_request_duration_seconds", "hindsight_kubelet_last_request_time_seconds"); err != nil || n != 4 {
			t.Fatalf("per-node series after round 1 = %d, %v; want 4", n, err)
		}
		if err := env.nodes.Delete(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "leaves"}}); err != nil {
			t.Fatal(err)
		}
		<-env.writer.batches
		want := fmt.Sprintf(`
# HELP hindsight_kubelet_last_request_time_seconds Time of the last request to the kubelet API since the Unix epoch in seconds.
# TYPE hindsight_kubelet_last_request_time_seconds gauge
hindsight_kubelet_last_request_time_seconds{node="stays"} %d
`, start.Add(testResolution).Unix())
		if err := testutil.GatherAndCompare(env.reg, strings.NewReader(want), "hindsight_kubelet_last_request_time_seconds"); err != nil {
			t.Error(err)
		}
		if n, err := testutil.GatherAndCount(env.reg, "hindsight_kubelet_request_duration_seconds"); err != nil || n != 1 {
			t.Errorf("request duration series after the node left = %d, %v; want 1", n, err)
		}
	})
}

func TestRunStopsCleanly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		f := &fakeFetcher{fn: func(ctx context.Context, _ *corev1.Node, _ int) (tsdb.NodeScrape, error) {
			close(started)
			<-ctx.Done()
			return tsdb.NodeScrape{}, ctx.Err()
		}}
		env := newTestEnv(t, Config{}, f, "a")
		stop := env.run(t)
		<-started
		stop()
		synctest.Wait()
		select {
		case b := <-env.writer.batches:
			t.Errorf("a batch was written during shutdown: %v", b)
		default:
		}
		if n := testutil.CollectAndCount(env.s.m.errors); n != 0 {
			t.Errorf("shutdown counted %d error series", n)
		}
	})
}

func TestRunCountsWriteErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := newTestEnv(t, Config{}, &fakeFetcher{}, "a")
		env.writer.err = errors.New("disk full")
		stop := env.run(t)
		defer stop()

		<-env.writer.batches
		<-env.writer.batches // the loop goes on
		if got := counterValue(t, env.s.m.errors, ReasonWrite); got < 1 {
			t.Errorf("scrape_errors_total{reason=write} = %v", got)
		}
	})
}

func TestCheckTimely(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		created := time.Now()
		env := newTestEnv(t, Config{}, &fakeFetcher{}, "a")
		limit := testResolution * 3 / 2

		// Before the first round (the informers of a large cluster still syncing), liveness
		// passes however long it takes: a restart would only start the sync again.
		for _, after := range []time.Duration{0, limit + time.Millisecond, 30 * time.Minute} {
			if err := env.s.CheckTimely(created.Add(after)); err != nil {
				t.Errorf("CheckTimely before Run, %s after New: %v", after, err)
			}
		}

		// A store that hangs stalls the loop: liveness fails 1.5 periods after the last tick.
		env.writer.block = true
		<-time.After(time.Second)
		stop := env.run(t)
		defer stop()
		synctest.Wait()
		tick := env.s.LastTick()
		if !tick.Equal(created.Add(time.Second)) {
			t.Fatalf("LastTick() = %v", tick)
		}
		<-time.After(limit)
		if err := env.s.CheckTimely(time.Now()); err != nil {
			t.Errorf("CheckTimely at the limit: %v", err)
		}
		<-time.After(time.Millisecond)
		if err := env.s.CheckTimely(time.Now()); err == nil || !strings.Contains(err.Error(), "22.501s ago") {
			t.Errorf("CheckTimely past the limit = %v", err)
		}
	})
}

// TestScrapeKubelets runs the whole path over real HTTPS on loopback: lister → client → decode
// → batch, with kwok's per-node paths on one server, a failing node and real retries.
func TestScrapeKubelets(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	hits := map[string]int{}
	k := newFakeKubelet(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		switch r.URL.Path {
		case "/metrics/nodes/kwok-0/metrics/resource", "/metrics/nodes/kwok-1/metrics/resource":
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
			_, _ = w.Write([]byte(kwokBody))
		default:
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	}))
	kc := newTestClient(t, KubeletConfig{CAFile: k.caFile, Timeout: 5 * time.Second})

	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, name := range []string{"kwok-0", "kwok-1", "broken"} {
		if err := idx.Add(kwokNode(name, k.port, "/metrics/nodes/"+name+"/metrics/resource")); err != nil {
			t.Fatal(err)
		}
	}
	w := newFakeWriter()
	reg := prometheus.NewPedanticRegistry()
	s, err := New(Config{Resolution: MinResolution, MaxAttempts: 2, RetryBackoff: 10 * time.Millisecond},
		corev1listers.NewNodeLister(idx), fakePodUIDs{"default/web-0": {"uid-web-0", "kwok-0"}}, kc, w, testlog.New(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	b := <-w.batches
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if got := batchNodes(b); !slices.Equal(got, []string{"kwok-0", "kwok-1"}) {
		t.Fatalf("batch nodes = %v", got)
	}
	// Both fake kubelets serve the same body: only the node the API places web-0 on keeps it.
	for _, n := range b.Nodes {
		want := 0
		if n.Node == "kwok-0" {
			want = 1
		}
		if !n.HasNode || len(n.Containers) != want || want == 1 && n.Containers[0].UID != "uid-web-0" {
			t.Errorf("node %s: %+v, want %d container of web-0", n.Node, n, want)
		}
	}
	if diff := cmp.Diff(map[string]int{
		"/metrics/nodes/kwok-0/metrics/resource": 1,
		"/metrics/nodes/kwok-1/metrics/resource": 1,
		"/metrics/nodes/broken/metrics/resource": 2,
	}, hits); diff != "" {
		t.Errorf("kubelet hits (-want +got):\n%s", diff)
	}
	want := `
# HELP hindsight_kubelet_request_total Number of requests sent to the kubelet API.
# TYPE hindsight_kubelet_request_total counter
hindsight_kubelet_request_total{success="false"} 2
hindsight_kubelet_request_total{success="true"} 2
# HELP hindsight_scrape_errors_total Failed kubelet scrape attempts (and rejected batch writes) by reason.
# TYPE hindsight_scrape_errors_total counter
hindsight_scrape_errors_total{reason="http_status"} 2
# HELP hindsight_scrape_dropped_samples_total Pod and container samples reported by kubelets and not stored, by reason: unknown_pod (not in the pod cache), wrong_node (the API places the pod elsewhere).
# TYPE hindsight_scrape_dropped_samples_total counter
hindsight_scrape_dropped_samples_total{reason="unknown_pod"} 0
hindsight_scrape_dropped_samples_total{reason="wrong_node"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "hindsight_kubelet_request_total", "hindsight_scrape_errors_total", "hindsight_scrape_dropped_samples_total"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}
