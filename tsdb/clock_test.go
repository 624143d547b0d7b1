package tsdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestClockSkewBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		resolution, want time.Duration
	}{
		{10 * time.Second, 30 * time.Second},
		{15 * time.Second, 30 * time.Second},
		{20 * time.Second, 40 * time.Second},
		{time.Minute, 2 * time.Minute},
		{time.Hour, 30 * time.Minute}, // capped far below the head's hour
	} {
		if got := ClockSkewBound(tc.resolution); got != tc.want {
			t.Errorf("ClockSkewBound(%s) = %s, want %s", tc.resolution, got, tc.want)
		}
	}
}

func TestCheckClock(t *testing.T) {
	t.Parallel()
	scrape := func(offsets ...time.Duration) *NodeScrape {
		ns := &NodeScrape{Node: "n", ScrapeTime: t0, HasNode: true, NodeSample: cpuMem(t0.Add(offsets[0]), 1, 1)}
		for _, off := range offsets[1:] {
			ns.Containers = append(ns.Containers, ctr("ns/p", "c", t0.Add(off), time.Time{}, 1, 1))
		}
		return ns
	}
	for _, tc := range []struct {
		name       string
		ns         *NodeScrape
		wantOffset time.Duration // when skewed
		wantSkewed bool
	}{
		{name: "cached stats, 15s before the request", ns: scrape(-15 * time.Second)},
		{name: "30s behind: at the bound", ns: scrape(-30 * time.Second)},
		{name: "31s behind", ns: scrape(-31 * time.Second), wantSkewed: true, wantOffset: -31 * time.Second},
		{name: "31s ahead", ns: scrape(31 * time.Second), wantSkewed: true, wantOffset: 31 * time.Second},
		{name: "hours ahead", ns: scrape(2 * time.Hour), wantSkewed: true, wantOffset: 2 * time.Hour},
		{name: "newest sample counts: one container ahead", ns: scrape(-5*time.Second, time.Hour), wantSkewed: true, wantOffset: time.Hour},
		{name: "newest sample counts: one stale container", ns: scrape(-5*time.Second, -2*time.Hour)},
		{name: "no scrape time", ns: &NodeScrape{Node: "n", HasNode: true, NodeSample: cpuMem(t0.Add(48*time.Hour), 1, 1)}},
		{name: "no sample time", ns: &NodeScrape{Node: "n", ScrapeTime: t0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckClock(tc.ns, 15*time.Second)
			var skew *ClockSkewError
			if got := errors.As(err, &skew); got != tc.wantSkewed {
				t.Fatalf("CheckClock = %v, want skewed %v", err, tc.wantSkewed)
			}
			if tc.wantSkewed && (skew.Offset != tc.wantOffset || skew.Bound != 30*time.Second || skew.Node != "n") {
				t.Errorf("CheckClock = %+v, want offset %s, bound 30s, node n", skew, tc.wantOffset)
			}
		})
	}
}

// TestSkewedClocksDoNotPoisonStore writes rounds of healthy nodes among nodes whose clocks
// are hours ahead, days ahead and hours behind, and one that is hours ahead and then
// recovers. Without the clock check, the first round's future samples move the TSDB's
// head, which then refuses every healthy sample as out of bounds, and the head (and the
// blocks retention counts back from) ends days in the future.
func TestSkewedClocksDoNotPoisonStore(t *testing.T) {
	t.Parallel()
	const (
		rounds    = 40
		recoverAt = 10 // the round from which "recovers" has the right time
		res       = 15 * time.Second
	)
	healthy := []string{"h1", "h2", "h3", "h4"}
	skew := map[string]time.Duration{"ahead-hours": 2 * time.Hour, "ahead-days": 3 * 24 * time.Hour, "behind-hours": -3 * time.Hour}
	db := newTestDB(t, Config{Resolution: res})

	// Each node has two pods of one container; its stats are cached 5s before the request.
	scrape := func(name string, scrapeTime time.Time, off time.Duration, i int) NodeScrape {
		ts := scrapeTime.Add(-5*time.Second + off)
		ns := node(name, ts, float64(10+i), 1e9)
		ns.ScrapeTime = scrapeTime
		for _, p := range []string{"a", "b"} {
			pod := name + "-" + p
			ns.Pods = append(ns.Pods, PodSample{Namespace: "ns", Pod: pod, UID: "uid-" + pod, Sample: cpuMem(ts, float64(1+i), 1e6)})
			ns.Containers = append(ns.Containers, ctr("ns/"+pod, "c", ts, t0.Add(-time.Hour), float64(1+i), 1e6))
		}
		return ns
	}
	var last time.Time
	for i := range rounds {
		now := at(time.Duration(i) * res)
		last = now
		db.now = func() time.Time { return now }
		var b Batch
		for _, n := range healthy {
			b.Nodes = append(b.Nodes, scrape(n, now, 0, i))
		}
		for n, off := range skew {
			b.Nodes = append(b.Nodes, scrape(n, now, off, i))
		}
		off := 2 * time.Hour
		if i >= recoverAt {
			off = 0
		}
		b.Nodes = append(b.Nodes, scrape("recovers", now, off, i))
		if err := db.Write(context.Background(), b); err != nil {
			t.Fatalf("round %d: Write: %v", i, err)
		}
		if err := db.StorageHealth(); err != nil {
			t.Fatalf("round %d: StorageHealth() = %v", i, err)
		}
	}

	// Every healthy node's, pod's and container's history is complete.
	stored := readAll(t, db.tsdb)
	perNode := make(map[string]int)
	for lset, samples := range stored {
		for _, n := range append(append([]string{"recovers"}, healthy...), "ahead-hours", "ahead-days", "behind-hours") {
			if strings.Contains(lset, fmt.Sprintf("node=%q", n)) {
				perNode[n] += len(samples)
				want := rounds
				if n == "recovers" {
					want = rounds - recoverAt
				}
				if len(samples) != want {
					t.Errorf("%s: %d samples, want %d", lset, len(samples), want)
				}
			}
		}
	}
	// Per node: 2 node series, 2 × 2 pod series, 2 × 3 container series (with start time).
	const seriesPerNode = 2 + 4 + 6
	want := map[string]int{"recovers": seriesPerNode * (rounds - recoverAt)}
	for _, n := range healthy {
		want[n] = seriesPerNode * rounds
	}
	if diff := cmp.Diff(want, perNode); diff != "" {
		t.Errorf("samples stored per node (-want +got):\n%s", diff)
	}
	t.Logf("stored samples per node: %v", perNode)
	if got, want := testutil.ToFloat64(db.m.rejectedBy[rejectClockSkew]), float64(len(skew)*rounds+recoverAt); got != want {
		t.Errorf("rejected_points_total{reason=clock_skew} = %v, want %v", got, want)
	}
	if n := testutil.ToFloat64(db.m.skipped[skipOutOfBounds]); n != 0 {
		t.Errorf("skipped_samples_total{reason=out_of_bounds} = %v, want 0", n)
	}

	// Retention's view: nothing in the head or in any block is in the future, even after a
	// compaction.
	if err := db.tsdb.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	limit := last.Add(ClockSkewBound(res)).UnixMilli()
	if maxt := db.tsdb.Head().MaxTime(); maxt > limit {
		t.Errorf("head max time %s, after the last scrape's bound %s", time.UnixMilli(maxt).UTC(), time.UnixMilli(limit).UTC())
	}
	for _, blk := range db.tsdb.Blocks() {
		if maxt := blk.Meta().MaxTime; maxt > limit {
			t.Errorf("block %s max time %s, after the last scrape's bound", blk.Meta().ULID, time.UnixMilli(maxt).UTC())
		}
	}

	// The current window: healthy nodes and the recovered one are served, the skewed ones
	// never were.
	all := append(append([]string{}, healthy...), "recovers", "ahead-hours", "ahead-days", "behind-hours")
	var served []string
	for _, u := range db.NodeUsage(all) {
		served = append(served, u.Node)
	}
	if diff := cmp.Diff(append(append([]string{}, healthy...), "recovers"), served); diff != "" {
		t.Errorf("nodes served (-want +got):\n%s", diff)
	}
	if got := db.PodUsage([]PodRef{{"ns", "h1-a"}, {"ns", "recovers-b"}, {"ns", "ahead-days-a"}}); len(got) != 2 {
		t.Errorf("PodUsage = %+v, want h1-a and recovers-b", got)
	}
}
