package scale

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hindsight-metrics/hindsight/bench/fleet"
)

// TestSideBySide runs a small fleet through every phase of a scenario for a couple of
// minutes: the proof, in make test, that the benchmark works (make bench runs the real
// sizes). It checks that each phase produced its figures, not what they are.
func TestSideBySide(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local control plane; make test-e2e runs it")
	}
	sc := Scenario{Name: "test", Spec: fleet.Spec{Nodes: 8, PodsPerNode: 6}, Resolution: 10 * time.Second,
		Rounds: 3, Backfill: 10 * time.Minute, Clients: 4, PerClient: 2, Single: 3}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	res, err := Run(ctx, sc, &progress)
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	// The block holds the backfill but its newest half (BlockKeep), which stays in the head.
	if res.BackfillSamples == 0 || res.BlockSamples == 0 || res.BlockSamples >= uint64(res.BackfillSamples) || res.BlockKeep != sc.Backfill/2 {
		t.Errorf("backfilled %d samples, the compacted block holds %d, %s kept in the head", res.BackfillSamples, res.BlockSamples, res.BlockKeep)
	}
	for _, s := range res.Servers {
		if s.Rounds < sc.Rounds-1 || s.CPUPerRound <= 0 || s.RSS.Mean <= 0 || s.Heap.Mean <= 0 || s.FirstComplete <= 0 {
			t.Errorf("%s: steady state %+v", s.Name, s)
		}
		if got, want := len(s.Lists), 2*2*2*2; got != want {
			t.Errorf("%s: %d LIST figures, want %d", s.Name, got, want)
		}
		for k, l := range s.Lists {
			if l.N == 0 || l.P99 < l.P50 || l.Bytes == 0 {
				t.Errorf("%s %s: %+v", s.Name, k, l)
			}
		}
		if s.StartToList <= 0 || s.StartToTop < s.StartToList || s.TopCall <= 0 {
			t.Errorf("%s: restart %s to LIST, %s to kubectl top", s.Name, s.StartToList, s.StartToTop)
		}
	}
	if res.Fleet.Requests == 0 || res.Fleet.CPUPerRound <= 0 {
		t.Errorf("fleet: %+v", res.Fleet)
	}
	var md strings.Builder
	if err := res.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Steady state", "## LIST latency", "kubectl top", "bytes per sample"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("results lack %q:\n%s", want, md.String())
		}
	}
	t.Log(md.String())
}
