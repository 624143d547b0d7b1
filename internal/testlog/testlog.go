// Package testlog gives tests a *slog.Logger that writes through t.Log, so that a test's
// log lines appear with its output (and only when it fails, or with -v). Test files import
// it; no product code does.
package testlog

import (
	"log/slog"
	"strings"
	"testing"
)

// New returns a logger at Debug level that writes through t.Log. For a benchmark it
// discards everything: logging would be measured.
func New(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(writer{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
