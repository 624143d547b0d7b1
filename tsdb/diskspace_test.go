package tsdb

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeDisk is a file system whose free space the test sets.
type fakeDisk struct{ free atomic.Uint64 }

func (d *fakeDisk) freeBytes(string) (uint64, error) { return d.free.Load(), nil }

const plentyOfSpace = 1 << 40

// diskRound returns round i of a one-node, one-container cluster scraped every 15s from
// start.
func diskRound(start time.Time, i int) Batch {
	ts := start.Add(time.Duration(i) * 15 * time.Second)
	return batch(node("n1", ts, float64(i+1), 1e9,
		ctr("ns/p", "c", ts, start.Add(-time.Hour), float64(i+1)/2, 5e8)))
}

// storedRounds returns how many samples the TSDB holds of n1's CPU series.
func storedRounds(t *testing.T, db *DB) int {
	t.Helper()
	for series, samples := range readAll(t, db.tsdb) {
		if strings.Contains(series, `__name__="node_cpu_usage_seconds_total"`) {
			return len(samples)
		}
	}
	return 0
}

// TestLowDiskSpacePausesAppends writes rounds while the free space goes from plenty to
// below the reserve and back: below it, nothing reaches the TSDB, the rounds are counted,
// the window keeps moving, StorageHealth and hindsight_storage_writable report it and
// compactions are off; above it, appends resume by themselves. Between the reserve and
// the reserve plus a compaction's estimate, appends go on and compactions stay off.
func TestLowDiskSpacePausesAppends(t *testing.T) {
	log, logs := captureLog(t)
	db := openTestDB(t, Config{}, log)
	disk := &fakeDisk{}
	db.freeBytes = disk.freeBytes
	reserve := diskReserve(DefaultExpectedSeries)

	start := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	steps := []struct {
		name        string
		free        uint64
		wantStored  bool
		wantCompact bool
	}{
		{"plenty", plentyOfSpace, true, true},
		{"plenty", plentyOfSpace, true, true},
		{"above the reserve, not a compaction", reserve + 1, true, false},
		{"one byte below the reserve", reserve - 1, false, false},
		{"empty", 0, false, false},
		{"below the reserve", reserve / 2, false, false},
		{"back", plentyOfSpace, true, true},
		{"back", plentyOfSpace, true, true},
	}
	stored, dropped := 0, 0
	for i, st := range steps {
		disk.free.Store(st.free)
		b := diskRound(start, i)
		err := db.Write(context.Background(), b)
		if st.wantStored {
			stored++
			if err != nil {
				t.Errorf("round %d (%s): Write: %v", i, st.name, err)
			}
		} else {
			dropped += b.Len()
			if !errors.Is(err, ErrLowDiskSpace) {
				t.Errorf("round %d (%s): Write: %v, want ErrLowDiskSpace", i, st.name, err)
			}
		}
		if got := storedRounds(t, db); got != stored {
			t.Errorf("round %d (%s): %d rounds stored, want %d", i, st.name, got, stored)
		}
		if got := testutil.ToFloat64(db.m.dropped[dropLowSpace]); int(got) != dropped {
			t.Errorf("round %d (%s): dropped_samples_total{low_disk_space} = %v, want %d", i, st.name, got, dropped)
		}
		health := db.StorageHealth()
		if st.wantStored && health != nil {
			t.Errorf("round %d (%s): StorageHealth: %v, want nil", i, st.name, health)
		}
		if !st.wantStored && (!errors.Is(health, ErrLowDiskSpace) || !strings.Contains(health.Error(), "below the reserve")) {
			t.Errorf("round %d (%s): StorageHealth: %v, want ErrLowDiskSpace", i, st.name, health)
		}
		if w, want := testutil.ToFloat64(db.m.writable), map[bool]float64{true: 1, false: 0}[st.wantStored]; w != want {
			t.Errorf("round %d (%s): hindsight_storage_writable = %v, want %v", i, st.name, w, want)
		}
		if got := testutil.ToFloat64(db.m.freeBytes); uint64(got) != st.free {
			t.Errorf("round %d (%s): hindsight_storage_free_bytes = %v, want %d", i, st.name, got, st.free)
		}
		if db.space.compactionsOff == st.wantCompact {
			t.Errorf("round %d (%s): compactions off = %v, want %v", i, st.name, db.space.compactionsOff, !st.wantCompact)
		}
		// The window is fed whatever the disk: its newest point is this round's.
		u := db.NodeUsage([]string{"n1"})
		if i > 0 && (len(u) != 1 || !u[0].Timestamp.Equal(b.Nodes[0].NodeSample.Time)) {
			t.Errorf("round %d (%s): NodeUsage = %+v, want a window ending at %s", i, st.name, u, b.Nodes[0].NodeSample.Time)
		}
	}
	t.Logf("reserve %d bytes; %d samples dropped in 3 rounds, %d of %d rounds stored", reserve, dropped, stored, len(steps))
	if n := len(logs.find("appends to the TSDB are paused")); n != 1 {
		t.Errorf("%d pause warnings, want 1", n)
	}
	if n := len(logs.find("appends to the TSDB resume", "roundsNotStored=3")); n != 1 {
		t.Errorf("%d resume lines with roundsNotStored=3, want 1", n)
	}
	if n := len(logs.find("Compactions paused")); n != 1 {
		t.Errorf("%d compaction pause lines, want 1", n)
	}
}

// TestCompactionsOffKeepsMinutelyPass writes a round every 15 s for ten minutes with the
// free space between the reserve and a compaction's estimate (appends on, compactions
// off) and a one-minute block range, so that every series cuts a head chunk a minute. The
// TSDB's minutely pass (block reload with retention, head chunk m-map) must still run
// about once a minute, so that at the end at most two chunks a series (the open one and
// one cut since the last pass) wait on the heap for Close to write, as the reserve
// assumes. Through the DB's appender (before appenderV2) it ran once, in the minute
// before the head became compactable, and 50 of the 55 chunks were left.
func TestCompactionsOffKeepsMinutelyPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		disk := &fakeDisk{}
		disk.free.Store(diskReserve(DefaultExpectedSeries) + 1)
		reg := prometheus.NewRegistry()
		db, err := open(Config{Dir: t.TempDir(), Resolution: 15 * time.Second, BlockDuration: time.Minute}, slogt(t), reg, disk.freeBytes)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		reloads := gathered(t, reg, "prometheus_tsdb_reloads_total")
		start := time.Now()
		const rounds = 41 // ten minutes at 15 s
		for i := range rounds {
			write(t, db, diskRound(start, i))
			time.Sleep(15 * time.Second)
		}
		if !db.space.compactionsOff {
			t.Fatal("compactions on: the test did not put the disk between the reserve and a compaction")
		}
		series, created, mmapped := gathered(t, reg, "prometheus_tsdb_head_series"), gathered(t, reg, "prometheus_tsdb_head_chunks_created_total"), gathered(t, reg, "prometheus_tsdb_mmap_chunks_total")
		passes := gathered(t, reg, "prometheus_tsdb_reloads_total") - reloads
		t.Logf("%v series, %v head chunks cut, %v m-mapped; %v minutely passes in %s", series, created, mmapped, passes, time.Since(start))
		if created < 10*series {
			t.Fatalf("%v head chunks cut for %v series, want at least 10 each: the block range did not cut them", created, series)
		}
		if passes < 9 {
			t.Errorf("%v minutely passes (block reloads) in ten minutes with compactions off, want at least 9", passes)
		}
		if left := created - mmapped; left > 2*series {
			t.Errorf("%v head chunks not m-mapped after ten minutes with compactions off (%v cut, %v m-mapped), want at most 2 a series (%v)", left, created, mmapped, 2*series)
		}
	})
}

// gathered returns the value of the unlabelled counter or gauge name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

// TestOpenWithLowDiskSpace reopens a storage whose disk is below the reserve: Open
// succeeds with appends paused, serves the restored window, stores nothing until the
// space is back and then stores by itself.
func TestOpenWithLowDiskSpace(t *testing.T) {
	dir := t.TempDir()
	start := time.Now().Add(-30 * time.Second).Truncate(time.Millisecond)
	db := newTestDB(t, Config{Dir: dir})
	write(t, db, diskRound(start, 0), diskRound(start, 1))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	disk := &fakeDisk{}
	disk.free.Store(diskReserve(DefaultExpectedSeries) - 1)
	db, err := open(Config{Dir: dir, Resolution: 15 * time.Second}, slogt(t), prometheus.NewRegistry(), disk.freeBytes)
	if err != nil {
		t.Fatalf("Open below the reserve: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.StorageHealth(); !errors.Is(err, ErrLowDiskSpace) || !strings.Contains(err.Error(), "(0 rounds not stored;") {
		t.Errorf("StorageHealth after Open: %v, want ErrLowDiskSpace with 0 rounds", err)
	}
	if !db.space.compactionsOff {
		t.Error("compactions on after Open below the reserve")
	}
	if u := db.NodeUsage([]string{"n1"}); len(u) != 1 {
		t.Errorf("NodeUsage after Open: %+v, want the restored window", u)
	}
	if err := db.Write(context.Background(), diskRound(start, 2)); !errors.Is(err, ErrLowDiskSpace) {
		t.Errorf("Write below the reserve: %v, want ErrLowDiskSpace", err)
	}
	if got := storedRounds(t, db); got != 2 {
		t.Errorf("%d rounds stored, want 2", got)
	}
	disk.free.Store(plentyOfSpace)
	if err := db.Write(context.Background(), diskRound(start, 3)); err != nil {
		t.Errorf("Write with space back: %v", err)
	}
	if got := storedRounds(t, db); got != 3 {
		t.Errorf("%d rounds stored, want 3", got)
	}
	if err := db.StorageHealth(); err != nil {
		t.Errorf("StorageHealth with space back: %v", err)
	}
	if db.space.compactionsOff {
		t.Error("compactions still off with space back")
	}
}

// TestDiskReserve pins the documented arithmetic (diskspace.go, docs/reliability.md).
func TestDiskReserve(t *testing.T) {
	for _, tc := range []struct {
		series int
		want   uint64
	}{
		{0, 7_471_104},
		{1_000, 11_567_104},
		{100_000, 417_071_104},
	} {
		if got := diskReserve(tc.series); got != tc.want {
			t.Errorf("diskReserve(%d) = %d, want %d", tc.series, got, tc.want)
		}
	}
}
