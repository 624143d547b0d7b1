package cluster

import (
	"context"
	"io"
	"os"
	"testing"
)

// New starts a cluster for a test and stops it in t.Cleanup, also when the test fails. It
// skips the test under -short: end-to-end tests need the control-plane binaries (see
// EnsureTools) and half a minute to start.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: needs the local control plane; skipped with -short")
	}
	if opts.Progress == nil {
		opts.Progress = progressWriter(t)
	}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start local cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop local cluster: %v", err)
		}
	})
	return c
}

// dumpLogs copies the tail of every server's log into the test log.
func (c *Cluster) dumpLogs(t testing.TB) {
	t.Helper()
	for _, p := range c.procs {
		t.Logf("---- tail of %s log (%s) ----\n%s", p.name, p.logPath, p.Tail(4000))
	}
}

// progressWriter sends progress to stderr, so a long first build shows up even without -v.
func progressWriter(t testing.TB) io.Writer {
	if os.Getenv("HINDSIGHT_QUIET") != "" {
		return io.Discard
	}
	return os.Stderr
}

// NeedTools returns the built tools for a test that runs them without a cluster (helm,
// kubectl kustomize), building them first if needed. Like New, it skips under -short.
func NeedTools(t testing.TB) Tools {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the tools of the local control plane; skipped with -short")
	}
	tools, err := EnsureTools(context.Background(), progressWriter(t))
	if err != nil {
		t.Fatalf("build tools: %v", err)
	}
	return tools
}
