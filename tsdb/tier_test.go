package tsdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
)

// workload is a random fleet's scrape rounds: nodes whose pods' containers restart, pods
// that come and go, rounds a node misses (one at a time and several in a row), and kubelet
// timestamps that jitter before the scrape.
type workload struct {
	batches []Batch
	start   time.Time // the first round
	end     time.Time // the last round
}

type wlContainer struct {
	name    string
	rate    float64 // cores
	counter float64 // core-seconds
	mem     float64 // bytes
	started time.Time
}

type wlPod struct {
	ns, name   string
	from, to   int // the rounds the pod exists in: [from, to)
	containers []*wlContainer
}

// randomWorkload returns rounds at resolution over span, from seed.
func randomWorkload(seed uint64, start time.Time, span, resolution time.Duration) workload {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rounds := int(span / resolution)
	nodes := 1 + rng.IntN(3)
	type wlNode struct {
		name    string
		pods    []*wlPod
		counter float64
		skip    int // rounds still to miss
		// housekeeping: sample times on 10s ticks, as cAdvisor's (so some fall on a
		// window's end), rather than milliseconds before the scrape
		housekeeping bool
	}
	var ns []*wlNode
	for n := range nodes {
		nd := &wlNode{name: fmt.Sprintf("node-%d", n), housekeeping: n%2 == 0}
		for p := range 1 + rng.IntN(4) {
			pod := &wlPod{ns: fmt.Sprintf("ns-%d", rng.IntN(2)), name: fmt.Sprintf("pod-%d-%d", n, p), to: rounds}
			switch rng.IntN(4) {
			case 0: // deleted part way
				pod.to = rng.IntN(rounds)
			case 1: // created part way
				pod.from = rng.IntN(rounds)
			}
			for c := range 1 + rng.IntN(2) {
				pod.containers = append(pod.containers, &wlContainer{
					name: fmt.Sprintf("c%d", c), rate: 0.01 + 2*rng.Float64(),
					mem: float64(4096 * (1000 + rng.IntN(100000))), started: start.Add(-time.Hour),
				})
			}
			nd.pods = append(nd.pods, pod)
		}
		ns = append(ns, nd)
	}
	w := workload{start: start}
	for r := range rounds {
		round := start.Add(time.Duration(r) * resolution)
		var b Batch
		for _, nd := range ns {
			scrape := round.Add(time.Duration(rng.IntN(2000)) * time.Millisecond).Truncate(time.Millisecond)
			// Usage moves on whether or not the node is scraped.
			nodeMem := 1e9
			for _, pod := range nd.pods {
				if r < pod.from || r >= pod.to {
					continue
				}
				for _, c := range pod.containers {
					if rng.IntN(20) == 0 {
						c.rate = 0.01 + 2*rng.Float64()
					}
					c.counter += c.rate * resolution.Seconds() * (0.7 + 0.6*rng.Float64())
					c.mem = max(4096, c.mem+float64(4096*(rng.IntN(2001)-1000)))
					if rng.IntN(400) == 0 { // a restart: the counter starts again
						c.counter, c.started = c.rate*rng.Float64(), scrape.Add(-time.Second)
					}
					nd.counter += c.rate * resolution.Seconds()
					nodeMem += c.mem
				}
			}
			nd.counter += 0.1 * resolution.Seconds()
			switch {
			case nd.skip > 0:
				nd.skip--
				continue
			case rng.IntN(100) < 3:
				continue // one missed round
			case rng.IntN(300) == 0:
				nd.skip = 2 + rng.IntN(6) // several: a gap
				continue
			}
			ts := scrape.Add(-time.Duration(rng.IntN(3000)) * time.Millisecond)
			if nd.housekeeping {
				ts = scrape.Truncate(10 * time.Second)
			}
			scr := node(nd.name, ts, nd.counter, nodeMem)
			scr.ScrapeTime = scrape
			for _, pod := range nd.pods {
				if r < pod.from || r >= pod.to {
					continue
				}
				var cpu, mem float64
				for _, c := range pod.containers {
					scr.Containers = append(scr.Containers, ctr(pod.ns+"/"+pod.name, c.name, ts, c.started, c.counter, c.mem))
					cpu += c.counter
					mem += c.mem
				}
				scr.Pods = append(scr.Pods, PodSample{Namespace: pod.ns, Pod: pod.name, UID: "uid-" + pod.name, Sample: cpuMem(ts, cpu+0.5, mem+1<<20)})
			}
			b.Nodes = append(b.Nodes, scr)
		}
		w.batches = append(w.batches, b)
		w.end = round
	}
	return w
}

// tierStart is when the tier tests' workloads begin, at 15s rounds.
var tierStart = time.UnixMilli(1_700_000_000_000)

// rolledUp returns a DB holding the random workload of seed over span from tierStart,
// rolled up with the clock at the workload's end plus after.
func rolledUp(t testing.TB, seed uint64, span, after time.Duration) (*DB, workload) {
	t.Helper()
	w := randomWorkload(seed, tierStart, span, 15*time.Second)
	db := newTestDB(t, Config{Resolution: 15 * time.Second})
	write(t, db, w.batches...)
	rollupAll(t, db, w.end.Add(after))
	return db, w
}

// rollupAll runs one rollup pass with the clock at now.
func rollupAll(t testing.TB, db *DB, now time.Time) {
	t.Helper()
	db.now = func() time.Time { return now }
	if err := db.Rollup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.RollupHealth(); err != nil {
		t.Fatalf("RollupHealth after a pass that succeeded: %v", err)
	}
}

// tierSamples returns the rollup samples of field f of tier tr for objects o, by object.
func tierSamples(t *testing.T, db *DB, o Object, tr Tier, f RollupField) map[SeriesID]map[int64]float64 {
	t.Helper()
	out := map[SeriesID]map[int64]float64{}
	name := RollupSeriesName(o, tr, f)
	for lset, ss := range readAll(t, db.Queryable()) {
		ls, err := parseLabels(lset)
		if err != nil {
			t.Fatal(err)
		}
		if ls.Get(metricNameLabel) != name {
			continue
		}
		id := seriesID(ls)
		m := map[int64]float64{}
		for _, s := range ss {
			m[s.T] = s.V
		}
		out[id] = m
	}
	return out
}

// parseLabels reads back labels.Labels.String().
func parseLabels(s string) (labels.Labels, error) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	b := labels.NewScratchBuilder(8)
	for part := range strings.SplitSeq(s, ", ") {
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return labels.EmptyLabels(), fmt.Errorf("label %q", part)
		}
		b.Add(name, strings.Trim(value, `"`))
	}
	b.Sort()
	return b.Labels(), nil
}

// TestRollupEqualsRange checks, on random workloads, that every window of both tiers holds
// what Range computes from the raw samples on a grid aligned to the tier: avg and max of CPU
// (millicores) and memory (KiB), rounded, and the memory sample count; and that a window
// has a value exactly when Range has one.
func TestRollupEqualsRange(t *testing.T) {
	t.Parallel()
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			const res = 15 * time.Second
			start := tierStart.Add(time.Duration(seed) * 7 * time.Minute)
			w := randomWorkload(seed, start, 13*time.Hour, res)
			db := newTestDB(t, Config{Resolution: res})
			write(t, db, w.batches...)
			rollupAll(t, db, w.end.Add(time.Hour))

			for tr := range NumTiers {
				d := tierDefs[tr]
				wm := db.tiers[tr].next
				first := start.UnixMilli() / d.batch.Milliseconds() * d.batch.Milliseconds()
				if wm <= first {
					t.Fatalf("tier %s: watermark %d not past the first batch %d", tr, wm, first)
				}
				horizon := w.end.Add(time.Hour - rollupDelay(res) - gapBound(res)).UnixMilli()
				if want := horizon / d.batch.Milliseconds() * d.batch.Milliseconds(); wm != want {
					t.Errorf("tier %s: watermark %s, want %s (the end of the last batch whose samples are final)", tr, time.UnixMilli(wm).UTC(), time.UnixMilli(want).UTC())
				}
				for _, o := range []Object{ObjectNode, ObjectPod, ObjectContainer} {
					q := RangeQuery{Start: time.UnixMilli(first).Add(d.res), End: time.UnixMilli(wm), Step: d.res, Source: SourceRaw}
					for _, c := range []struct {
						f     RollupField
						agg   Agg
						scale float64
					}{
						{FieldCPUAvg, AggAvg, 1e3}, {FieldCPUMin, AggMin, 1e3}, {FieldCPUMax, AggMax, 1e3},
						{FieldMemAvg, AggAvg, 1.0 / 1024}, {FieldMemMin, AggMin, 1.0 / 1024}, {FieldMemMax, AggMax, 1.0 / 1024}, {FieldMemCount, AggCount, 1},
					} {
						q.Resource, q.Agg = c.f.Resource(), c.agg
						got := tierSamples(t, db, o, tr, c.f)
						n := 0
						err := db.Range(context.Background(), Selector{Object: o}, q, func(rs *RangeSeries) error {
							g := got[rs.ID]
							for i, v := range rs.Values {
								stamp := q.At(i).Add(-d.res).UnixMilli()
								tv, ok := g[stamp]
								if math.IsNaN(v) {
									if ok {
										t.Errorf("%s %v window %s: tier has %v, Range has no value", RollupSeriesName(o, tr, c.f), rs.ID, time.UnixMilli(stamp).UTC(), tv)
									}
									continue
								}
								n++
								if want := math.Round(v * c.scale); !ok || tv != want {
									t.Errorf("%s %v window %s: tier has %v (present %v), Range rounded %v (%v)", RollupSeriesName(o, tr, c.f), rs.ID, time.UnixMilli(stamp).UTC(), tv, ok, want, v*c.scale)
								}
								delete(g, stamp)
							}
							return nil
						})
						if err != nil {
							t.Fatal(err)
						}
						for id, g := range got {
							for stamp, v := range g {
								t.Errorf("%s %v window %s: tier has %v, Range has no value", RollupSeriesName(o, tr, c.f), id, time.UnixMilli(stamp).UTC(), v)
							}
						}
						if n == 0 {
							t.Errorf("%s: no window compared", RollupSeriesName(o, tr, c.f))
						}
					}
				}
			}
		})
	}
}

// TestRollupCovered checks the CPU covered milliseconds and interval counts against
// intervals counted from the stored raw samples, one window at a time.
func TestRollupCovered(t *testing.T) {
	t.Parallel()
	const res = 15 * time.Second
	db, _ := rolledUp(t, 42, 5*time.Hour, time.Hour)

	raw := readAll(t, db.Queryable())
	got := tierSamples(t, db, ObjectContainer, Tier5m, FieldCPUCovered)
	gotCount := tierSamples(t, db, ObjectContainer, Tier5m, FieldCPUCount)
	resMs, gapMs := Tier5m.Resolution().Milliseconds(), gapBound(res).Milliseconds()
	wm := db.tiers[Tier5m].next
	compared := 0
	for lset, ss := range raw {
		ls, _ := parseLabels(lset)
		if ls.Get(metricNameLabel) != MetricContainerCPU {
			continue
		}
		id := seriesID(ls)
		want, wantCount := map[int64]float64{}, map[int64]float64{}
		for i := 1; i < len(ss); i++ {
			p, c := ss[i-1], ss[i]
			if c.T-p.T > gapMs || c.V < p.V {
				continue
			}
			// The window (s, s+5m] that holds the interval's end.
			if s := (c.T+resMs-1)/resMs*resMs - resMs; s < wm {
				wantCount[s]++
			}
			for s := p.T / resMs * resMs; s < c.T; s += resMs {
				if s >= wm {
					break
				}
				if lo, hi := max(s, p.T), min(s+resMs, c.T); hi > lo {
					want[s] += float64(hi - lo)
				}
			}
		}
		for s, v := range want {
			compared++
			if got[id][s] != v {
				t.Errorf("%v window %s: covered %v ms, want %v", id, time.UnixMilli(s).UTC(), got[id][s], v)
			}
			if gotCount[id][s] != wantCount[s] {
				t.Errorf("%v window %s: %v intervals end in it, want %v", id, time.UnixMilli(s).UTC(), gotCount[id][s], wantCount[s])
			}
		}
		if len(got[id]) != len(want) {
			t.Errorf("%v: %d windows with covered time, want %d", id, len(got[id]), len(want))
		}
	}
	if compared == 0 {
		t.Fatal("no window compared")
	}
}

// TestRollupResumes checks that passes stopped anywhere (the clock moving a batch at a time,
// a crash between a block and its watermark, a restart) write every window exactly once:
// the tiers' blocks hold as many samples as one pass over everything writes, and the same.
func TestRollupResumes(t *testing.T) {
	t.Parallel()
	const res = 15 * time.Second
	start := tierStart
	w := randomWorkload(7, start, 15*time.Hour, res)

	once := newTestDB(t, Config{Resolution: res})
	write(t, once, w.batches...)
	rollupAll(t, once, w.end.Add(time.Hour))
	want := readAll(t, once.Queryable())

	dir := t.TempDir()
	cfg := Config{Dir: dir, Resolution: res}
	db, err := Open(cfg, slogt(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	write(t, db, w.batches...)
	// The clock moves in steps of 40 minutes: passes write what became final.
	for now := start; now.Before(w.end.Add(time.Hour)); now = now.Add(40 * time.Minute) {
		db.now = func() time.Time { return now }
		if err := db.Rollup(context.Background()); err != nil {
			t.Fatal(err)
		}
		if now.After(start.Add(9 * time.Hour)) {
			break
		}
	}
	mid := db.tiers[Tier5m].next
	var before [NumTiers]float64
	for tr := range NumTiers {
		before[tr] = testutil.ToFloat64(db.rm.samples.WithLabelValues(tr.String()))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash after a block was renamed into place but before the watermark moved: the
	// watermark file still says an earlier batch.
	if err := writeFileSync(filepath.Join(dir, tiersSubdir, "5m.watermark"), watermark{Next: mid - 2*tierDefs[Tier5m].batch.Milliseconds()}); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, cfg, slogt(t))
	if got := db.tiers[Tier5m].next; got != mid {
		t.Errorf("after reopening with an older watermark: next %d, want %d (the newest block's end)", got, mid)
	}
	rollupAll(t, db, w.end.Add(time.Hour))
	got := readAll(t, db.Queryable())
	for name, ss := range want {
		if !strings.Contains(name, ":") {
			continue
		}
		if fmt.Sprint(got[name]) != fmt.Sprint(ss) {
			t.Errorf("%s: resumed passes wrote %v, one pass %v", name, got[name], ss)
		}
	}
	for tr := range NumTiers {
		// Samples written, counted: a merged query (or a vertical compaction) would hide a
		// window written twice.
		name := tr.String()
		resumed := before[tr] + testutil.ToFloat64(db.rm.samples.WithLabelValues(name))
		if one := testutil.ToFloat64(once.rm.samples.WithLabelValues(name)); resumed != one || one == 0 {
			t.Errorf("tier %s: resumed passes wrote %v samples, one pass %v", tr, resumed, one)
		}
	}
}

// TestRollupNeedsSpace checks that a pass writes no block, and says why, while the disk has
// no room for one above what the raw TSDB needs; and that the next pass with room catches up.
func TestRollupNeedsSpace(t *testing.T) {
	t.Parallel()
	const res = 15 * time.Second
	start := tierStart
	w := randomWorkload(3, start, 5*time.Hour, res)
	db := newTestDB(t, Config{Resolution: res})
	write(t, db, w.batches...)
	need := diskReserve(max(db.cfg.ExpectedSeries, int(db.tsdb.Head().NumSeries()))) + db.compactionSpace() + blockSegmentSize
	db.freeBytes = func(string) (uint64, error) { return need, nil }
	db.now = func() time.Time { return w.end.Add(time.Hour) }
	err := db.Rollup(context.Background())
	if !errors.Is(err, errTierSpace) || !errors.Is(db.RollupHealth(), errTierSpace) {
		t.Fatalf("Rollup with %d bytes free: %v (health %v), want errTierSpace", need, err, db.RollupHealth())
	}
	for tr := range NumTiers {
		if n := len(blockDirs(t, db.cfg.tierDir(tr))); n != 0 || db.tiers[tr].next != 0 {
			t.Errorf("tier %s: %d blocks and watermark %d after a pass without space, want none", tr, n, db.tiers[tr].next)
		}
	}
	db.freeBytes = func(string) (uint64, error) { return need + 1<<30, nil }
	rollupAll(t, db, w.end.Add(time.Hour))
	if n := len(blockDirs(t, db.cfg.tierDir(Tier5m))); n == 0 {
		t.Error("no 5m block after space returned")
	}
}

// blockDirs lists the block directories under dir.
func blockDirs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "meta.json")); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// rangeAll returns Range's series by object.
func rangeAll(t *testing.T, db *DB, sel Selector, q RangeQuery) map[SeriesID]RangeSeries {
	t.Helper()
	out := map[SeriesID]RangeSeries{}
	err := db.Range(context.Background(), sel, q, func(rs *RangeSeries) error {
		c := *rs
		c.Values = append([]float64(nil), rs.Values...)
		out[rs.ID] = c
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRangeFromTiers checks the planner and the steps it reads from tiers: a query whose
// steps are five windows or more reads the covered steps from the coarsest tier that holds
// them and the rest from the raw samples, in order, and its step values and summary equal
// the raw query's within the tier's rounding (half a millicore or a KiB per window); a
// percentile comes from the windows.
func TestRangeFromTiers(t *testing.T) {
	t.Parallel()
	// Rolled up at the end: the last steps are read raw, and the 5m tier (2h batches)
	// goes further than the 1h tier (24h batches): to 06:00 against 00:00 of the last day.
	start := tierStart
	db, w := rolledUp(t, 11, 56*time.Hour, 0)
	_, max5m, _ := db.TierCoverage(Tier5m)
	_, max1h, _ := db.TierCoverage(Tier1h)
	if max5m <= max1h {
		t.Fatalf("the 5m tier ends at %s, the 1h tier at %s: want the 5m one further", time.UnixMilli(max5m).UTC(), time.UnixMilli(max1h).UTC())
	}

	for _, c := range []struct {
		name  string
		step  time.Duration
		tiers []Source // the sources of the parts, in order
	}{
		{"1h steps", time.Hour, []Source{SourceTier5m, SourceRaw}},
		{"30m steps", 30 * time.Minute, []Source{SourceTier5m, SourceRaw}},
		{"6h steps", 6 * time.Hour, []Source{SourceTier1h, SourceTier5m, SourceRaw}},
		{"5h steps", 5 * time.Hour, []Source{SourceTier1h, SourceTier5m, SourceRaw}},
		{"20m steps: fewer than five windows", 20 * time.Minute, []Source{SourceRaw}},
		{"7m steps: not whole windows", 7 * time.Minute, []Source{SourceRaw}},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := RangeQuery{
				Start: start.Truncate(c.step).Add(c.step), End: w.end.Truncate(c.step).Add(c.step), Step: c.step,
				Summary: []Agg{AggAvg, AggMin, AggMax, AggCount, AggP95},
			}
			parts := db.Plan(q)
			var got []Source
			for i, p := range parts {
				got = append(got, p.Source)
				if i > 0 && p.First != parts[i-1].Last+1 || i == 0 && p.First != 0 {
					t.Errorf("parts %v do not tile the grid", parts)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.tiers) || parts[len(parts)-1].Last != q.Steps()-1 {
				t.Fatalf("Plan: parts %v, want sources %v over %d steps", parts, c.tiers, q.Steps())
			}
			// Each step from the coarsest tier that qualifies and holds it.
			for _, p := range parts {
				for i := p.First; i <= p.Last; i++ {
					want := SourceRaw
					for tr := NumTiers - 1; tr < NumTiers; tr-- {
						mint, maxt, _ := db.TierCoverage(tr)
						at, res := q.At(i).UnixMilli(), tr.Resolution()
						if 5*res <= c.step && c.step%res == 0 && mint <= at-c.step.Milliseconds() && at <= maxt {
							want = tierSource(tr)
							break
						}
					}
					if p.Source != want {
						t.Errorf("step %s from %s, want %s", q.At(i).UTC(), p.Source, want)
					}
				}
			}
			for _, o := range []Object{ObjectNode, ObjectContainer} {
				for _, r := range []struct {
					res Resource
					agg Agg
					tol float64 // of a step value
				}{
					{ResourceCPU, AggAvg, 0.5e-3}, {ResourceCPU, AggMin, 0.5e-3}, {ResourceCPU, AggMax, 0.5e-3},
					{ResourceMemory, AggAvg, 512}, {ResourceMemory, AggMax, 512}, {ResourceMemory, AggCount, 0},
				} {
					q.Resource, q.Agg = r.res, r.agg
					auto := rangeAll(t, db, Selector{Object: o}, q)
					rq := q
					rq.Source = SourceRaw
					raw := rangeAll(t, db, Selector{Object: o}, rq)
					if len(auto) != len(raw) || len(raw) == 0 {
						t.Errorf("%s %s %s: %d series planned, %d raw", o, r.res, r.agg, len(auto), len(raw))
					}
					for id, rs := range raw {
						as := auto[id]
						for i, v := range rs.Values {
							if a := as.Values[i]; math.IsNaN(a) != math.IsNaN(v) || math.Abs(a-v) > r.tol {
								t.Errorf("%s %s %s %v step %s: planned %v, raw %v", o, r.res, r.agg, id, q.At(i).UTC(), a, v)
							}
						}
						// The summary: the same points, from windows.
						tol := map[Resource]float64{ResourceCPU: 0.5e-3, ResourceMemory: 512}[r.res]
						if as.Summary.Count != rs.Summary.Count {
							t.Errorf("%s %s %v summary count: planned %d, raw %d", o, r.res, id, as.Summary.Count, rs.Summary.Count)
						}
						for _, a := range []Agg{AggMin, AggMax} {
							if math.Abs(as.Summary.Get(a)-rs.Summary.Get(a)) > tol {
								t.Errorf("%s %s %v summary %s: planned %v, raw %v", o, r.res, id, a, as.Summary.Get(a), rs.Summary.Get(a))
							}
						}
						if avg, ravg := as.Summary.Get(AggAvg), rs.Summary.Get(AggAvg); math.Abs(avg-ravg) > max(tol, 1e-3*math.Abs(ravg)) {
							t.Errorf("%s %s %v summary avg: planned %v, raw %v", o, r.res, id, avg, ravg)
						}
						if p := as.Summary.Get(AggP95); !(p >= as.Summary.Get(AggMin)-tol && p <= as.Summary.Get(AggMax)+tol) {
							t.Errorf("%s %s %v summary p95 %v outside [min, max]", o, r.res, id, p)
						}
					}
				}
			}
		})
	}
}

// TestRangeForcedSource checks that a forced tier serves every step (gaps where it holds no
// window) and refuses a grid its windows do not tile.
func TestRangeForcedSource(t *testing.T) {
	t.Parallel()
	const res = 15 * time.Second
	start := tierStart
	db, w := rolledUp(t, 5, 9*time.Hour, time.Hour)

	q := RangeQuery{Start: start.Truncate(time.Hour), End: w.end.Add(2 * time.Hour).Truncate(time.Hour), Step: 10 * time.Minute, Resource: ResourceMemory, Source: SourceTier5m}
	if p := db.Plan(q); len(p) != 1 || p[0].Source != SourceTier5m {
		t.Fatalf("Plan with the 5m tier forced: %v", p)
	}
	got := rangeAll(t, db, Selector{Object: ObjectNode}, q)
	rq := q
	rq.Source = SourceRaw
	raw := rangeAll(t, db, Selector{Object: ObjectNode}, rq)
	if len(got) == 0 || len(got) != len(raw) {
		t.Fatalf("%d series from the forced tier, %d raw", len(got), len(raw))
	}
	_, maxt, _ := db.TierCoverage(Tier5m)
	for id, rs := range got {
		for i, v := range rs.Values {
			// A gap where the tier holds no window; else where the raw samples have one.
			if want := q.At(i).UnixMilli() > maxt || math.IsNaN(raw[id].Values[i]); want != math.IsNaN(v) {
				t.Errorf("%v step %s: %v, raw %v (the tier holds windows up to %s)", id, q.At(i).UTC(), v, raw[id].Values[i], time.UnixMilli(maxt).UTC())
			}
		}
	}
	q.Step = 7 * time.Minute
	if err := db.Range(context.Background(), Selector{Object: ObjectNode}, q, func(*RangeSeries) error { return nil }); err == nil || !strings.Contains(err.Error(), "whole multiples of 5m") {
		t.Errorf("a 7m step from the 5m tier: %v, want an error naming the windows", err)
	}
}

// TestTierCompactionsPause checks that a tier's TSDB compacts its blocks, and none while the
// disk is short of space (checkSpace pauses the tiers' compactions with the raw TSDB's).
func TestTierCompactionsPause(t *testing.T) {
	t.Parallel()
	w := randomWorkload(9, tierStart, 20*time.Hour, 15*time.Second)
	db := newTestDB(t, Config{Resolution: 15 * time.Second})
	write(t, db, w.batches...)
	// Paused from the start: the tier's own loop (a reload every few seconds) would
	// otherwise compact while the blocks are written.
	db.tierCompactionsOff.Store(true)
	rollupAll(t, db, w.end.Add(time.Hour))
	tier := db.tiers[Tier5m].db
	before := len(tier.Blocks())
	if before < 6 {
		t.Fatalf("%d blocks of 2h in 20h", before)
	}
	samples := func() (n uint64) {
		for _, b := range tier.Blocks() {
			n += b.Meta().Stats.NumSamples
		}
		return n
	}
	want := samples()

	if err := tier.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(tier.Blocks()); n != before {
		t.Errorf("compactions paused: %d blocks, had %d", n, before)
	}
	db.tierCompactionsOff.Store(false)
	if err := tier.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(tier.Blocks()); n >= before {
		t.Errorf("compactions resumed: %d blocks, had %d", n, before)
	}
	if got := samples(); got != want {
		t.Errorf("%d samples after compaction, %d before", got, want)
	}
}

// TestTierOptions checks each tier's TSDB options: its retention, its share of the size,
// blocks of its batch compacted up to a tenth of its retention, and no WAL.
func TestTierOptions(t *testing.T) {
	t.Parallel()
	cfg := Config{Dir: "d", RetentionSize: 10e9, TierRetention: [NumTiers]time.Duration{0, 30 * 24 * time.Hour}}.complete()
	for _, c := range []struct {
		tier                Tier
		retention, maxBlock time.Duration
		minBlock            time.Duration
		maxBytes            int64
	}{
		{Tier5m, 90 * 24 * time.Hour, 9 * 24 * time.Hour, 2 * time.Hour, 2.8e9},
		{Tier1h, 30 * 24 * time.Hour, 72 * time.Hour, 24 * time.Hour, 1.2e9},
	} {
		o := cfg.tierOptions(c.tier)
		if o.RetentionDuration != c.retention.Milliseconds() || o.MaxBlockDuration != c.maxBlock.Milliseconds() ||
			o.MinBlockDuration != c.minBlock.Milliseconds() || o.MaxBytes != c.maxBytes || o.WALSegmentSize >= 0 {
			t.Errorf("tier %s: retention %d, blocks %d..%d, max bytes %d, WAL segment %d; want %d, %d..%d, %d, no WAL", c.tier,
				o.RetentionDuration, o.MinBlockDuration, o.MaxBlockDuration, o.MaxBytes, o.WALSegmentSize,
				c.retention.Milliseconds(), c.minBlock.Milliseconds(), c.maxBlock.Milliseconds(), c.maxBytes)
		}
	}
	if raw := cfg.promOptions().MaxBytes; raw != 6e9 {
		t.Errorf("raw max bytes %d, want 6e9", raw)
	}
}

// TestTierOutlivesRaw checks that pods whose raw samples are gone (here deleted; in
// production, past --retention) keep their history at long steps, from the 5m tier: the
// same as before the raw samples went.
func TestTierOutlivesRaw(t *testing.T) {
	t.Parallel()
	const res = 15 * time.Second
	start := tierStart
	db, w := rolledUp(t, 21, 8*time.Hour, time.Hour)
	q := RangeQuery{Start: start.Truncate(time.Hour).Add(time.Hour), End: w.end.Truncate(time.Hour), Step: time.Hour, Resource: ResourceCPU}
	if p := db.Plan(q); len(p) != 1 || p[0].Source != SourceTier5m {
		t.Fatalf("plan %v, want the 5m tier for every step", p)
	}
	before := rangeAll(t, db, Selector{Object: ObjectContainer}, q)
	if err := db.tsdb.Delete(context.Background(), math.MinInt64, math.MaxInt64,
		labels.MustNewMatcher(labels.MatchRegexp, metricNameLabel, ".+")); err != nil {
		t.Fatal(err)
	}
	raw := q
	raw.Source = SourceRaw
	if got := rangeAll(t, db, Selector{Object: ObjectContainer}, raw); len(got) != 0 {
		t.Fatalf("%d series from the deleted raw samples", len(got))
	}
	got := rangeAll(t, db, Selector{Object: ObjectContainer}, q)
	if len(got) == 0 || len(got) != len(before) {
		t.Fatalf("%d series once the raw samples are gone, %d before", len(got), len(before))
	}
	for id, rs := range got {
		if fmt.Sprint(rs.Values) != fmt.Sprint(before[id].Values) {
			t.Errorf("%v: %v once the raw samples are gone, %v before", id, rs.Values, before[id].Values)
		}
	}
}

// TestRollupPaced checks the pass RunRollups makes: at most one batch that holds windows per
// tier, however far behind the tier is, the rest at the next passes; empty batches (an
// outage) do not count.
func TestRollupPaced(t *testing.T) {
	t.Parallel()
	const res = 15 * time.Second
	start := tierStart
	w := randomWorkload(13, start, 7*time.Hour, res)
	db := newTestDB(t, Config{Resolution: res})
	write(t, db, w.batches...)
	db.tierCompactionsOff.Store(true) // blocks are counted: none merged meanwhile
	// Days later: every batch is final, most of them empty.
	db.now = func() time.Time { return w.end.Add(72 * time.Hour) }
	batch := tierDefs[Tier5m].batch.Milliseconds()
	first := start.UnixMilli() / batch * batch
	for pass := 1; pass <= 4; pass++ {
		if err := db.rollup(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		if got, want := len(blockDirs(t, db.cfg.tierDir(Tier5m))), pass; got != want {
			t.Errorf("after pass %d: %d blocks of the 5m tier, want %d", pass, got, want)
		}
		if got, want := db.tiers[Tier5m].next, first+int64(pass)*batch; pass < 4 && got != want {
			t.Errorf("after pass %d: next window %s, want %s", pass, time.UnixMilli(got).UTC(), time.UnixMilli(want).UTC())
		}
		// Days behind what is final: the health check says so, and the lag metric.
		if err := db.RollupHealth(); err == nil || !strings.Contains(err.Error(), "tier 5m holds every window up to") {
			t.Errorf("after pass %d: RollupHealth = %v, want the 5m tier behind", pass, err)
		}
		if lag := testutil.ToFloat64(db.rm.lag.WithLabelValues("5m")); lag < (60 * time.Hour).Seconds() {
			t.Errorf("after pass %d: hindsight_rollup_lag_seconds{tier=5m} = %v, want days", pass, lag)
		}
	}
	// The fourth batch held the last windows: the next pass goes through the empty ones.
	if err := db.rollup(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if n := len(blockDirs(t, db.cfg.tierDir(Tier5m))); n != 4 {
		t.Errorf("%d blocks after a pass over empty batches, want 4", n)
	}
	if err := db.RollupHealth(); err != nil {
		t.Errorf("RollupHealth once caught up: %v", err)
	}
	if next, horizon := db.tiers[Tier5m].next, db.now().Add(-rollupDelay(res)-gapBound(res)).UnixMilli(); horizon-next >= batch {
		t.Errorf("next window %s after the last batch with windows, want within a batch of %s", time.UnixMilli(next).UTC(), time.UnixMilli(horizon).UTC())
	}
}

// TestTierReadsWhatIsAsked checks that a query from a tier that asks for fewer aggregations
// (so reads fewer of the tier's series) gets the same values for those it asks for.
func TestTierReadsWhatIsAsked(t *testing.T) {
	t.Parallel()
	db, w := rolledUp(t, 17, 10*time.Hour, time.Hour)
	all := []Agg{AggAvg, AggMin, AggMax, AggCount, AggP95}
	for _, res := range []Resource{ResourceCPU, ResourceMemory} {
		for _, agg := range all {
			q := RangeQuery{Start: tierStart.Truncate(time.Hour).Add(time.Hour), End: w.end.Truncate(time.Hour), Step: time.Hour,
				Resource: res, Agg: agg, Source: SourceTier5m}
			few := q
			few.Summary = []Agg{agg}
			q.Summary = all
			full, part := rangeAll(t, db, Selector{Object: ObjectPod}, q), rangeAll(t, db, Selector{Object: ObjectPod}, few)
			if len(full) == 0 || len(full) != len(part) {
				t.Fatalf("%s %s: %d series asking for every aggregation, %d asking for one", res, agg, len(full), len(part))
			}
			for id, rs := range full {
				p := part[id]
				if fmt.Sprint(rs.Values) != fmt.Sprint(p.Values) || rs.Summary.Get(agg) != p.Summary.Get(agg) && !(math.IsNaN(rs.Summary.Get(agg)) && math.IsNaN(p.Summary.Get(agg))) {
					t.Errorf("%s %s %v: %v (summary %v) asking for one aggregation, %v (%v) for all", res, agg, id, p.Values, p.Summary.Get(agg), rs.Values, rs.Summary.Get(agg))
				}
			}
		}
	}
}

// TestTierRetention checks that a tier's retention deletes that tier's old blocks only: the
// other tier and the raw samples keep theirs.
func TestTierRetention(t *testing.T) {
	t.Parallel()
	w := randomWorkload(23, tierStart, 80*time.Hour, 15*time.Second)
	db := newTestDB(t, Config{Resolution: 15 * time.Second, TierRetention: [NumTiers]time.Duration{24 * time.Hour, 0}})
	write(t, db, w.batches...)
	rawBefore := readAll(t, db.tsdb)
	rollupAll(t, db, w.end.Add(time.Hour))

	// The 5m tier applies its retention as it loads each new block: what is left spans a
	// day (and one block) before its newest block.
	mint5, maxt5, _ := db.TierCoverage(Tier5m)
	if span := time.Duration(maxt5-mint5) * time.Millisecond; span > 24*time.Hour+tierDefs[Tier5m].batch {
		t.Errorf("the 5m tier spans %s with a retention of 24h", span)
	}
	if n := testutil.ToFloat64(db.rm.samples.WithLabelValues("5m")); n == 0 {
		t.Fatal("no 5m samples written")
	}
	// The 1h tier keeps every day, from the workload's first.
	if mint1, _, _ := db.TierCoverage(Tier1h); mint1 > tierStart.UnixMilli() {
		t.Errorf("the 1h tier starts at %s, after the first samples at %s", time.UnixMilli(mint1).UTC(), tierStart.UTC())
	}
	// And the raw samples are all there.
	rawAfter := readAll(t, db.tsdb)
	if len(rawAfter) != len(rawBefore) {
		t.Fatalf("%d raw series after the tiers' retention, %d before", len(rawAfter), len(rawBefore))
	}
	for name, ss := range rawBefore {
		if len(rawAfter[name]) != len(ss) {
			t.Errorf("%s: %d raw samples after the tiers' retention, %d before", name, len(rawAfter[name]), len(ss))
		}
	}
}
