package tsdb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtsdb "github.com/prometheus/prometheus/tsdb"
)

// Child processes: helperEnv makes the test binary (see TestMain) run helpers[mode] on the
// directory helperDirEnv names instead of the tests, and exit with its result.
const (
	helperEnv    = "HINDSIGHT_TSDB_TEST_HELPER"
	helperDirEnv = "HINDSIGHT_TSDB_TEST_DIR"
)

// helpers are the child processes' modes.
var helpers = map[string]func(dir string) int{
	"hold": runHelper,
}

// helperCommand returns the command that runs the test binary as the helper mode on dir.
func helperCommand(t *testing.T, mode, dir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir)
	cmd.Stderr = tbWriter{t}
	return cmd
}

// helperBatches are the scrape rounds the child process writes: one commit each.
func helperBatches() []Batch {
	var bs []Batch
	for i := range 5 {
		ts := at(time.Duration(i) * 15 * time.Second)
		bs = append(bs, batch(node("n1", ts, 10+float64(i), 1e6+float64(i),
			ctr("ns/p", "a", ts, old, 1+float64(i)/10, 1e5), ctr("ns/p", "b", ts, old, 2+float64(i)/10, 2e5))))
	}
	return bs
}

// runHelper is the "hold" child process: it opens the storage in dir, writes
// helperBatches, prints "ready", and holds the storage until its stdin closes.
func runHelper(dir string) int {
	db, err := Open(Config{Dir: dir}, nil, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, b := range helperBatches() {
		if err := db.Write(context.Background(), b); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := db.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startHelper starts a child process that holds the storage in dir (runHelper) and returns
// once it has written helperBatches. kill ends it with SIGKILL, as a crash or the OOM
// killer would, and waits for it; the test's cleanup does the same if need be.
func startHelper(t *testing.T, dir string) (pid int, kill func()) {
	t.Helper()
	cmd := helperCommand(t, "hold", dir)
	kill = startReady(t, cmd)
	return cmd.Process.Pid, kill
}

// startReady starts cmd, a child that prints the line "ready" once it has written and then holds
// its storage until its stdin closes, and returns once it is ready. kill ends it with
// SIGKILL and waits for it; the test's cleanup does the same if need be.
func startReady(t *testing.T, cmd *exec.Cmd) (kill func()) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			_ = stdin.Close()
		})
	}
	t.Cleanup(kill)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == "ready" {
			return kill
		}
	}
	t.Fatalf("child process: no \"ready\" (%v)", sc.Err())
	return kill
}

// openPromptly runs Open and fails the test if it has not returned within a minute: a
// second opener must fail at once, never wait for the lock.
func openPromptly(t *testing.T, cfg Config) (*DB, error) {
	t.Helper()
	type result struct {
		db  *DB
		err error
	}
	done := make(chan result, 1)
	go func() {
		db, err := Open(cfg, slogt(t), prometheus.NewRegistry())
		done <- result{db, err}
	}()
	select {
	case r := <-done:
		return r.db, r.err
	case <-time.After(time.Minute):
		t.Fatalf("Open(%s) still blocked after a minute", cfg.Dir)
		return nil, nil
	}
}

// wantLocked checks that err is Open's error for a directory held by pid.
func wantLocked(t *testing.T, err error, dir string, pid int) {
	t.Helper()
	t.Logf("second Open: %v", err)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{filepath.Join(dir, lockFileName), fmt.Sprintf("pid=%d ", pid)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("second Open = %q, want it to name %q", err, want)
		}
	}
}

func TestOpenLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := Open(Config{Dir: dir}, slogt(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	write(t, first, batch(node("n1", t0, 10, 1e6)))

	db, err := openPromptly(t, Config{Dir: dir})
	if err == nil {
		_ = db.Close()
		t.Fatal("second Open of a held directory succeeded")
	}
	wantLocked(t, err, dir, os.Getpid())
	// The failed opener touched nothing: the first one still writes.
	write(t, first, batch(node("n1", at(15*time.Second), 11, 1e6)))

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, lockFileName)); err != nil || len(b) != 0 {
		t.Errorf("lock file after Close: %q, %v; want it empty", b, err)
	}
	db = newTestDB(t, Config{Dir: dir})
	if got := len(readAll(t, db.tsdb)); got != 2 {
		t.Errorf("after reopening: %d series, want 2", got)
	}
}

// TestOpenLockedByPrometheus checks that a directory whose TSDB another program holds
// (a Prometheus, or a Hindsight without the directory lock) is refused at once too.
func TestOpenLockedByPrometheus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pdb, err := promtsdb.Open(filepath.Join(dir, tsdbSubdir), nil, nil, promtsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pdb.Close() })
	db, err := openPromptly(t, Config{Dir: dir})
	if err == nil {
		_ = db.Close()
		t.Fatal("Open of a directory whose TSDB is held succeeded")
	}
	t.Logf("Open: %v", err)
	if want := filepath.Join(dir, tsdbSubdir); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "lock") {
		t.Errorf("Open = %q, want it to name %s and the lock", err, want)
	}
	// The directory lock was released: once the TSDB is free, Open succeeds.
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	newTestDB(t, Config{Dir: dir})
}

// TestOpenLockedByAnotherProcess holds the storage in a child process, checks that Open
// here fails at once naming the child's PID, then kills the child with SIGKILL and checks
// that the lock went with it.
func TestOpenLockedByAnotherProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pid, kill := startHelper(t, dir)
	db, err := openPromptly(t, Config{Dir: dir})
	if err == nil {
		_ = db.Close()
	}
	wantLocked(t, err, dir, pid)

	kill()
	newTestDB(t, Config{Dir: dir})
}
