package tsdb

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
)

// viewSelect reads metric name through DownsampledQueryable(maxRes, false) with hints, by
// the series' labels.
func viewSelect(t *testing.T, db *DB, maxRes time.Duration, hints storage.SelectHints, name string) map[string][]sample {
	t.Helper()
	q, err := db.DownsampledQueryable(maxRes, false).Querier(hints.Start, hints.End)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	return collectSet(t, q.Select(context.Background(), true, &hints, labels.MustNewMatcher(labels.MatchEqual, metricNameLabel, name)))
}

// sourceAt returns the segment of segs that holds point time ts.
func sourceAt(segs []viewSegment, ts int64) viewSegment {
	for _, s := range segs {
		if ts > s.lo && ts <= s.hi {
			return s
		}
	}
	return viewSegment{lo: math.MinInt64, raw: true}
}

// TestDownsampledSegments checks which source serves each span: the coarsest allowed tier
// that holds windows there, finer ones after it, the raw samples after them.
func TestDownsampledSegments(t *testing.T) {
	t.Parallel()
	db, w := rolledUp(t, 11, 56*time.Hour, 0)
	min1h, max1h, _ := db.TierCoverage(Tier1h)
	min5m, max5m, _ := db.TierCoverage(Tier5m)
	start, end := w.start.UnixMilli(), w.end.UnixMilli()
	if min1h >= start || min5m >= start {
		t.Fatalf("the tiers begin at %d and %d, after the workload's %d", min1h, min5m, start)
	}
	for _, c := range []struct {
		max  time.Duration
		want []viewSegment
	}{
		{time.Hour, []viewSegment{{lo: start - 1, hi: max1h, tier: Tier1h}, {lo: max1h, hi: max5m, tier: Tier5m}, {lo: max5m, hi: end, raw: true}}},
		{30 * time.Minute, []viewSegment{{lo: start - 1, hi: max5m, tier: Tier5m}, {lo: max5m, hi: end, raw: true}}},
		{4 * time.Minute, []viewSegment{{lo: start - 1, hi: end, raw: true}}},
	} {
		got := db.segments(start, end, c.max)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("segments up to %s: %v, want %v", c.max, got, c.want)
		}
	}

	q := &downsampledQuerier{q: downsampledQueryable{db: db, max: time.Hour}}
	qa := &downsampledQuerier{q: downsampledQueryable{db: db, auto: true}}
	for _, c := range []struct {
		q     *downsampledQuerier
		hints storage.SelectHints
		want  time.Duration
	}{
		{q, storage.SelectHints{}, time.Hour},
		{q, storage.SelectHints{Range: time.Hour.Milliseconds()}, 12 * time.Minute},
		{q, storage.SelectHints{Range: 10 * time.Hour.Milliseconds()}, time.Hour},
		{qa, storage.SelectHints{Step: time.Hour.Milliseconds()}, 12 * time.Minute},
		{qa, storage.SelectHints{Step: time.Hour.Milliseconds(), Range: 10 * time.Minute.Milliseconds()}, 2 * time.Minute},
		{qa, storage.SelectHints{}, 0},                                                           // an instant query's instant selector
		{qa, storage.SelectHints{Range: 30 * 24 * time.Hour.Milliseconds()}, 6 * 24 * time.Hour}, // and its range selector
	} {
		if got := c.q.maxRes(&c.hints); got != c.want {
			t.Errorf("max %s auto %v hints %+v: maxRes %s, want %s", c.q.q.max, c.q.q.auto, c.hints, got, c.want)
		}
	}
}

// TestDownsampledMemory checks the memory points a view serves: in a tier's span one per
// window that holds raw samples, stamped at its end, worth the raw max (inside
// max_over_time) or avg of the window rounded to a KiB; in the raw span the raw samples.
func TestDownsampledMemory(t *testing.T) {
	t.Parallel()
	db, w := rolledUp(t, 5, 56*time.Hour, 0)
	raw := readAll(t, db.Queryable())
	end := w.end.UnixMilli()
	for _, c := range []struct {
		name  string
		start int64
		fn    string
	}{
		// From before the first sample: kubelet timestamps precede the scrape.
		{"max", w.start.Add(-time.Hour).UnixMilli(), "max_over_time"},
		{"avg", w.start.Add(-time.Hour).UnixMilli(), "avg_over_time"},
		{"min", w.start.Add(-time.Hour).UnixMilli(), "min"},
		// Inside an hour's window of the 1h tier (as the tenancy clamps a range to a
		// namespace's incarnation): that window tells of samples before the start, and is
		// left out, as the raw samples before it are.
		{"max from mid-window", w.start.Truncate(time.Hour).Add(10*time.Hour + 30*time.Minute).UnixMilli(), "max_over_time"},
	} {
		start, fn := c.start, c.fn
		segs := db.segments(start, end, time.Hour)
		got := viewSelect(t, db, time.Hour, storage.SelectHints{Start: start, End: end, Func: fn}, MetricContainerMemory)
		n := 0
		for lset, ss := range raw {
			ls, _ := parseLabels(lset)
			if ls.Get(metricNameLabel) != MetricContainerMemory {
				continue
			}
			n++
			// The expected points, from the raw samples alone.
			var want []sample
			type acc struct{ sum, min, max, n float64 }
			windows := map[int64]*acc{}
			var ends []int64
			for _, s := range ss {
				if s.T < start {
					continue
				}
				seg := sourceAt(segs, s.T)
				if seg.raw {
					want = append(want, s)
					continue
				}
				res := seg.tier.Resolution().Milliseconds()
				e := ceilDiv(s.T, res) * res
				if e-res < seg.lo {
					continue // the window begins before the segment
				}
				a := windows[e]
				if a == nil {
					a = &acc{min: math.Inf(1), max: math.Inf(-1)}
					windows[e] = a
					ends = append(ends, e)
				}
				a.sum, a.n = a.sum+s.V, a.n+1
				a.min, a.max = min(a.min, s.V), max(a.max, s.V)
			}
			for _, e := range ends {
				a := windows[e]
				v := a.sum / a.n
				switch fn {
				case "max_over_time":
					v = a.max
				case "min":
					v = a.min
				}
				want = append(want, sample{e, math.Round(v/1024) * 1024})
			}
			slices.SortFunc(want, func(a, b sample) int { return int(a.T - b.T) })
			if g := got[lset]; fmt.Sprint(g) != fmt.Sprint(want) {
				t.Errorf("%s %s: %d points, want %d\n got %v\nwant %v", c.name, lset, len(g), len(want), head(g), head(want))
			}
		}
		if len(got) != n || n == 0 {
			t.Errorf("%s: %d series, want %d", c.name, len(got), n)
		}
	}
}

func head(s []sample) []sample { return s[:min(len(s), 6)] }

// coreSeconds returns the CPU used up to T by a raw counter's samples by Range's rules: an
// interval (pt, t] at most the gap bound long, where the counter did not decrease, used its
// increase evenly over its length.
func coreSeconds(ss []sample, gap, T int64) float64 {
	sum := 0.0
	for i := 1; i < len(ss); i++ {
		p, s := ss[i-1], ss[i]
		if s.T <= p.T || s.T-p.T > gap || s.V < p.V || p.T >= T {
			continue
		}
		sum += (s.V - p.V) * float64(min(s.T, T)-p.T) / float64(s.T-p.T)
	}
	return sum
}

// viewSegmentsSelect reads metric name through the view over the given segments.
func viewSegmentsSelect(t *testing.T, db *DB, segs []viewSegment, hints storage.SelectHints, name string) map[string][]sample {
	t.Helper()
	qr, err := db.DownsampledQueryable(time.Hour, false).Querier(hints.Start, hints.End)
	if err != nil {
		t.Fatal(err)
	}
	defer qr.Close()
	def, _ := LookupSeries(name)
	set, err := qr.(*downsampledQuerier).selectView(context.Background(), def, &hints, segs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return collectSet(t, set)
}

// TestDownsampledCounter checks the rebuilt CPU counter: it never decreases, and between
// any two of its points it grows by the core-seconds the raw samples used between their
// times, across tiers and junctions both ways; to a millicore of rounding per window in a
// tier, exactly in the raw spans. A series with no sample where a tier serves is the raw
// one.
func TestDownsampledCounter(t *testing.T) {
	t.Parallel()
	db, w := rolledUp(t, 7, 56*time.Hour, 0)
	raw := readAll(t, db.Queryable())
	gap := gapBound(15 * time.Second).Milliseconds()
	start, end := w.start.Add(-time.Hour).UnixMilli(), w.end.UnixMilli()
	_, max1h, _ := db.TierCoverage(Tier1h)
	hour := time.Hour.Milliseconds()
	for _, plan := range []struct {
		name string
		segs []viewSegment
	}{
		{"planned", db.segments(start, end, time.Hour)}, // 1h, 5m, raw
		// A tier between raw spans: the junction from raw to a tier too.
		{"raw, 5m, raw", []viewSegment{{lo: start - 1, hi: max1h - 20*hour, raw: true}, {lo: max1h - 20*hour, hi: max1h - 10*hour, tier: Tier5m}, {lo: max1h - 10*hour, hi: end, raw: true}}},
	} {
		for _, o := range []Object{ObjectNode, ObjectPod, ObjectContainer} {
			name := SeriesName(o, ResourceCPU)
			got := viewSegmentsSelect(t, db, plan.segs, storage.SelectHints{Start: start, End: end, Func: "rate"}, name)
			n, rebuilt := 0, 0
			for lset, ss := range raw {
				ls, _ := parseLabels(lset)
				if ls.Get(metricNameLabel) != name {
					continue
				}
				n++
				g := got[lset]
				inTier, intervalInTier := false, false
				for i, s := range ss {
					if !sourceAt(plan.segs, s.T).raw {
						inTier = true
						intervalInTier = intervalInTier || i > 0 && s.T-ss[i-1].T <= gap
					}
				}
				switch {
				case len(g) == 0:
					t.Errorf("%s %s: no points", plan.name, lset)
					continue
				case !inTier:
					if fmt.Sprint(g) != fmt.Sprint(ss) {
						t.Errorf("%s %s: no sample in a tier's span, yet %d points are not the raw %d", plan.name, lset, len(g), len(ss))
					}
					continue
				case fmt.Sprint(g) == fmt.Sprint(ss):
					if intervalInTier {
						t.Errorf("%s %s: intervals in a tier's span, yet the raw samples are served", plan.name, lset)
					}
					continue
				}
				rebuilt++
				// It begins at its first raw sample, or in a tier: at the base plus its
				// first window's core-seconds (the query starts before the series).
				first := rebuiltBase + coreSeconds(ss, gap, g[0].T)
				if tol := 0.5e-3*float64(g[0].T-ss[0].T)/1e3 + 1e-6; g[0] != ss[0] && math.Abs(g[0].V-first) > tol {
					t.Errorf("%s %s: first point %v, want the first raw sample %v or %v ± %v", plan.name, lset, g[0], ss[0], first, tol)
				}
				for i := 1; i < len(g); i++ {
					p, s := g[i-1], g[i]
					want := coreSeconds(ss, gap, s.T) - coreSeconds(ss, gap, p.T)
					// Each window's avg is rounded to a millicore: half a millicore over the span.
					tol := 0.5e-3*float64(s.T-p.T)/1e3 + 1e-6
					if s.T <= p.T || s.V < p.V || math.Abs(s.V-p.V-want) > tol {
						t.Errorf("%s %s: %v to %v grows by %v, want %v ± %v", plan.name, lset, p, s, s.V-p.V, want, tol)
						break
					}
				}
			}
			if len(got) != n || n == 0 || rebuilt == 0 {
				t.Errorf("%s %s: %d series of %d, %d rebuilt", plan.name, name, len(got), n, rebuilt)
			}
		}
	}
}

// TestDownsampledPromQL runs PromQL over the view and the raw samples: max_over_time of
// memory on a grid aligned to the hour is the raw one to a KiB, from the tiers where they
// hold the range; and rate over them is the history API's avg of the same windows.
func TestDownsampledPromQL(t *testing.T) {
	t.Parallel()
	db, w := rolledUp(t, 3, 56*time.Hour, 0)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e8, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	ctx := context.Background()
	start := w.start.Truncate(time.Hour).Add(7 * time.Hour)
	end := w.end.Truncate(time.Hour)
	var samples int64 // the last query's
	var infos []string
	run := func(q storage.Queryable, qs string, step time.Duration) promql.Matrix {
		t.Helper()
		qry, err := eng.NewRangeQuery(ctx, q, nil, qs, start, end, step)
		if err != nil {
			t.Fatal(err)
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		samples = qry.Stats().Samples.TotalSamples
		_, infos = res.Warnings.AsStrings(qs, 10, 10)
		m, err := res.Matrix()
		if err != nil {
			t.Fatal(err)
		}
		// Close hands the points back to the engine's pool: keep a copy.
		out := make(promql.Matrix, len(m))
		for i, s := range m {
			out[i] = promql.Series{Metric: s.Metric, Floats: slices.Clone(s.Floats)}
		}
		return out
	}
	view := db.DownsampledQueryable(0, true)

	// 6h steps: auto allows the 1h tier; a 6h range holds six windows of it.
	qs := "max_over_time(" + MetricContainerMemory + "[6h])"
	got := run(view, qs, 6*time.Hour)
	viewSamples := samples
	// The response tells which source served which span.
	_, max1h, _ := db.TierCoverage(Tier1h)
	wantInfo := "PromQL info: " + MetricContainerMemory + " (the windows' max) read from the 1h tier until " + time.UnixMilli(max1h).UTC().Format(time.RFC3339)
	if _, max5m, _ := db.TierCoverage(Tier5m); end.UnixMilli() > max5m {
		t.Fatalf("the query ends at %s, after the 5m tier's %d", end, max5m)
	}
	wantInfo += ", then from the 5m tier" // the query ends before the raw samples'
	if len(infos) != 1 || infos[0] != wantInfo {
		t.Errorf("infos %q, want %q", infos, wantInfo)
	}
	want := run(db.Queryable(), qs, 6*time.Hour)
	// An hour's window is one sample, where raw has 240.
	if viewSamples*100 > samples {
		t.Errorf("%s read %d samples from the view, %d raw: want under 1%%", qs, viewSamples, samples)
	}
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("%s: %d series from the view, %d raw", qs, len(got), len(want))
	}
	for i := range want {
		if labels.Compare(got[i].Metric, want[i].Metric) != 0 || len(got[i].Floats) != len(want[i].Floats) {
			t.Fatalf("%s: series %d: view %s %d steps, raw %s %d steps", qs, i, got[i].Metric, len(got[i].Floats), want[i].Metric, len(want[i].Floats))
		}
		for j, p := range want[i].Floats {
			if g := got[i].Floats[j]; g.T != p.T || math.Abs(g.F-p.F) > 512 {
				t.Errorf("%s %s: view %v, raw %v", qs, want[i].Metric, g, p)
			}
		}
	}

	// rate over 1h ranges at 1h steps: from the 5m tier (a fifth of the range), the
	// windows' covered-weighted avg over the range but its first window (PromQL's
	// extrapolation stretches the eleven windows between its points to the hour).
	step := time.Hour
	rq := RangeQuery{Resource: ResourceCPU, Agg: AggAvg, Start: start, End: end, Step: 5 * time.Minute, Source: SourceTier5m}
	avg := rangeAll(t, db, Selector{Object: ObjectNode}, rq)
	cov := tierSamples(t, db, ObjectNode, Tier5m, FieldCPUCovered)
	_, max5m, _ := db.TierCoverage(Tier5m)
	rates := run(view, "rate("+MetricNodeCPU+"[1h])", step)
	if len(rates) != len(avg) {
		t.Fatalf("rate: %d series, %d from Range", len(rates), len(avg))
	}
	checked := 0
	for _, s := range rates {
		id := seriesID(s.Metric)
		for _, p := range s.Floats {
			if p.T > max5m {
				break
			}
			// The windows ending in (T-1h, T]: Range's steps ending there. The first is
			// PromQL's first point; the increase is the other eleven windows'.
			var sum float64
			n := 0
			for i, v := range avg[id].Values {
				e := rq.At(i).UnixMilli()
				if e > p.T-time.Hour.Milliseconds() && e <= p.T && !math.IsNaN(v) {
					n++
					if e > p.T-55*time.Minute.Milliseconds() {
						sum += math.Round(v*1e3) * cov[id][e-5*time.Minute.Milliseconds()]
					}
				}
			}
			if n != 12 {
				continue // a gap: PromQL extrapolates otherwise
			}
			// millicores × ms over 55 minutes, extrapolated to the hour.
			want := sum / 1e6 / (55 * 60)
			if math.Abs(p.F-want) > 1e-8 {
				t.Errorf("rate %s at %s: %v, want %v", id, time.UnixMilli(p.T).UTC(), p.F, want)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Error("rate: no step checked")
	}
}

// FuzzDownsampledQuery runs arbitrary PromQL over the view and the raw samples: a query that
// runs on the raw samples runs on the view too (no panic, no error of the view's own), and
// a rate or increase of a rebuilt counter is never negative.
func FuzzDownsampledQuery(f *testing.F) {
	for _, s := range []string{
		`rate(container_cpu_usage_seconds_total[1h])`,
		`sum by (namespace) (increase(pod_cpu_usage_seconds_total{namespace=~"ns-.*"}[3h]))`,
		`max_over_time(node_memory_working_set_bytes[6h])`,
		`min(container_memory_working_set_bytes)`,
		`container_cpu_usage_seconds_total offset 1d`,
		`irate(node_cpu_usage_seconds_total[30m] @ 1700100000)`,
		`max_over_time(rate(container_cpu_usage_seconds_total[30m])[6h:1h])`,
		`{__name__="pod_memory_working_set_bytes", __name__!="x"}`,
		`count_over_time(container_memory_working_set_bytes{container="c0"}[1d])`,
	} {
		f.Add(s, uint16(60), uint8(0))
	}
	db, w := rolledUp(f, 17, 30*time.Hour, 0)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 5e6, Timeout: 20 * time.Second, LookbackDelta: 5 * time.Minute,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() }})
	views := []storage.Queryable{db.DownsampledQueryable(0, true), db.DownsampledQueryable(5*time.Minute, false), db.DownsampledQueryable(time.Hour, false)}
	f.Fuzz(func(t *testing.T, qs string, stepMinutes uint16, view uint8) {
		step := time.Duration(max(stepMinutes, 1)) * time.Minute
		run := func(q storage.Queryable) (promql.Matrix, error) {
			qry, err := eng.NewRangeQuery(t.Context(), q, nil, qs, w.start, w.end, step)
			if err != nil {
				return nil, err
			}
			defer qry.Close()
			res := qry.Exec(t.Context())
			if res.Err != nil {
				return nil, res.Err
			}
			m, err := res.Matrix()
			if err != nil {
				return nil, nil // a scalar or a string: nothing to compare
			}
			out := make(promql.Matrix, len(m))
			for i, s := range m {
				out[i] = promql.Series{Metric: s.Metric, Floats: slices.Clone(s.Floats)}
			}
			return out, nil
		}
		_, rawErr := run(db.Queryable())
		m, err := run(views[int(view)%len(views)])
		if rawErr != nil {
			return
		}
		if err != nil {
			t.Fatalf("%s: the raw samples answer, the view fails: %v", qs, err)
		}
		if strings.HasPrefix(qs, "rate(") || strings.HasPrefix(qs, "increase(") || strings.HasPrefix(qs, "irate(") {
			for _, s := range m {
				for _, p := range s.Floats {
					if p.F < 0 {
						t.Fatalf("%s: %s at %d: %v < 0", qs, s.Metric, p.T, p.F)
					}
				}
			}
		}
	})
}
