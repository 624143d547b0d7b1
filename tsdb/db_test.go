package tsdb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings, one per problem
	}{
		{name: "minimal", cfg: Config{Dir: "/data"}},
		{name: "full", cfg: Config{Dir: "/data", Retention: time.Hour, RetentionSize: 1 << 30, Resolution: 15 * time.Second}},
		{name: "no dir", cfg: Config{}, wantErr: []string{"dir"}},
		{
			name:    "every problem",
			cfg:     Config{Retention: -time.Second, RetentionSize: -1, Resolution: -time.Second, ExpectedSeries: -1},
			wantErr: []string{"dir", "retention:", "retention size", "resolution", "expected series"},
		},
		// One day of 1000 series at 15s is 1000 × 5760 × DiskBytesPerSample bytes, in the
		// 60 % of the size the raw samples get beside both tiers.
		{name: "retention size of one day", cfg: Config{Dir: "/data", RetentionSize: 5760 * 1000 * DiskBytesPerSample * 100 / 60}},
		{
			name:    "retention size below one day",
			cfg:     Config{Dir: "/data", RetentionSize: 5760*1000*DiskBytesPerSample*100/60 - 1},
			wantErr: []string{fmt.Sprintf("retention size: %d bytes is less than one day of samples needs, about %d bytes", 5760*1000*DiskBytesPerSample*100/60-1, 5760*1000*DiskBytesPerSample*100/60)},
		},
		{
			name: "tiers off: the raw samples get it all",
			cfg:  Config{Dir: "/data", RetentionSize: 5760 * 1000 * DiskBytesPerSample, TierRetention: [NumTiers]time.Duration{-1, -1}},
		},
		{
			name: "retention size below one day of a larger cluster",
			cfg:  Config{Dir: "/data", RetentionSize: 1 << 30, ExpectedSeries: 100_000},
			wantErr: []string{fmt.Sprintf("%d bytes is less than one day of samples needs, about %d bytes (100000 series × 5760 samples a day at a 15s resolution × %d bytes per sample, in the 60%% of the size the raw samples get beside the tiers)",
				1<<30, 100_000*5760*DiskBytesPerSample*100/60, DiskBytesPerSample)},
		},
		{name: "coarser resolution needs less", cfg: Config{Dir: "/data", RetentionSize: 1440 * 1000 * DiskBytesPerSample * 100 / 60, Resolution: time.Minute}},
		{name: "no size limit", cfg: Config{Dir: "/data", ExpectedSeries: 1 << 40}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors about %q", tc.wantErr)
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.wantErr) {
				t.Errorf("Validate() reported %d problems, want %d: %v", got, len(tc.wantErr), err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %v, want it to mention %q", err, want)
				}
			}
		})
	}
}

func TestPromOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg              Config
		wantRetentionMS  int64
		wantMaxBlockMS   int64
		wantRetentionMax int64
	}{
		{cfg: Config{Dir: "d"}, wantRetentionMS: (14 * 24 * time.Hour).Milliseconds(), wantMaxBlockMS: (14 * 24 * time.Hour / 10).Milliseconds()},
		// The raw samples get 60 % of the size beside both tiers, all of it without them.
		{cfg: Config{Dir: "d", Retention: 365 * 24 * time.Hour, RetentionSize: 5e9}, wantRetentionMS: (365 * 24 * time.Hour).Milliseconds(), wantMaxBlockMS: (31 * 24 * time.Hour).Milliseconds(), wantRetentionMax: 3e9},
		{cfg: Config{Dir: "d", Retention: 30 * 24 * time.Hour, RetentionSize: 5e9, TierRetention: [NumTiers]time.Duration{-1, 0}}, wantRetentionMS: (30 * 24 * time.Hour).Milliseconds(), wantMaxBlockMS: (72 * time.Hour).Milliseconds(), wantRetentionMax: 4.4e9},
		{cfg: Config{Dir: "d", Retention: 30 * 24 * time.Hour, RetentionSize: 5e9, TierRetention: [NumTiers]time.Duration{-1, -1}}, wantRetentionMS: (30 * 24 * time.Hour).Milliseconds(), wantMaxBlockMS: (72 * time.Hour).Milliseconds(), wantRetentionMax: 5e9},
	}
	for _, tc := range tests {
		o := tc.cfg.complete().promOptions()
		if o.RetentionDuration != tc.wantRetentionMS || o.MaxBlockDuration != tc.wantMaxBlockMS || o.MaxBytes != tc.wantRetentionMax {
			t.Errorf("%+v: retention %d, max block %d, max bytes %d; want %d, %d, %d", tc.cfg,
				o.RetentionDuration, o.MaxBlockDuration, o.MaxBytes, tc.wantRetentionMS, tc.wantMaxBlockMS, tc.wantRetentionMax)
		}
		if o.WALCompression != "snappy" || !o.EnableMemorySnapshotOnShutdown {
			t.Errorf("%+v: WAL compression %q, snapshot on shutdown %v; want snappy, true", tc.cfg, o.WALCompression, o.EnableMemorySnapshotOnShutdown)
		}
	}
}

func TestOpenInvalidConfig(t *testing.T) {
	t.Parallel()
	if _, err := Open(Config{}, nil, nil); err == nil {
		t.Fatal("Open with an empty config: want an error")
	}
}

// sample is one stored sample, for comparisons.
type sample struct {
	T int64
	V float64
}

// readAll returns every stored series (by its label set's string) and its samples.
func readAll(t testing.TB, q storage.Queryable) map[string][]sample {
	t.Helper()
	qr, err := q.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer qr.Close()
	return collectSet(t, qr.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, metricNameLabel, ".+")))
}

// collectSet reads a sorted series set: every series' float samples by its labels.
func collectSet(t testing.TB, set storage.SeriesSet) map[string][]sample {
	t.Helper()
	out := make(map[string][]sample)
	var it chunkenc.Iterator
	var prev labels.Labels
	for set.Next() {
		s := set.At()
		if prev.Len() > 0 && labels.Compare(prev, s.Labels()) >= 0 {
			t.Errorf("series %s after %s: not sorted", s.Labels(), prev)
		}
		prev = s.Labels()
		it = s.Iterator(it)
		var got []sample
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			got = append(got, sample{ts, v})
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		out[s.Labels().String()] = got
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStoredSamples checks the label schema and that values are stored raw.
func TestStoredSamples(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, Config{})
	ms := t0.UnixMilli()
	start := time.Unix(1_699_990_000, 0)
	write(t, db, Batch{Nodes: []NodeScrape{{
		Node:       "n1",
		ScrapeTime: t0,
		NodeSample: withSwap(cpuMem(t0, 357.35491, 1.616273408e+09), 4096),
		HasNode:    true,
		Pods: []PodSample{{
			Namespace: "kube-system", Pod: "coredns", UID: "u-1",
			Sample: cpuMem(at(-time.Second), 4.67812, 1.2627968e+07),
		}},
		Containers: []ContainerSample{
			{
				Namespace: "kube-system", Pod: "coredns", Container: "coredns", UID: "u-1", StartTime: start,
				Sample: withSwap(cpuMem(at(-2*time.Second), 4.710169, 1.253376e+07), 0),
			},
			{
				// The pod informer does not know this pod yet, and the kubelet sent no start time.
				Namespace: "default", Pod: "new", Container: "app",
				Sample: cpuMem(t0, 0.5, 1024),
			},
		},
	}}})
	want := map[string][]sample{
		`{__name__="node_cpu_usage_seconds_total", node="n1"}`:                                                                               {{ms, 357.35491}},
		`{__name__="node_memory_working_set_bytes", node="n1"}`:                                                                              {{ms, 1.616273408e+09}},
		`{__name__="node_swap_usage_bytes", node="n1"}`:                                                                                      {{ms, 4096}},
		`{__name__="pod_cpu_usage_seconds_total", namespace="kube-system", node="n1", pod="coredns", uid="u-1"}`:                             {{ms - 1000, 4.67812}},
		`{__name__="pod_memory_working_set_bytes", namespace="kube-system", node="n1", pod="coredns", uid="u-1"}`:                            {{ms - 1000, 1.2627968e+07}},
		`{__name__="container_cpu_usage_seconds_total", container="coredns", namespace="kube-system", node="n1", pod="coredns", uid="u-1"}`:  {{ms - 2000, 4.710169}},
		`{__name__="container_memory_working_set_bytes", container="coredns", namespace="kube-system", node="n1", pod="coredns", uid="u-1"}`: {{ms - 2000, 1.253376e+07}},
		`{__name__="container_swap_usage_bytes", container="coredns", namespace="kube-system", node="n1", pod="coredns", uid="u-1"}`:         {{ms - 2000, 0}},
		`{__name__="container_start_time_seconds", container="coredns", namespace="kube-system", node="n1", pod="coredns", uid="u-1"}`:       {{ms - 2000, 1_699_990_000}},
		`{__name__="container_cpu_usage_seconds_total", container="app", namespace="default", node="n1", pod="new"}`:                         {{ms, 0.5}},
		`{__name__="container_memory_working_set_bytes", container="app", namespace="default", node="n1", pod="new"}`:                        {{ms, 1024}},
	}
	if diff := cmp.Diff(want, readAll(t, db.tsdb)); diff != "" {
		t.Errorf("stored series (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(db.m.appended); got != float64(len(want)) {
		t.Errorf("appended samples = %v, want %d", got, len(want))
	}
}

// TestDuplicateSamples checks that samples the TSDB already holds (a kubelet returning
// its cached sample twice, before or after a restart) or older ones do not fail Write.
func TestDuplicateSamples(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := batch(node("n1", t0, 10, 100e6, ctr("ns/p", "c", t0, old, 1, 10e6)))
	older := batch(node("n1", at(-time.Second), 9, 100e6, ctr("ns/p", "c", at(-time.Second), old, 0.5, 10e6)))
	mixed := batch(node("n1", t0, 10, 100e6, ctr("ns/p", "c", at(15*time.Second), old, 2.5, 10e6)))

	db := newTestDB(t, Config{Dir: dir})
	write(t, db, first, first, older, mixed)
	wantSkipped := map[string]float64{
		skipDuplicate:  float64(first.Len() + 2), // the whole second batch, and the node of the last
		skipOutOfOrder: float64(older.Len()),
	}
	for reason, want := range wantSkipped {
		if got := testutil.ToFloat64(db.m.skipped[reason]); got != want {
			t.Errorf("skipped samples{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if got, want := testutil.ToFloat64(db.m.appended), float64(first.Len()+3); got != want {
		t.Errorf("appended samples = %v, want %v", got, want)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart the cache is empty: the TSDB itself rejects a different value at
	// the same time (and silently ignores the same value), and older samples.
	db = newTestDB(t, Config{Dir: dir})
	write(t, db, batch(node("n1", t0, 11, 100e6)))
	if got := testutil.ToFloat64(db.m.skipped[skipDuplicate]); got != 1 {
		t.Errorf("after restart: skipped duplicates = %v, want 1", got)
	}
	write(t, db, first)
	if got := testutil.ToFloat64(db.m.skipped[skipOutOfOrder]); got != 3 {
		t.Errorf("after restart: skipped out-of-order samples = %v, want 3", got)
	}
	if got := testutil.ToFloat64(db.m.appendErrors.WithLabelValues("append")); got != 0 {
		t.Errorf("append errors = %v, want 0", got)
	}
	got := readAll(t, db.tsdb)[`{__name__="node_cpu_usage_seconds_total", node="n1"}`]
	if diff := cmp.Diff([]sample{{t0.UnixMilli(), 10}}, got); diff != "" {
		t.Errorf("node CPU samples (-want +got):\n%s", diff)
	}
}

// TestReopen checks that Close then Open keeps the samples, and that the current window
// is served at once from the stored points when they are fresh.
// restoreSources are where Open restores the current window from: the window snapshot
// Close wrote, or the stored points when there is none.
var restoreSources = []string{restoredFromSnapshot, restoredFromTSDB}

// reopenFrom opens the closed storage in dir, restoring the window from from (the
// snapshot is removed first for restoredFromTSDB), checks Open's log says so and that the
// snapshot is gone, and closes the DB when the test ends.
func reopenFrom(t *testing.T, cfg Config, from string) *DB {
	t.Helper()
	path := filepath.Join(cfg.Dir, windowSnapshotFile)
	if from == restoredFromTSDB {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	log, lines := captureLog(t)
	db := openTestDB(t, cfg, log)
	if got := lines.find("Opened storage", "restoredFrom="+from); len(got) != 1 {
		t.Errorf("Open logged %q, want one \"Opened storage\" line with restoredFrom=%s", lines.find("Opened storage"), from)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Open, %s: %v, want it removed", path, err)
	}
	return db
}

func TestReopen(t *testing.T) {
	t.Parallel()
	for _, from := range restoreSources {
		t.Run(from, func(t *testing.T) {
			t.Parallel()
			testReopen(t, from)
		})
	}
}

func testReopen(t *testing.T, from string) {
	dir := t.TempDir()
	// Whole seconds, so that start times survive their round trip through float seconds.
	now := time.Now().Truncate(time.Second)
	ts := func(d time.Duration) time.Time { return now.Add(-30 * time.Second).Add(d) }
	batches := []Batch{
		batch(node("n1", ts(0), 10, 100e6, ctr("ns/p", "a", ts(0), old, 1, 10e6), ctr("ns/p", "b", ts(-time.Second), old, 1, 10e6))),
		batch(node("n1", ts(15*time.Second), 11.5, 200e6, ctr("ns/p", "a", ts(15*time.Second), old, 2.5, 20e6), ctr("ns/p", "b", ts(13*time.Second), old, 2.5, 10e6))),
		// The same samples again, as a kubelet with a cache does.
		batch(node("n1", ts(15*time.Second), 11.5, 200e6, ctr("ns/p", "a", ts(15*time.Second), old, 2.5, 20e6), ctr("ns/p", "b", ts(13*time.Second), old, 2.5, 10e6))),
		// A restarted container and a fresh one.
		batch(node("n1", ts(30*time.Second), 13, 200e6,
			ctr("ns/restarted", "c", ts(30*time.Second), ts(25*time.Second), 0.5, 10e6),
			ctr("ns/fresh", "c", ts(30*time.Second), ts(18*time.Second), 0.75, 10e6),
			ctr("ns/p", "a", ts(30*time.Second), old, 4, 20e6), ctr("ns/p", "b", ts(28*time.Second), old, 4, 10e6))),
	}
	nodes := []string{"n1"}
	refs := []PodRef{ref("ns/p"), ref("ns/restarted"), ref("ns/fresh")}

	db, err := Open(Config{Dir: dir}, slogt(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	write(t, db, batches...)
	wantNodes, wantPods := db.NodeUsage(nodes), db.PodUsage(refs)
	if len(wantNodes) != 1 || len(wantPods) != 2 {
		t.Fatalf("before restart: %v, %v; want one node and two pods", wantNodes, wantPods)
	}
	stored := readAll(t, db.tsdb)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = reopenFrom(t, Config{Dir: dir, Resolution: DefaultResolution}, from)
	if diff := cmp.Diff(stored, readAll(t, db.tsdb)); diff != "" {
		t.Errorf("stored series after restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantNodes, db.NodeUsage(nodes)); diff != "" {
		t.Errorf("NodeUsage after restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantPods, db.PodUsage(refs)); diff != "" {
		t.Errorf("PodUsage after restart (-before +after):\n%s", diff)
	}
	if err := db.Ready(); err != nil {
		t.Errorf("Ready() after restart = %v, want nil", err)
	}

	// The next scrape carries on from the restored points.
	write(t, db, batch(node("n1", ts(45*time.Second), 14.5, 200e6,
		ctr("ns/restarted", "c", ts(45*time.Second), ts(25*time.Second), 2, 10e6))))
	want := []PodUsage{podU("ns/restarted", ts(45*time.Second), 15*time.Second,
		cu("c", u(ts(45*time.Second), 15*time.Second, 100_000_000, 10e6)))}
	if diff := cmp.Diff(want, db.PodUsage(refs)); diff != "" {
		t.Errorf("PodUsage after the next scrape (-want +got):\n%s", diff)
	}
}

// TestReopenStale checks that points older than two resolutions are not restored.
func TestReopenStale(t *testing.T) {
	t.Parallel()
	for _, from := range restoreSources {
		t.Run(from, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			db, err := Open(Config{Dir: dir}, slogt(t), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			ts := time.Now().Add(-31 * time.Second)
			write(t, db,
				batch(node("n1", ts.Add(-15*time.Second), 10, 1e6, ctr("ns/p", "c", ts.Add(-15*time.Second), old, 1, 1e6))),
				batch(node("n1", ts, 11, 1e6, ctr("ns/p", "c", ts, old, 2, 1e6))),
			)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = reopenFrom(t, Config{Dir: dir, Resolution: DefaultResolution}, from)
			if got := db.NodeUsage([]string{"n1"}); len(got) != 0 {
				t.Errorf("NodeUsage = %v, want none", got)
			}
			if got := db.PodUsage([]PodRef{ref("ns/p")}); len(got) != 0 {
				t.Errorf("PodUsage = %v, want none", got)
			}
			if err := db.Ready(); err == nil {
				t.Error("Ready() = nil, want an error")
			}
		})
	}
}

// failingAppendable is an AppendableV2 whose appenders fail to commit, as on a full disk.
type failingAppendable struct{ storage.AppendableV2 }

func (f failingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return failingAppender{f.AppendableV2.AppenderV2(ctx)}
}

type failingAppender struct{ storage.AppenderV2 }

var errDiskFull = errors.New("no space left on device")

func (f failingAppender) Commit() error { return errors.Join(errDiskFull, f.Rollback()) }

// TestFailedCommit checks that a failed commit is returned and the current window is
// still served.
func TestFailedCommit(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, Config{})
	db.appendable = failingAppendable{db.tsdb}
	err := db.Write(context.Background(), batch(node("n1", t0, 10, 100e6)))
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Write = %v, want %v", err, errDiskFull)
	}
	_ = db.Write(context.Background(), batch(node("n1", at(15*time.Second), 11.5, 100e6)))
	want := []NodeUsage{{Node: "n1", Usage: u(at(15*time.Second), 15*time.Second, 100_000_000, 100e6)}}
	if diff := cmp.Diff(want, db.NodeUsage([]string{"n1"})); diff != "" {
		t.Errorf("NodeUsage (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(db.m.appendErrors.WithLabelValues("commit")); got != 2 {
		t.Errorf("commit errors = %v, want 2", got)
	}
	if diff := cmp.Diff(map[string][]sample{}, readAll(t, db.tsdb), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("stored series (-want +got):\n%s", diff)
	}

	// Once the disk has room again, samples are written, including the ones the cache
	// had seen before the failure.
	db.appendable = db.tsdb
	write(t, db, batch(node("n1", at(15*time.Second), 11.5, 100e6)))
	if got := len(readAll(t, db.tsdb)); got != 2 {
		t.Errorf("stored series = %d, want 2", got)
	}
}

func TestWriteAfterClose(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, Config{})
	write(t, db, batch(node("n1", t0, 10, 1e6)), batch(node("n1", at(15*time.Second), 11, 1e6)))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(context.Background(), batch(node("n1", at(30*time.Second), 12, 1e6))); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if got := db.NodeUsage([]string{"n1"}); len(got) != 1 {
		t.Errorf("NodeUsage after Close = %v, want the last window", got)
	}
}

func TestWriteCanceled(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.Write(ctx, batch(node("n1", t0, 10, 1e6))); !errors.Is(err, context.Canceled) {
		t.Errorf("Write = %v, want context.Canceled", err)
	}
}

func TestBatchLen(t *testing.T) {
	t.Parallel()
	b := batch(
		node("n1", t0, 1, 1, ctr("ns/p", "a", t0, old, 1, 1), ctr("ns/p", "b", t0, time.Time{}, 1, 1)),
		NodeScrape{Node: "n2", Pods: []PodSample{{Sample: withSwap(Sample{}, 0)}}},
	)
	b.Nodes[0].NodeSample = withSwap(b.Nodes[0].NodeSample, 1)
	// The node's three values, a's two and its start time, b's two, the pod's one.
	if got, want := b.Len(), 3+3+2+1; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
}

// TestAppendUnknownReference: the appender keeps references, not label sets. A reference
// the head no longer knows (it dropped the series) makes the appender append by labels
// again, to the same series: no sample is lost and no series is duplicated.
func TestAppendUnknownReference(t *testing.T) {
	db := newTestDB(t, Config{})
	b := genBatch(2, 3, 2)
	if err := db.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	series := db.tsdb.Head().NumSeries()
	for _, e := range db.app.cache {
		for r := range e.series {
			if e.series[r].ref != 0 {
				e.series[r].ref = 1 << 40 // never handed out
			}
		}
	}
	advance(&b, DefaultResolution)
	if err := db.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got, want := db.app.appended, b.Len(); got != want || db.app.errs != 0 {
		t.Errorf("appended %d samples (%d errors), want %d", got, db.app.errs, want)
	}
	if got := db.tsdb.Head().NumSeries(); got != series {
		t.Errorf("%d series after the second write, want the first write's %d", got, series)
	}
}
