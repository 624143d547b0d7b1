package testlog

import (
	"log/slog"
	"testing"
)

func TestNew(t *testing.T) {
	if log := New(t); !log.Enabled(t.Context(), slog.LevelDebug) {
		t.Error("a test's logger does not write Debug")
	}
	// A benchmark's logger writes nothing, not even errors: logging would be measured.
	var enabled bool
	testing.Benchmark(func(b *testing.B) {
		enabled = New(b).Enabled(b.Context(), slog.LevelError)
	})
	if enabled {
		t.Error("a benchmark's logger writes")
	}
}
