// Package testlog gives tests a *slog.Logger that writes through t.Log, so that a test's
// log lines appear with its output (and only when it fails, or with -v). Test files import
// it; no product code does.
package testlog

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// New returns a logger at Debug level that writes through t.Log. For a benchmark it
// discards everything: logging would be measured. For a fuzz test, whose F may not log
// inside the fuzz target (F.Log and F.Helper panic there), it formats every line, so that
// a value that cannot be logged still fails the target, and drops it.
func New(t testing.TB) *slog.Logger {
	switch t.(type) {
	case *testing.B:
		return slog.New(slog.DiscardHandler)
	case *testing.F:
		return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(writer{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
