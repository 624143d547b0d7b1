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

// TestOwnGrowthStopsAtReserve lets the real TSDB fill a small real tmpfs by itself, with
// the TSDB's minutely head chunk write and its compactions forced every 10 simulated
// minutes (a chunk cut per series each time, with a 10-minute block range): appends stop
// at the reserve and nothing crashes. Without the check the volume fills to its last byte
// and the head chunk write panics ("preallocate: no space left on device").
func TestOwnGrowthStopsAtReserve(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	db, err := Open(Config{Dir: dir, Resolution: 15 * time.Second, BlockDuration: 10 * time.Minute}, slogt(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := genBatch(4, 30, 2)
	pausedRounds, rounds := 0, 0
	minFree := uint64(1 << 62)
	for ; rounds < 20000 && pausedRounds < 100; rounds++ {
		err := db.Write(ctx, b)
		switch {
		case errors.Is(err, ErrLowDiskSpace):
			pausedRounds++
		case err != nil:
			t.Logf("round %d: %v", rounds, err)
		}
		if rounds%40 == 39 {
			db.tsdb.ForceHeadMMap()
			if !db.space.compactionsOff { // the TSDB's loop compacts only while enabled
				if err := db.tsdb.Compact(ctx); err != nil {
					t.Logf("round %d: compact: %v", rounds, err)
				}
			}
		}
		if free, err := statfsFree(dir); err == nil {
			minFree = min(minFree, free)
		}
		advance(&b, 15*time.Second)
	}
	if pausedRounds == 0 {
		t.Fatalf("%d rounds written and never paused", rounds)
	}
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	t.Logf("%d rounds (%d paused), least free %d bytes, reserve %d", rounds, pausedRounds, minFree, diskReserve(int(db.tsdb.Head().NumSeries())))
}
