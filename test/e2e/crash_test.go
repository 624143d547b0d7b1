package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/hindsight-metrics/hindsight/internal/crashpoint"
	"github.com/hindsight-metrics/hindsight/internal/crashpoint/crashtest"
	"github.com/hindsight-metrics/hindsight/test/cluster"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// TestKillNineMidScrape kills Hindsight with SIGKILL at a random moment of its scrape
// cycle three times in a row. Every restart must open the store cleanly and serve again,
// and afterwards the stored series may miss at most one resolution interval around each kill.
func TestKillNineMidScrape(t *testing.T) {
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	createFleet(ctx, t, c, smokePods)

	const resolution = 10 * time.Second
	h, hc := startHindsight(ctx, t, c, cluster.HindsightOptions{Resolution: resolution}, 0)
	start := time.Now()
	for kill := 1; kill <= 3; kill++ {
		// Somewhere inside the next scrape cycle, possibly in the middle of a write.
		wait(ctx, t, resolution+time.Duration(rand.Int64N(int64(resolution))))
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		if err := c.RestartHindsight(ctx, h); err != nil {
			t.Fatalf("restart %d after kill -9: %v", kill, err)
		}
		if _, err := firstAnswer(ctx, hc, len(smokePods), time.Minute); err != nil {
			t.Fatalf("restart %d after kill -9: %v", kill, err)
		}
		t.Logf("kill -9 #%d: serving every pod again %s after the restart", kill, time.Since(restarted).Round(10*time.Millisecond))
	}
	wait(ctx, t, 2*resolution)
	if err := h.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	end := time.Now()

	// The store opens and every series of the run is continuous but for the kills.
	samples := readSeries(t, filepath.Join(h.StorageDir, "tsdb"), start, end)
	if len(samples) == 0 {
		t.Fatal("no series stored")
	}
	maxGap := 2*resolution + 3*time.Second     // one lost round, plus restart and jitter
	want := int(end.Sub(start)/resolution) - 3 // at most one round lost per kill
	largest, fewest := checkContinuous(t, samples, start, end, maxGap)
	for series, ts := range samples {
		// Every pod exists in the API before Hindsight starts: no sample of a known pod is
		// stored without its UID.
		if strings.HasPrefix(series, `{__name__="container_`) && !strings.Contains(series, `uid="`) {
			t.Errorf("%s: stored without its pod's uid label", series)
		}
		if len(ts) < want {
			t.Errorf("%s: %d samples over %s, want at least %d", series, len(ts), end.Sub(start).Round(time.Second), want)
		}
	}
	t.Logf("%d series checked over %s: fewest samples %d (bound %d), largest gap %s (allowed %s)", len(samples), end.Sub(start).Round(time.Second), fewest, want, largest, maxGap)

	// The catalog opens (Open checks every page and record) and knows every pod.
	cat, err := catalog.Open(filepath.Join(h.StorageDir, "catalog.db"), catalog.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("catalog after three kills: %v", err)
	}
	defer cat.Close()
	for _, p := range smokePods {
		ns := p.Namespace
		if ns == "" {
			ns = "default"
		}
		recs, err := cat.PodsByName(ns, p.Name)
		if err != nil || len(recs) != 1 || recs[0].Node != p.Node {
			t.Errorf("catalog entry of pod %s/%s: %+v, %v; want one, on node %s", ns, p.Name, recs, err, p.Node)
		}
	}
}

// TestKillAtCrashPoints runs Hindsight built with -tags crashpoints and has it kill itself
// (SIGKILL) at the crash points a cluster reaches in minutes: just before and just after a
// TSDB commit (the 3rd of the run) and during the chunk snapshot of a graceful shutdown.
// Every restart must open the store and serve again, and every stored series may miss at
// most the round in flight plus the restart around each kill. (The compaction crash points
// need hours of samples; package tsdb's TestCrashPoints covers them, and the catalog's
// TestCompactCrash its compaction rename.)
func TestKillAtCrashPoints(t *testing.T) {
	t.Parallel() // see doc.go
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	createFleet(ctx, t, c, smokePods)

	const resolution = 10 * time.Second
	h, hc := startHindsight(ctx, t, c, cluster.HindsightOptions{Resolution: resolution, BuildTags: []string{"crashpoints"}}, 0)
	start := time.Now()
	points := []struct {
		at   string
		term bool // the crash comes during the graceful shutdown SIGTERM starts
	}{
		{crashpoint.CommitBefore + ":3", false},
		{crashpoint.CommitAfter + ":3", false},
		{crashpoint.CloseSnapshot, true},
	}
	for _, p := range points {
		// Restart armed: a graceful stop first (a snapshot, no loss).
		if err := h.Stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		h.Env = []string{crashtest.Env(p.at)}
		if err := c.RestartHindsight(ctx, h); err != nil {
			t.Fatalf("start armed at %s: %v", p.at, err)
		}
		armed := time.Now()
		if p.term {
			wait(ctx, t, 2*resolution)
			if err := syscall.Kill(h.PID(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		err := cluster.Poll(ctx, 2*time.Minute, 50*time.Millisecond, "hindsight to crash at "+p.at, func(context.Context) (bool, error) {
			done, _ := h.Exited()
			return done, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Exited(); !crashtest.Killed(err) {
			t.Fatalf("hindsight armed at %s exited with %v, want killed by its crash point", p.at, err)
		}
		crashed := time.Since(armed)
		if p.term {
			if m, _ := filepath.Glob(filepath.Join(h.StorageDir, "tsdb", "chunk_snapshot.*.tmp")); len(m) != 1 {
				t.Errorf("%s: no snapshot being written at the kill: %v", p.at, m)
			}
		}
		h.Env = nil
		restarted := time.Now()
		if err := c.RestartHindsight(ctx, h); err != nil {
			t.Fatalf("restart after the crash at %s: %v", p.at, err)
		}
		if _, err := firstAnswer(ctx, hc, len(smokePods), time.Minute); err != nil {
			t.Fatalf("restart after the crash at %s: %v", p.at, err)
		}
		t.Logf("%s: killed %s after the armed start; serving every pod again %s after the restart",
			p.at, crashed.Round(10*time.Millisecond), time.Since(restarted).Round(10*time.Millisecond))
		wait(ctx, t, 2*resolution)
	}
	if err := h.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	end := time.Now()

	samples := readSeries(t, filepath.Join(h.StorageDir, "tsdb"), start, end)
	if len(samples) == 0 {
		t.Fatal("no series stored")
	}
	// Each crash point costs a graceful restart and a crash with its restart; each at most
	// the round in flight and the restart's round, so no series goes longer without a
	// sample, from the start to the end of the run. (A bound on the count is weaker here:
	// six restarts in a run of a dozen rounds.)
	maxGap := 2*resolution + 3*time.Second
	largest, fewest := checkContinuous(t, samples, start, end, maxGap)
	t.Logf("%d series over %s (%d rounds): fewest samples %d, largest gap %s (bound %s)",
		len(samples), end.Sub(start).Round(time.Second), int(end.Sub(start)/resolution), fewest, largest, maxGap)

	// The catalog opens strictly (every page and record checked).
	cat, err := catalog.Open(filepath.Join(h.StorageDir, "catalog.db"), catalog.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("catalog after the crashes: %v", err)
	}
	defer cat.Close()
}

// checkContinuous fails t for every series in samples that goes longer than maxGap
// without a sample between from and to, counting from from to its first sample and from
// its last to to (a series that stops early fails too). It returns the largest gap and
// the fewest samples of a series.
func checkContinuous(t *testing.T, samples map[string][]time.Time, from, to time.Time, maxGap time.Duration) (largest time.Duration, fewest int) {
	t.Helper()
	fewest = math.MaxInt
	for series, ts := range samples {
		fewest = min(fewest, len(ts))
		prev := from
		for _, at := range append(ts, to) {
			gap := at.Sub(prev)
			largest = max(largest, gap)
			if gap > maxGap {
				t.Errorf("%s: %s without a sample before %s (want ≤ %s)", series, gap.Round(time.Millisecond), at.Format(time.TimeOnly), maxGap)
			}
			prev = at
		}
	}
	return largest, fewest
}

// readSeries opens a TSDB directory read-only, checks its blocks and returns the sample
// times of every node and container CPU series within [from, to].
func readSeries(t *testing.T, dir string, from, to time.Time) map[string][]time.Time {
	t.Helper()
	db, err := tsdb.OpenDBReadOnly(dir, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open %s read-only: %v", dir, err)
	}
	defer db.Close()
	blocks, err := db.Blocks()
	if err != nil {
		t.Fatalf("blocks of %s: %v", dir, err)
	}
	for _, b := range blocks {
		if m := b.Meta(); m.MinTime > m.MaxTime {
			t.Errorf("block %s: min time %d after max time %d", m.ULID, m.MinTime, m.MaxTime)
		}
	}
	q, err := db.Querier(from.UnixMilli(), to.UnixMilli())
	if err != nil {
		t.Fatalf("querier: %v", err)
	}
	defer q.Close()
	out := map[string][]time.Time{}
	for _, name := range []string{"node_cpu_usage_seconds_total", "container_cpu_usage_seconds_total"} {
		ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, name))
		for ss.Next() {
			s := ss.At()
			it := s.Iterator(nil)
			var ts []time.Time
			for it.Next() == chunkenc.ValFloat {
				ms, _ := it.At()
				ts = append(ts, time.UnixMilli(ms))
			}
			if err := it.Err(); err != nil {
				t.Fatalf("read %s: %v", s.Labels(), err)
			}
			key := fmt.Sprint(s.Labels())
			out[key] = append(out[key], ts...)
		}
		if err := ss.Err(); err != nil {
			t.Fatalf("select %s: %v", name, err)
		}
	}
	return out
}
