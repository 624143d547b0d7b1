package testlog

import "testing"

func TestNew(t *testing.T) {
	log := New(t)
	if !log.Enabled(t.Context(), -4) { // slog.LevelDebug
		t.Error("Debug is not enabled")
	}
	log.Info("a line through t.Log", "key", "value")
}

func BenchmarkNewDiscards(b *testing.B) {
	log := New(b)
	if log.Enabled(b.Context(), 8) { // slog.LevelError
		b.Error("a benchmark's logger writes")
	}
}
