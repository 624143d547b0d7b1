package catalog

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(compactChildEnv); dir != "" {
		os.Exit(runCompactChild(dir))
	}
	goleak.VerifyTestMain(m)
}

// t0 is the start of simulated time in tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t0 plus d.
func (c *clock) Set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t0.Add(d)
}

// newTestCatalog opens a catalog in a temporary directory with a simulated clock (unless
// opts has one) and compaction off (unless opts asks for it), and closes it when the test
// ends, after checking its invariants.
func newTestCatalog(t testing.TB, opts Options) (*Catalog, *clock) {
	t.Helper()
	clk := newClock()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.CompactEvery == 0 {
		opts.CompactEvery = -1
	}
	return openTestCatalog(t, filepath.Join(t.TempDir(), "catalog.db"), opts), clk
}

// openTestCatalog opens path and registers its invariant check and Close.
func openTestCatalog(t testing.TB, path string, opts Options) *Catalog {
	t.Helper()
	c, err := Open(path, opts, testlog.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Flush(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Flush: %v", err)
		}
		checkInvariants(t, c)
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// flush writes the queue and fails the test on an error.
func flush(t testing.TB, c *Catalog) {
	t.Helper()
	if err := c.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// must fails the test on a non-nil error, for the queueing methods.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkInvariants checks what must hold of the file after any sequence of operations:
// every record decodes under its own key and is internally consistent, every index entry
// of every record exists with the record's span, and every index entry belongs to a
// record. A closed catalog is skipped.
func checkInvariants(t testing.TB, c *Catalog) {
	t.Helper()
	err := c.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyVersion); string(v) != schemaVersion {
			t.Errorf("schema version %q, want %q", v, schemaVersion)
		}
		want := map[string]map[string][]byte{} // bucket → key → span
		for _, b := range podIndexes {
			want[string(b)] = map[string][]byte{}
		}
		err := tx.Bucket(bucketPods).ForEach(func(k, v []byte) error {
			r, err := decodePod(v)
			if err != nil {
				t.Errorf("pod %s: %v", k, err)
				return nil
			}
			if r.UID != string(k) {
				t.Errorf("pod under key %s has UID %s", k, r.UID)
			}
			checkPodRecord(t, &r)
			for _, e := range podIndexEntries(&r) {
				want[string(e.bucket)][e.key] = podSpan(&r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, b := range podIndexes {
			got := map[string][]byte{}
			err := tx.Bucket(b).ForEach(func(k, v []byte) error {
				got[string(k)] = slices.Clone(v)
				return nil
			})
			if err != nil {
				return err
			}
			for k, v := range want[string(b)] {
				if g, ok := got[k]; !ok {
					t.Errorf("index %s lacks %q", b, k)
				} else if !bytes.Equal(g, v) {
					t.Errorf("index %s: %q has span %x, its record's is %x", b, k, g, v)
				}
			}
			for k := range got {
				if _, ok := want[string(b)][k]; !ok {
					t.Errorf("index %s: %q belongs to no record", b, k)
				}
			}
		}
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			r, err := decodeNode(v)
			if err != nil {
				t.Errorf("node %s: %v", k, err)
				return nil
			}
			if r.Name != string(k) {
				t.Errorf("node under key %s has name %s", k, r.Name)
			}
			if r.LastSeen.Before(r.FirstSeen) || r.Deleted != !r.DeletedAt.IsZero() {
				t.Errorf("node %s: inconsistent times %+v", k, r)
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("check invariants: %v", err)
	}
}

// checkPodRecord checks one pod's times and container histories.
func checkPodRecord(t testing.TB, r *PodRecord) {
	t.Helper()
	if r.LastSeen.Before(r.FirstSeen) {
		t.Errorf("pod %s: LastSeen %s before FirstSeen %s", r.UID, r.LastSeen, r.FirstSeen)
	}
	if r.Deleted == r.DeletedAt.IsZero() {
		t.Errorf("pod %s: Deleted %t with DeletedAt %s", r.UID, r.Deleted, r.DeletedAt)
	}
	if r.Deleted && r.DeletedAt.After(r.LastSeen) {
		t.Errorf("pod %s: DeletedAt %s after LastSeen %s", r.UID, r.DeletedAt, r.LastSeen)
	}
	for _, ct := range r.Containers {
		n := len(ct.Changes)
		if n == 0 {
			t.Errorf("pod %s container %s: no resource history", r.UID, ct.Name)
			continue
		}
		if !maps.Equal(ct.Changes[n-1].Requests, ct.Requests) || !maps.Equal(ct.Changes[n-1].Limits, ct.Limits) {
			t.Errorf("pod %s container %s: last change %+v is not the current resources", r.UID, ct.Name, ct.Changes[n-1])
		}
		if !slices.IsSortedFunc(ct.Changes, func(a, b ResourceChange) int { return a.At.Compare(b.At) }) {
			t.Errorf("pod %s container %s: changes out of order", r.UID, ct.Name)
		}
		if ct.Changes[0].At.Before(r.FirstSeen) || ct.Changes[n-1].At.After(r.LastSeen) {
			t.Errorf("pod %s container %s: changes outside [FirstSeen, LastSeen]", r.UID, ct.Name)
		}
	}
}

// dump returns every key and value of every bucket.
func dump(t testing.TB, c *Catalog) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	err := c.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string]string{}
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = string(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	cpu = "cpu"
	mem = "memory"
)

// res returns a resource map of CPU millicores and memory bytes.
func res(milli, bytes int64) map[string]int64 {
	return map[string]int64{cpu: milli, mem: bytes}
}

// webPod is a pod of Deployment web (through ReplicaSet web-7d9f) in namespace shop.
func webPod(uid, name, node string) PodRecord {
	return PodRecord{
		UID:        uid,
		Namespace:  "shop",
		Name:       name,
		Node:       node,
		Labels:     map[string]string{"app": "web", "pod-template-hash": "7d9f"},
		Owner:      Owner{Kind: "Deployment", Name: "web"},
		Controller: Owner{Kind: "ReplicaSet", Name: "web-7d9f"},
		QoSClass:   "Burstable",
		Containers: []ContainerSpec{
			{Name: "init-db", Init: true, Requests: res(50, 32<<20)},
			{Name: "web", Requests: res(250, 256<<20), Limits: res(1000, 512<<20)},
		},
	}
}
