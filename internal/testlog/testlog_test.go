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

// A fuzz test's logger, made from its F and handed to the code under test, may log inside
// the fuzz target (FuzzHandler's handler logs its errors there).
func FuzzLogInsideTarget(f *testing.F) {
	log := New(f)
	f.Add("seed")
	f.Fuzz(func(t *testing.T, s string) {
		log.Info("inside the fuzz target", "s", s)
	})
}
