//go:build crashpoints

package crashpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Enabled reports whether this binary was built with -tags crashpoints.
const Enabled = true

var (
	parse sync.Once
	point string // the name EnvVar asks for; "" for none
	nth   int64  // at which hit
	hits  atomic.Int64
)

func target() (string, int64) {
	parse.Do(func() {
		v := os.Getenv(EnvVar)
		name, n, ok := strings.Cut(v, ":")
		nth = 1
		if ok {
			i, err := strconv.ParseInt(n, 10, 64)
			if err != nil || i < 1 {
				return // malformed: no crash point
			}
			nth = i
		}
		point = name
	})
	return point, nth
}

// Hit kills the process with SIGKILL when EnvVar names this point and this is its n-th hit.
func Hit(name string) {
	if p, n := target(); p != "" && p == name && hits.Add(1) == n {
		kill()
	}
}

// During kills the process as soon as cond holds, from now until stop is called, when
// EnvVar names this point (its count is ignored). cond is polled without pause, so that a
// moment of a few milliseconds is caught.
func During(name string, cond func() bool) (stop func()) {
	if p, _ := target(); p == "" || p != name {
		return func() {}
	}
	done := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if cond() {
				kill()
			}
			time.Sleep(50 * time.Microsecond) // poll interval, not synchronisation
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

func kill() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; never return to the caller
}
