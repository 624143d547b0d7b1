package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hindsight-metrics/hindsight/internal/crashpoint"
	"github.com/hindsight-metrics/hindsight/internal/crashpoint/crashtest"
	"github.com/hindsight-metrics/hindsight/internal/testlog"
)

// compactChildEnv makes the test binary (see TestMain) run runCompactChild on the catalog
// directory it names instead of the tests.
const compactChildEnv = "HINDSIGHT_CATALOG_TEST_COMPACT_DIR"

// crashPods is how many pods the compacting child writes; every other one is deleted and
// pruned, so that the compaction has free pages to drop.
const crashPods = 400

// runCompactChild writes crashPods pods to dir/catalog.db, prunes half of them and compacts,
// which a crash point is meant to interrupt.
func runCompactChild(dir string) int {
	clk := newClock()
	c, err := Open(filepath.Join(dir, "catalog.db"), Options{Now: clk.Now, CompactEvery: -1, Retention: time.Minute}, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	for i := range crashPods {
		if err := c.UpsertPod(webPod(fmt.Sprint("uid-", i), fmt.Sprint("web-", i), "n1")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	err = c.Flush(ctx)
	for i := 0; err == nil && i < crashPods; i += 2 {
		err = c.MarkPodDeleted(fmt.Sprint("uid-", i), t0)
	}
	if err == nil {
		err = c.Flush(ctx)
	}
	if err == nil {
		clk.Set(time.Hour)
		_, err = c.Prune(ctx)
	}
	if err == nil {
		err = c.Compact(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestCompactCrash kills a compacting child process (this package's test binary built with
// -tags crashpoints) just before and just after the rename that swaps the compacted copy
// in. Open must succeed, strictly (no rebuild), with every live pod, and remove the copy.
func TestCompactCrash(t *testing.T) {
	t.Parallel()
	bin := crashtest.Binary(t)
	for _, tc := range []struct {
		point    string
		copyLeft bool // whether <path>.compact is on disk at the kill
	}{
		{crashpoint.CatalogCompactBeforeRename, true},
		{crashpoint.CatalogCompactAfterRename, false},
	} {
		t.Run(tc.point, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cmd := exec.Command(bin, "-test.run=^$")
			cmd.Env = append(os.Environ(), compactChildEnv+"="+dir, crashtest.Env(tc.point))
			out, err := cmd.CombinedOutput()
			if !crashtest.Killed(err) {
				t.Fatalf("child not killed at %s: %v\n%s", tc.point, err, out)
			}
			path := filepath.Join(dir, "catalog.db")
			if _, err := os.Stat(path + ".compact"); (err == nil) != tc.copyLeft {
				t.Errorf("compacted copy on disk at the kill: %v, want %v (stat: %v)", err == nil, tc.copyLeft, err)
			}
			c, err := Open(path, Options{CompactEvery: -1}, testlog.New(t))
			if err != nil {
				t.Fatalf("Open after the crash at %s: %v", tc.point, err)
			}
			defer c.Close()
			checkInvariants(t, c)
			found := 0
			for i := range crashPods {
				r, err := c.Pod(fmt.Sprint("uid-", i))
				if i%2 == 1 && err == nil && !r.Deleted {
					found++
				}
			}
			t.Logf("%s: %d live pods of %d found", tc.point, found, crashPods/2)
			if found != crashPods/2 {
				t.Errorf("found %d live pods, want %d", found, crashPods/2)
			}
			if _, err := os.Stat(path + ".compact"); err == nil {
				t.Errorf("Open left %s.compact", path)
			}
		})
	}
}
