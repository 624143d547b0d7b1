// Package crashtest helps the tests of packages that call crashpoint.Hit run a child
// process with a crash point armed. The child is the package's own test binary, built with
// -tags crashpoints when the running one was not (as under make test), so that the tests
// run, and crash, in every build.
package crashtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/hindsight-metrics/hindsight/internal/crashpoint"
)

// Binary returns a test binary of the package in the current directory with crash points
// compiled in: the running one when it has them, otherwise one built into t's temporary
// directory (go test -c -tags crashpoints; without -race, seconds with a warm cache).
func Binary(t testing.TB) string {
	t.Helper()
	if crashpoint.Enabled {
		return os.Args[0]
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "crash.test")
	start := time.Now()
	cmd := exec.Command(goBin, "test", "-c", "-tags", "crashpoints", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test binary with -tags crashpoints: %v\n%s", err, out)
	}
	t.Logf("built %s with -tags crashpoints in %s", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// Env returns the environment variable that arms point ("name" or "name:n").
func Env(point string) string { return crashpoint.EnvVar + "=" + point }

// Killed reports whether err, from an exec.Cmd's Wait or Run, says the process was killed
// by SIGKILL, as a crash point does.
func Killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}
