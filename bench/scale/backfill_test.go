package scale

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/hindsight-metrics/hindsight/bench/fleet"
)

// TestFillCompact: every sample the backfill writes through Hindsight's write path is in
// the block the compaction makes of it, and a compaction that keeps the newest part in the
// head leaves that part out of the block.
func TestFillCompact(t *testing.T) {
	s := fleet.Spec{Nodes: 3, PodsPerNode: 4, Epoch: time.Now().Add(-2 * time.Hour).Truncate(time.Second)}.WithDefaults()
	uids := map[string]types.UID{}
	for g := range s.Pods() {
		p := s.Pod(g)
		uids[p.Namespace+"/"+p.Name] = types.UID("uid-" + p.Name)
	}
	dir := t.TempDir()
	to := time.Now()
	st, err := fill(context.Background(), dir, s, uids, 15*time.Second, to.Add(-30*time.Minute), to, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	// 120 rounds of 3 nodes × 2 series, 12 pods × 2, 24 containers × 3.
	if want := int64(120 * (3*2 + 12*2 + 24*3)); st.samples != want {
		t.Errorf("wrote %d samples, want %d", st.samples, want)
	}
	kept := t.TempDir()
	if _, err := fill(context.Background(), kept, s, uids, 15*time.Second, to.Add(-30*time.Minute), to, t.Logf); err != nil {
		t.Fatal(err)
	}
	bytes, n, err := compactStore(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n != uint64(st.samples) || bytes <= 0 {
		t.Errorf("compacted block: %d samples in %d bytes, want all %d samples", n, bytes, st.samples)
	}
	// Keeping the newest 10 minutes in the head: the block holds the other 20, about 80 rounds.
	_, n, err = compactStore(kept, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if perRound := uint64(st.samples / 120); n < 78*perRound || n > 82*perRound {
		t.Errorf("compacted all but 10 minutes: %d samples in the block, want about 80 rounds of %d", n, perRound)
	}
}
