package catalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
)

func TestPrune(t *testing.T) {
	t.Parallel()
	c, clk := newTestCatalog(t, Options{Retention: time.Hour})
	must(t, c.UpsertPod(webPod("live", "web-live", "n1"))) // no event since: still kept
	must(t, c.UpsertPod(webPod("old", "web-old", "n1")))
	must(t, c.UpsertPod(webPod("recent", "web-recent", "n2")))
	must(t, c.UpsertNode(NodeRecord{Name: "n1"}))
	must(t, c.UpsertNode(NodeRecord{Name: "n2"}))
	clk.Set(10 * time.Minute)
	must(t, c.MarkPodDeleted("old", time.Time{}))
	must(t, c.MarkNodeDeleted("n1", time.Time{}))
	clk.Set(100 * time.Minute)
	must(t, c.MarkPodDeleted("recent", time.Time{}))
	flush(t, c)

	clk.Set(2 * time.Hour) // cutoff: 1h
	n, err := c.Prune(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("pruned %d records, want 2 (pod old, node n1)", n)
	}
	if _, err := c.Pod("old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("pruned pod: %v", err)
	}
	if pods, err := c.PodsByName("shop", "web-old"); err != nil || len(pods) != 0 {
		t.Errorf("pruned pod by name: %v, %v", uids(pods), err)
	}
	if _, err := c.Node("n1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("pruned node: %v", err)
	}
	pods, err := c.PodsInNamespace("shop", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"live", "recent"}, uids(pods)); diff != "" {
		t.Errorf("kept pods (-want +got):\n%s", diff)
	}

	c0, _ := newTestCatalog(t, Options{}) // no retention: nothing is pruned
	must(t, c0.UpsertPod(webPod("old", "web-old", "n1")))
	must(t, c0.MarkPodDeleted("old", at(-1000*time.Hour)))
	flush(t, c0)
	if n, err := c0.Prune(t.Context()); n != 0 || err != nil {
		t.Errorf("Prune without retention = %d, %v", n, err)
	}
}

func TestCompactKeepsEveryRecordAndShrinks(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "catalog.db")
	clk := newClock()
	opts := Options{Now: clk.Now, Retention: time.Hour, CompactEvery: -1, BatchSize: 10_000}
	c := openTestCatalog(t, path, opts)
	const pods, kept = 3000, 100
	for i := range pods {
		must(t, c.UpsertPod(webPod(fmt.Sprint("u", i), fmt.Sprint("web-", i), fmt.Sprint("n", i%50))))
	}
	for i := range 50 {
		must(t, c.UpsertNode(NodeRecord{Name: fmt.Sprint("n", i), Labels: map[string]string{"zone": "a"}}))
	}
	flush(t, c)
	clk.Set(time.Minute)
	for i := kept; i < pods; i++ {
		must(t, c.MarkPodDeleted(fmt.Sprint("u", i), time.Time{}))
	}
	flush(t, c)
	clk.Set(2 * time.Hour)
	if n, err := c.Prune(t.Context()); err != nil || n != pods-kept {
		t.Fatalf("Prune = %d, %v; want %d", n, err, pods-kept)
	}
	before, want := fileSize(path), dump(t, c)

	if err := c.Compact(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := fileSize(path)
	t.Logf("file: %d bytes before compaction, %d after", before, after)
	if after >= before/2 {
		t.Errorf("compaction left %d of %d bytes, want less than half", after, before)
	}
	if diff := cmp.Diff(want, dump(t, c)); diff != "" {
		t.Errorf("compaction changed the records (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
	// The compacted file is in use and takes writes.
	must(t, c.UpsertPod(webPod("new", "web-new", "n1")))
	flush(t, c)
	if _, err := c.Pod("new"); err != nil {
		t.Error(err)
	}
	// It is still locked: the swap left no window for a second opener.
	if _, err := Open(path, Options{Timeout: 50 * time.Millisecond}, testlog.New(t)); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open after compaction = %v, want ErrLocked", err)
	}
	// And it survives a reopen.
	want = dump(t, c)
	must(t, c.Close())
	c = openTestCatalog(t, path, opts)
	if diff := cmp.Diff(want, dump(t, c)); diff != "" {
		t.Errorf("reopened compacted file differs (-before +after):\n%s", diff)
	}
}

func TestCompactWhileBusy(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalog(t, Options{BatchSize: 20})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	const writers, perWriter = 2, 300
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				uid := fmt.Sprintf("w%d-%d", w, i)
				if err := c.UpsertPod(webPod(uid, uid, "n1")); err != nil {
					t.Errorf("UpsertPod: %v", err)
					return
				}
				if i%50 == 0 {
					if _, err := c.PodsOnNode("n1", time.Time{}, time.Time{}); err != nil && !errors.Is(err, ErrTooMany) {
						t.Errorf("PodsOnNode: %v", err)
					}
				}
			}
		})
	}
	for range 3 {
		if err := c.Compact(t.Context()); err != nil {
			t.Errorf("Compact: %v", err)
		}
	}
	cancel()
	wg.Wait()
	flush(t, c)
	pods, err := c.PodsOnNode("n1", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != writers*perWriter {
		t.Errorf("%d pods after concurrent compactions, want %d", len(pods), writers*perWriter)
	}
}

func TestCompactAfterClose(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalog(t, Options{})
	must(t, c.Close())
	if err := c.Compact(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Compact after Close = %v, want ErrClosed", err)
	}
	if err := c.Flush(t.Context()); err != nil {
		t.Errorf("Flush of an empty queue after Close = %v", err)
	}
}
