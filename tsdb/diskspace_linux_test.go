package tsdb

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestFullTmpfs runs the real TSDB on a real tmpfs filled to 1 MiB below the reserve:
// the statfs check pauses appends, a forced head chunk write and Close do not crash, a
// reopen on the full volume starts paused with every stored round, and appends
// resume once the filler is gone.
func TestFullTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })

	cfg := Config{Dir: dir, Resolution: 15 * time.Second, BlockDuration: 10 * time.Minute}
	db, err := Open(cfg, slogt(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// 50 rounds of 15 s: the head cuts a chunk per series at the 10-minute boundaries.
	start := time.Now().Add(-15 * time.Minute).Truncate(time.Millisecond)
	for i := range 50 {
		if err := db.Write(ctx, diskRound(start, i)); err != nil {
			t.Fatalf("round %d with space: %v", i, err)
		}
	}
	free0, _ := statfsFree(dir)
	reserve := diskReserve(DefaultExpectedSeries)
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	if err := filler.Truncate(0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		free, err := statfsFree(dir)
		if err != nil {
			t.Fatal(err)
		}
		if free < reserve-1<<20 {
			break
		}
		if _, err := filler.Write(buf[:min(uint64(len(buf)), free-(reserve-1<<20)+1)]); err != nil {
			t.Fatal(err)
		}
	}
	filler.Close()
	freeFull, _ := statfsFree(dir)
	for i := 50; i < 60; i++ {
		if err := db.Write(ctx, diskRound(start, i)); !errors.Is(err, ErrLowDiskSpace) {
			t.Fatalf("round %d on the full volume: %v, want ErrLowDiskSpace", i, err)
		}
	}
	db.tsdb.ForceHeadMMap() // the TSDB's minutely head chunk write, forced
	if err := db.Close(); err != nil {
		t.Logf("Close on the full volume: %v", err)
	}
	freeClosed, _ := statfsFree(dir)

	opened := time.Now()
	db, err = Open(cfg, slogt(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("Open on the full volume: %v", err)
	}
	openTook := time.Since(opened)
	defer db.Close()
	if err := db.StorageHealth(); !errors.Is(err, ErrLowDiskSpace) {
		t.Errorf("StorageHealth after Open on the full volume: %v, want ErrLowDiskSpace", err)
	}
	if got := storedRounds(t, db); got != 50 {
		t.Errorf("%d rounds stored after reopening, want 50", got)
	}
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(ctx, diskRound(start, 60)); err != nil {
		t.Errorf("Write once the filler is gone: %v", err)
	}
	if got := storedRounds(t, db); got != 51 {
		t.Errorf("%d rounds stored once the filler is gone, want 51", got)
	}
	t.Logf("reserve %d; free with space %d, full %d, after Close %d; reopened on the full volume in %s",
		reserve, free0, freeFull, freeClosed, openTook.Round(time.Millisecond))
}
