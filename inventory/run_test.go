package inventory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// repairFeed returns a Feed over informers that never run (repair only reads their
// stores) holding a resolved pod, a pod whose ReplicaSet is not cached and a node.
func repairFeed(t *testing.T) (*Feed, *fakeCatalog) {
	t.Helper()
	w := newFakeCatalog()
	f := testFeed(t, w)
	f.pods = cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Pod{}, 0, cache.Indexers{})
	f.nodes = cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Node{}, 0, cache.Indexers{})
	m, err := newFeedMetrics(w, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.metrics = m
	for _, p := range []*corev1.Pod{
		newPod("plain"),
		newPod("api-5f6d8-y2", withOwner(controllerRef("apps/v1", "ReplicaSet", "api-5f6d8", "uid-api-rs"))),
	} {
		if err := f.pods.GetStore().Add(p); err != nil {
			t.Fatal(err)
		}
		rec, resolved := f.podRecord(p, invT0)
		if err := f.writePod(p.UID, rec, resolved); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.nodes.GetStore().Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}); err != nil {
		t.Fatal(err)
	}
	return f, w
}

func opsOf(ops []fakeOp) []string {
	var out []string
	for _, op := range ops {
		out = append(out, op.kind+" "+op.key)
	}
	slices.Sort(out)
	return out
}

func TestRepair(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		periodic bool
		dropped  uint64 // the catalog's Stats.Dropped before the repair
		want     []string
	}{
		{"at start only reconciles", false, 0, []string{
			"reconcileNodes node-a", "reconcilePods uid-api-5f6d8-y2", "reconcilePods uid-plain",
		}},
		{"periodic rewrites the unresolved pod", true, 0, []string{
			"reconcileNodes node-a", "reconcilePods uid-api-5f6d8-y2", "reconcilePods uid-plain",
			"upsertPod uid-api-5f6d8-y2",
		}},
		{"dropped records rewrite everything", true, 3, []string{
			"reconcileNodes node-a", "reconcilePods uid-api-5f6d8-y2", "reconcilePods uid-plain",
			"upsertNode node-a", "upsertPod uid-api-5f6d8-y2", "upsertPod uid-plain",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, w := repairFeed(t)
			w.setStats(catalog.Stats{Dropped: tt.dropped}, nil)
			before := len(w.allOps())
			f.repair(t.Context(), tt.periodic)
			if got := opsOf(w.opsSince(before)); !slices.Equal(got, tt.want) {
				t.Errorf("repair ops = %q, want %q", got, tt.want)
			}
			for _, op := range w.opsSince(before) {
				if !op.at.Equal(invT0) {
					t.Errorf("%s %s at %s, want the repair's start %s", op.kind, op.key, op.at, invT0)
				}
			}
			if got := testutil.ToFloat64(f.metrics.repairs.WithLabelValues("success")); got != 1 {
				t.Errorf("successful repairs = %v, want 1", got)
			}
			if tt.dropped > 0 {
				// Once everything was rewritten, the same drop count rewrites only the dirty.
				before = len(w.allOps())
				f.repair(t.Context(), true)
				if got := opsOf(w.opsSince(before)); slices.Contains(got, "upsertPod uid-plain") {
					t.Errorf("second repair rewrote a clean pod again: %q", got)
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	f, w := repairFeed(t)
	if err := f.Check(); err == nil || !strings.Contains(err.Error(), "not synced") {
		t.Errorf("Check before sync = %v, want not synced", err)
	}
	f.synced = true
	if err := f.Check(); err != nil {
		t.Errorf("Check in sync = %v, want nil", err)
	}
	diskFull := errors.New("no space left on device")
	w.setStats(catalog.Stats{}, diskFull)
	if err := f.Check(); !errors.Is(err, diskFull) {
		t.Errorf("Check while the catalog cannot write = %v, want its error", err)
	}
	w.setStats(catalog.Stats{}, nil)
	w.setErr(diskFull) // every call fails, as a closed or full catalog's queue
	f.repair(t.Context(), true)
	if err := f.Check(); !errors.Is(err, diskFull) {
		t.Errorf("Check after a failed repair = %v, want the repair's error", err)
	}
	if got := testutil.ToFloat64(f.metrics.repairs.WithLabelValues("failure")); got != 1 {
		t.Errorf("failed repairs = %v, want 1", got)
	}
	w.setErr(nil)
	f.repair(t.Context(), true)
	if err := f.Check(); err != nil {
		t.Errorf("Check after a repair succeeded again = %v, want nil", err)
	}
}

func TestRepairCancelledReportsNothing(t *testing.T) {
	t.Parallel()
	f, w := repairFeed(t)
	w.setErr(errors.New("boom"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f.repair(ctx, true)
	f.synced = true
	if err := f.Check(); err != nil {
		t.Errorf("Check after a cancelled repair = %v, want nil", err)
	}
}

func TestRunFailsWhenHandlersCannotBeAdded(t *testing.T) {
	t.Parallel()
	client := fake.NewSimpleClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	f, err := New(newFakeCatalog(), factoryConfig(factory), testlog.New(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), f.ownerSynced...) {
		t.Fatal("caches did not sync")
	}
	cancel()
	factory.Shutdown() // the informers have stopped: a handler cannot be added any more
	runCtx := t.Context()
	if err := f.Run(runCtx); err == nil || !strings.Contains(err.Error(), "start catalog feed") {
		t.Errorf("Run over stopped informers = %v, want an error", err)
	}
}

func TestFeedMetrics(t *testing.T) {
	t.Parallel()
	w := newFakeCatalog()
	w.setStats(catalog.Stats{Queued: 7, WriteTxs: 3, Dropped: 2, Bytes: 4096}, errors.New("full"))
	reg := prometheus.NewRegistry()
	if _, err := newFeedMetrics(w, reg); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP hindsight_catalog_dropped_records_total Catalog records lost because a write failed while the queue was full; the next repair rewrites every object.
# TYPE hindsight_catalog_dropped_records_total counter
hindsight_catalog_dropped_records_total 2
# HELP hindsight_catalog_queued_records Catalog records waiting for the next write.
# TYPE hindsight_catalog_queued_records gauge
hindsight_catalog_queued_records 7
# HELP hindsight_catalog_size_bytes Size of the catalog file.
# TYPE hindsight_catalog_size_bytes gauge
hindsight_catalog_size_bytes 4096
# HELP hindsight_catalog_writable 1 while the catalog's writes succeed, 0 while they fail.
# TYPE hindsight_catalog_writable gauge
hindsight_catalog_writable 0
# HELP hindsight_catalog_write_transactions_total Write transactions committed to the catalog since the process started.
# TYPE hindsight_catalog_write_transactions_total counter
hindsight_catalog_write_transactions_total 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"hindsight_catalog_dropped_records_total", "hindsight_catalog_queued_records", "hindsight_catalog_size_bytes",
		"hindsight_catalog_writable", "hindsight_catalog_write_transactions_total"); err != nil {
		t.Error(err)
	}
	w.mu.Lock()
	calls := w.calls
	w.mu.Unlock()
	if calls != 1 {
		t.Errorf("one gathering read the catalog's Stats %d times, want once (Stats stats the file)", calls)
	}
	if _, err := newFeedMetrics(w, reg); err == nil {
		t.Error("registering the catalog metrics twice succeeded")
	}
}
