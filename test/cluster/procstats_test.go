package cluster

import (
	"os"
	"testing"
)

func TestProcStatsOfSelf(t *testing.T) {
	s, err := procStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes < 1<<20 || s.RSSBytes > 1<<36 {
		t.Errorf("RSS %d bytes, want between 1 MiB and 64 GiB for a Go test binary", s.RSSBytes)
	}
	if s.AnonRSSBytes <= 0 || s.AnonRSSBytes > s.RSSBytes {
		t.Errorf("anonymous RSS %d bytes of %d", s.AnonRSSBytes, s.RSSBytes)
	}
	if s.PeakRSSBytes < s.RSSBytes {
		t.Errorf("peak RSS %d bytes below the current %d", s.PeakRSSBytes, s.RSSBytes)
	}
	if s.CPUSeconds < 0 {
		t.Errorf("CPU %f s, want ≥ 0", s.CPUSeconds)
	}
	if _, err := procStats(-1); err == nil {
		t.Error("procStats(-1) succeeded")
	}
}
