package scale

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/hindsight-metrics/hindsight/bench/fleet"
)

// TestFillCompact: every sample the backfill writes through Hindsight's write path is in
// the block the compaction makes of it.
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
	bytes, n, err := compactStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != uint64(st.samples) || bytes <= 0 {
		t.Errorf("compacted block: %d samples in %d bytes, want all %d samples", n, bytes, st.samples)
	}
}
