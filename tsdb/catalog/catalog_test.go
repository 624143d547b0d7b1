package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
)

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	err := Options{Timeout: -1, BatchInterval: -1, BatchSize: -1, Retention: -1, MaxResults: -1}.Validate()
	for _, field := range []string{"Timeout", "BatchInterval", "BatchSize", "Retention", "MaxResults"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %v, want it to name %s", err, field)
		}
	}
	if err := (Options{CompactEvery: -1}).Validate(); err != nil {
		t.Errorf("negative CompactEvery (disabled) rejected: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "c.db"), Options{BatchSize: -1}, nil); err == nil {
		t.Error("Open accepted invalid options")
	}
}

func TestReopenKeepsRecords(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "catalog.db") // the directory is created
	clk := newClock()
	opts := Options{Now: clk.Now, CompactEvery: -1}
	c, err := Open(path, opts, testlog.New(t))
	if err != nil {
		t.Fatal(err)
	}
	must(t, c.UpsertPod(webPod("u1", "web-1", "n1")))
	must(t, c.UpsertNode(NodeRecord{Name: "n1", Zone: "a"}))
	want := dump(t, c) // nothing written yet: Close writes the queue
	if len(want["pods"]) != 0 {
		t.Fatalf("records written before Flush or Close: %v", want["pods"])
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.UpsertPod(webPod("u2", "web-2", "n1")); !errors.Is(err, ErrClosed) {
		t.Errorf("UpsertPod after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Pod("u1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Pod after Close = %v, want ErrClosed", err)
	}
	if _, err := os.Stat(ownerPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("owner file left after Close: %v", err)
	}

	c = openTestCatalog(t, path, opts)
	p, err := c.Pod("u1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "web-1" || !p.LastSeen.Equal(t0) {
		t.Errorf("reopened record %+v", p)
	}
	if n, err := c.Node("n1"); err != nil || n.Zone != "a" {
		t.Errorf("reopened node %+v, %v", n, err)
	}
}

func TestSecondOpenerFailsFast(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "catalog.db")
	first := openTestCatalog(t, path, Options{})

	const timeout = 200 * time.Millisecond
	start := time.Now()
	second, err := Open(path, Options{Timeout: timeout}, testlog.New(t))
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second Open of a held file succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	host, _ := os.Hostname()
	for _, want := range []string{path, fmt.Sprintf("pid %d", os.Getpid()), "host " + host} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// A generous bound: the point is that it does not wait forever.
	if elapsed > timeout+5*time.Second {
		t.Errorf("second Open took %s with a timeout of %s", elapsed, timeout)
	}
	// A failed opener leaves the holder's owner file alone.
	if got := readOwner(path); got != first.owner {
		t.Errorf("owner file %q, want %q", got, first.owner)
	}

	// Once the holder closes, the file opens.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openTestCatalog(t, path, Options{Timeout: timeout})
}

func TestLockedWithoutOwnerFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second}) // a holder that writes no owner file
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Open(path, Options{Timeout: 100 * time.Millisecond}, testlog.New(t))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "unknown process") {
		t.Errorf("Open = %v, want ErrLocked naming an unknown process", err)
	}
}

// writeCatalog writes a closed catalog with n pods at path.
func writeCatalog(t *testing.T, path string, n int) {
	t.Helper()
	c, err := Open(path, Options{Now: newClock().Now}, testlog.New(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		must(t, c.UpsertPod(webPod(fmt.Sprint("u", i), fmt.Sprint("web-", i), "n1")))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCorrupt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		corrupt func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			must(t, os.WriteFile(path, bytes.Repeat([]byte("not a bbolt file "), 1000), 0o600))
		}},
		{"few bytes", func(t *testing.T, path string) {
			must(t, os.WriteFile(path, []byte("x"), 0o600))
		}},
		{"truncated", func(t *testing.T, path string) {
			writeCatalog(t, path, 2000)
			fi, err := os.Stat(path)
			must(t, err)
			must(t, os.Truncate(path, fi.Size()/2))
		}},
		{"meta pages zeroed", func(t *testing.T, path string) {
			writeCatalog(t, path, 10)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt(make([]byte, 2*boltDefaultPage), 0)
			must(t, errors.Join(err, f.Close()))
		}},
		{"data pages overwritten", func(t *testing.T, path string) {
			writeCatalog(t, path, 2000)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			must(t, err)
			fi, err := f.Stat()
			must(t, err)
			junk := bytes.Repeat([]byte{0xA5}, int(fi.Size())-4*boltDefaultPage)
			_, err = f.WriteAt(junk, 4*boltDefaultPage)
			must(t, errors.Join(err, f.Close()))
		}},
		{"not a catalog", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			must(t, err)
			must(t, db.Update(func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("something else"))
				return err
			}))
			must(t, db.Close())
		}},
		{"other schema version", func(t *testing.T, path string) {
			writeCatalog(t, path, 1)
			db, err := bolt.Open(path, 0o600, nil)
			must(t, err)
			must(t, db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyVersion, []byte("99")) }))
			must(t, db.Close())
		}},
		{"undecodable record", func(t *testing.T, path string) {
			writeCatalog(t, path, 1)
			db, err := bolt.Open(path, 0o600, nil)
			must(t, err)
			must(t, db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPods).Put([]byte("u0"), []byte("{")) }))
			must(t, db.Close())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "catalog.db")
			tt.corrupt(t, path)
			before, err := os.ReadFile(path)
			must(t, err)

			if c, err := Open(path, Options{}, testlog.New(t)); !errors.Is(err, ErrCorrupt) {
				if err == nil {
					c.Close()
				}
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			} else if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the path", err)
			}
			if _, err := os.Stat(ownerPath(path)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("failed Open left an owner file: %v", err)
			}

			clk := newClock()
			c, err := OpenOrRebuild(path, Options{Now: clk.Now}, testlog.New(t))
			if err != nil {
				t.Fatalf("OpenOrRebuild: %v", err)
			}
			t.Cleanup(func() {
				checkInvariants(t, c)
				must(t, c.Close())
			})
			aside, err := os.ReadFile(fmt.Sprintf("%s.corrupt-%d", path, t0.Unix()))
			if err != nil {
				t.Fatalf("corrupt file not moved aside: %v", err)
			}
			if !bytes.Equal(aside, before) {
				t.Error("the file moved aside differs from the corrupt file")
			}
			if _, err := c.Pod("u0"); !errors.Is(err, ErrNotFound) {
				t.Errorf("rebuilt catalog: Pod = %v, want ErrNotFound", err)
			}
			must(t, c.UpsertPod(webPod("u1", "web-1", "n1")))
			flush(t, c)
			if _, err := c.Pod("u1"); err != nil {
				t.Errorf("rebuilt catalog: %v", err)
			}
		})
	}
}

func TestOpenOrRebuildKeepsSoundFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "catalog.db")
	for _, name := range []string{"missing", "empty"} {
		if name == "empty" {
			must(t, os.WriteFile(path, nil, 0o600)) // as left by a crash right after creation
		}
		c, err := OpenOrRebuild(path, Options{Now: newClock().Now}, testlog.New(t))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		must(t, c.Close())
		must(t, os.Remove(path))
	}
	writeCatalog(t, path, 3)
	c, err := OpenOrRebuild(path, Options{Now: newClock().Now}, testlog.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if pods, err := c.PodsInNamespace("", time.Time{}, time.Time{}); err != nil || len(pods) != 3 {
		t.Errorf("sound file: %d pods, %v; want 3", len(pods), err)
	}
	entries, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range entries {
		if strings.Contains(e.Name(), "corrupt") {
			t.Errorf("sound file moved aside: %s", e.Name())
		}
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// Inside the bubble time.Now is simulated, so the catalog uses the default clock.
		c := openTestCatalog(t, filepath.Join(t.TempDir(), "catalog.db"), Options{
			BatchInterval: time.Second, BatchSize: 10, Retention: time.Hour, CompactEvery: 3 * time.Hour,
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()
		wantTxs := func(step string, want uint64) {
			t.Helper()
			synctest.Wait()
			if s := c.Stats(); s.WriteTxs != want {
				t.Errorf("%s: %d write transactions, want %d (%+v)", step, s.WriteTxs, want, s)
			}
		}

		must(t, c.UpsertPod(webPod("u0", "web-0", "n1")))
		wantTxs("before the interval", 0)
		time.Sleep(time.Second) // simulated
		wantTxs("after the interval", 1)

		for i := range 10 {
			must(t, c.UpsertPod(webPod(fmt.Sprint("u", i+1), fmt.Sprint("web-", i+1), "n1")))
		}
		wantTxs("after BatchSize records", 2)

		// Deleted pods are pruned an hour after deletion, on Run's hourly prune.
		must(t, c.MarkPodDeleted("u1", time.Time{}))
		time.Sleep(time.Second)
		wantTxs("deletion", 3)
		time.Sleep(2 * time.Hour) // simulated; prunes at 1h (too early) and 2h
		synctest.Wait()
		if _, err := c.Pod("u1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("pod deleted an hour ago: Pod = %v, want ErrNotFound", err)
		}
		if _, err := c.Pod("u2"); err != nil {
			t.Errorf("live pod: %v", err)
		}
		before := dump(t, c)
		time.Sleep(time.Hour) // the compaction, at 3h
		synctest.Wait()
		if diff := cmp.Diff(before, dump(t, c)); diff != "" {
			t.Errorf("compaction changed the catalog (-before +after):\n%s", diff)
		}

		// Stopping writes what is queued.
		must(t, c.UpsertPod(webPod("u99", "web-99", "n1")))
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		if _, err := c.Pod("u99"); err != nil {
			t.Errorf("record queued before stop: %v", err)
		}
	})
}

func TestCloseStopsRun(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalog(t, Options{BatchInterval: time.Hour})
	done := make(chan error)
	go func() { done <- c.Run(t.Context()) }()
	must(t, c.UpsertPod(webPod("u1", "web-1", "n1")))
	must(t, c.Close())
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
