package tsdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func init() {
	helpers["file-size-limit"] = runFileSizeLimitHelper
}

// runFileSizeLimitHelper is the "file-size-limit" child process: the real TSDB meets a
// real write error. It writes a round, caps the size of its files just above the WAL
// segment's (RLIMIT_FSIZE, with SIGXFSZ ignored, makes the next WAL write fail with EFBIG,
// as a full disk fails it with ENOSPC), writes a round that must fail, lifts the cap, and
// writes a round that must succeed. It prints "ok" when everything went as expected.
func runFileSizeLimitHelper(dir string) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		return 1
	}
	db, err := Open(Config{Dir: dir}, slog.New(slog.NewTextHandler(os.Stderr, nil)), nil)
	if err != nil {
		return fail("open: %v", err)
	}
	defer db.Close()
	ctx := context.Background()
	bs := helperBatches()
	if err := db.Write(ctx, bs[0]); err != nil {
		return fail("first write: %v", err)
	}
	seg, err := newestWALSegment(dir)
	if err != nil {
		return fail("%v", err)
	}
	fi, err := os.Stat(seg)
	if err != nil {
		return fail("%v", err)
	}
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		return fail("getrlimit: %v", err)
	}
	signal.Ignore(syscall.SIGXFSZ)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(fi.Size()) + 10, Max: limit.Max}); err != nil {
		return fail("setrlimit: %v", err)
	}
	if err := db.Write(ctx, bs[1]); !errors.Is(err, syscall.EFBIG) {
		return fail("write with the WAL capped: %v, want EFBIG", err)
	}
	if err := db.StorageHealth(); !errors.Is(err, syscall.EFBIG) {
		return fail("StorageHealth with the WAL capped: %v, want EFBIG", err)
	}
	if got := db.NodeUsage([]string{"n1"}); len(got) != 1 {
		return fail("NodeUsage with the WAL capped: %v, want n1's window", got)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		return fail("setrlimit: %v", err)
	}
	if err := db.Write(ctx, bs[2]); err != nil {
		return fail("write once the cap is lifted: %v", err)
	}
	if err := db.StorageHealth(); err != nil {
		return fail("StorageHealth once the cap is lifted: %v, want nil", err)
	}
	if err := db.Close(); err != nil {
		return fail("close: %v", err)
	}
	fmt.Println("ok")
	return 0
}

// TestWriteFailureOnDisk checks, on a real WAL that fails to grow, that a failed commit is
// reported and that writing resumes by itself; then that the storage reopens with every
// round that was committed.
func TestWriteFailureOnDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := helperCommand(t, "file-size-limit", dir)
	out, err := cmd.Output()
	if err != nil || string(out) != "ok\n" {
		t.Fatalf("child process: %v, output %q", err, out)
	}

	db := newTestDB(t, Config{Dir: dir})
	got := readAll(t, db.tsdb)
	bs := helperBatches()
	// The committed rounds are kept. The failed round's WAL record stays in the WAL's page
	// buffer and is written with the next commit: after a crash, WAL replay brings it back;
	// after Close, the memory snapshot restores the head without it. Either is right.
	committed, all := storedAfter(t, []Batch{bs[0], bs[2]}), storedAfter(t, bs[:3])
	if !cmp.Equal(got, committed) && !cmp.Equal(got, all) {
		t.Errorf("stored after reopening (-committed rounds +got):\n%s", cmp.Diff(committed, got))
	}
	t.Logf("the failed round was replayed: %v", cmp.Equal(got, all))
}
