package tsdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Range queries: past usage on a grid of steps.
//
// A raw point is what one scrape tells: for memory (and swap) the working set of a
// sample; for CPU the rate over the interval between two consecutive samples of the
// counter, in cores. An interval over which the counter decreased (a restarted container)
// or that is longer than maxGapFactor resolutions (two scrapes in a row missed) gives no
// point: a gap is never a zero, and a reset never a negative rate.
//
// Step t of [Start, End] covers (t-Step, t]. Its value is the query's aggregation of the
// raw points that cover part of it, NaN when none does:
//   - a CPU point covers its interval (prev, t]: it counts in every step the interval
//     overlaps, and CPU's avg weighs it by the overlap, so that a step's avg is the
//     counter's increase over the part of the step its intervals cover;
//   - a memory point covers its sample's step and, up to the next sample when that one
//     follows within maxGapFactor resolutions, the steps in between that hold no sample:
//     the last value, as PromQL's lookback, bounded by the gap rule and never carried
//     past a series' last sample.
//
// Kubelets' timestamps jitter around the resolution grid, so a step as long as the
// resolution may hold no sample, or two: by these rules it still has a value, and a total
// of several series does not lose a member there. The summary covers every raw point
// placed at its (later) sample in (Start-Step, End], so that it does not depend on the
// step.

// Selector picks the series of one kind of object; each non-empty field must match its
// label exactly.
type Selector struct {
	Object                               Object
	Node, Namespace, Pod, Container, UID string
	// UIDs, when not empty, picks only the series of these pod UIDs (as well as UID).
	UIDs []string
}

// RangeQuery is a grid of steps and what to compute on it.
type RangeQuery struct {
	// Start and End bound the grid: Start, Start+Step, … up to End.
	Start, End time.Time
	// Step is the grid's spacing; it must be positive.
	Step     time.Duration
	Resource Resource
	// Agg aggregates the raw points of each step. The zero Agg means AggAvg.
	Agg Agg
	// MaxSeries, when positive, makes Range fail with ErrTooManySeries once more series
	// than that match.
	MaxSeries int
	// Summary lists the aggregations of RangeSeries.Summary to compute over the raw
	// points (Count is always set when Summary is not empty). Percentiles cost a selection over every raw point
	// of the series, so ask only for what is used.
	Summary []Agg
	// Source, when not SourceAuto, forces where every step is read (plan.go).
	Source Source
	// Parts, when set, is the plan to follow (a Plan of the same query, made once for
	// several Range calls that must agree); it overrides Source.
	Parts []RangePart
	// NotBefore, when set, is the oldest sample time Range reads: nothing older counts in
	// a step or the summary, whatever the lookback before Start (a tenant's namespace
	// incarnation begins there). Steps before the first sample it allows are gaps.
	NotBefore time.Time
}

// Steps returns the number of steps of the grid.
func (q RangeQuery) Steps() int {
	if q.Step <= 0 || q.End.Before(q.Start) {
		return 0
	}
	return int(q.End.Sub(q.Start)/q.Step) + 1
}

// At returns the time of step i.
func (q RangeQuery) At(i int) time.Time { return q.Start.Add(time.Duration(i) * q.Step) }

// Validate reports every problem with q.
func (q RangeQuery) Validate() error {
	var errs []error
	if q.Step <= 0 {
		errs = append(errs, fmt.Errorf("step must be positive, got %s", q.Step))
	}
	if q.End.Before(q.Start) {
		errs = append(errs, fmt.Errorf("end %s is before start %s", q.End.Format(time.RFC3339), q.Start.Format(time.RFC3339)))
	}
	if !q.Resource.History() {
		errs = append(errs, fmt.Errorf("unknown resource %s", q.Resource))
	}
	if q.Agg != (Agg{}) && !q.Agg.valid() {
		errs = append(errs, fmt.Errorf("unknown aggregation %q", q.Agg))
	}
	for _, a := range q.Summary {
		if !a.valid() {
			errs = append(errs, fmt.Errorf("unknown summary aggregation %q", a))
		}
	}
	if err := q.validSource(); err != nil {
		errs = append(errs, err)
	}
	if err := q.validParts(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ErrTooManySeries is returned by Range when more series match than RangeQuery.MaxSeries.
var ErrTooManySeries = errors.New("tsdb: too many series")

// SeriesID names the object of a series by its labels.
type SeriesID struct {
	Node, Namespace, Pod, Container, UID string
}

// RangeSeries is one series on a RangeQuery's grid.
type RangeSeries struct {
	ID SeriesID
	// Values has one value per step, NaN where no raw point covers the step (a gap).
	Values []float64
	// Summary aggregates every raw point of the range. Unlike Values, it is not reused.
	Summary Summary
	// acc is what Summary was computed from, for a plan of several parts.
	acc summaryAcc
}

// maxGapFactor is, in resolutions, the longest interval between two samples over which a
// CPU rate is computed. A scrape retried late, or one missed round, still gives a rate;
// two missed rounds in a row are a gap.
const maxGapFactor = 2.5

// gapBound is the longest interval between two samples that Range bridges (a rate, a held
// value) at resolution: maxGapFactor resolutions.
func gapBound(resolution time.Duration) time.Duration {
	return time.Duration(maxGapFactor * float64(resolution))
}

// rangeLookback is how far before a query's start Range reads, for step at resolution: the
// raw points covering the first step may need a sample from the step before it, and that
// one a sample up to gapBound before.
func rangeLookback(step, resolution time.Duration) time.Duration {
	return step + gapBound(resolution)
}

// Range calls fn with every series that sel picks and that has a raw point in the
// range or a step value, in label order. fn must not keep the series: its slices are reused. Range stops
// at fn's first error and returns it; it fails with ErrTooManySeries when more than
// q.MaxSeries series match, and with ErrClosed when the DB closes meanwhile. Each step is
// read from the raw samples or a downsampled tier, as Plan says (plan.go).
func (db *DB) Range(ctx context.Context, sel Selector, q RangeQuery, fn func(*RangeSeries) error) error {
	if err := q.Validate(); err != nil {
		return fmt.Errorf("range query: %w", err)
	}
	if q.Agg == (Agg{}) {
		q.Agg = AggAvg
	}
	if SeriesName(sel.Object, q.Resource) == "" {
		return fmt.Errorf("range query: no %s series of object %s", q.Resource, sel.Object)
	}
	parts := q.Parts
	if parts == nil {
		parts = db.Plan(q)
	}
	if len(parts) == 1 && parts[0].Source == SourceRaw {
		return db.rangeRaw(ctx, sel, q, fn)
	}
	return db.rangeParts(ctx, sel, q, parts, fn)
}

// rangeRaw is Range over the raw samples.
func (db *DB) rangeRaw(ctx context.Context, sel Selector, q RangeQuery, fn func(*RangeSeries) error) error {
	name := SeriesName(sel.Object, q.Resource)
	if name == "" {
		return fmt.Errorf("range query: no %s series of object %s", q.Resource, sel.Object)
	}
	maxGap := gapBound(db.cfg.Resolution)
	ms, err := selectorMatchers(name, sel)
	if err != nil {
		return fmt.Errorf("range query: %w", err)
	}
	// The raw points that cover the first step may need a sample from before it, and
	// those that cover the last step one from after it.
	mint := q.Start.Add(-rangeLookback(q.Step, db.cfg.Resolution)).UnixMilli()
	if !q.NotBefore.IsZero() {
		mint = max(mint, q.NotBefore.UnixMilli())
	}
	maxt := q.At(q.Steps() - 1).Add(maxGap).UnixMilli()
	querier, err := db.querier(mint, maxt)
	if err != nil {
		return fmt.Errorf("range query: %w", err)
	}
	defer querier.Close()

	r := newRanger(q, q.Resource.Kind() == KindCounter, maxGap)
	set := querier.Select(ctx, true, &storage.SelectHints{Start: mint, End: maxt}, ms...)
	var it chunkenc.Iterator
	n := 0
	for set.Next() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("range query: %w", err)
		}
		s := set.At()
		it = s.Iterator(it)
		if err := r.run(ctx, it); err != nil {
			return fmt.Errorf("range query: %w", err)
		}
		if r.series.Summary.Count == 0 && !r.stepped {
			continue
		}
		n++
		if q.MaxSeries > 0 && n > q.MaxSeries {
			return fmt.Errorf("more than %d series: %w", q.MaxSeries, ErrTooManySeries)
		}
		r.series.ID = seriesID(s.Labels())
		if err := fn(&r.series); err != nil {
			return err
		}
	}
	if err := set.Err(); err != nil {
		return fmt.Errorf("range query: %w", err)
	}
	return nil
}

// ranger turns one series' samples into step values and a summary, reusing its buffers.
type ranger struct {
	q                    RangeQuery
	rate                 bool // a counter's: raw points are rates between samples
	maxGapMs             int64
	startMs, stepMs      int64
	lastMs               int64 // the last step's time
	minMs                int64 // the oldest sample time read (RangeQuery.NotBefore)
	series               RangeSeries
	all                  []float64 // every raw point, for the summary
	bucket               []float64 // the raw points that cover the current step
	allSum, allWeight    float64
	stepSum, stepWeight  float64
	curStep              int
	stepped              bool // a step has a value
	prevT                int64
	prevV                float64
	havePrev             bool
	quantile             float64
	isQuantile, isAvgAgg bool
	// The summary: every raw point is kept only when a percentile is wanted.
	keepAll        bool
	allMin, allMax float64
	count          int
}

func newRanger(q RangeQuery, rate bool, maxGap time.Duration) *ranger {
	r := &ranger{
		q: q, rate: rate, maxGapMs: maxGap.Milliseconds(),
		startMs: q.Start.UnixMilli(), stepMs: q.Step.Milliseconds(), lastMs: q.At(q.Steps() - 1).UnixMilli(),
		minMs:  math.MinInt64,
		series: RangeSeries{Values: make([]float64, q.Steps())},
	}
	if r.stepMs <= 0 {
		r.stepMs = 1
	}
	if !q.NotBefore.IsZero() {
		r.minMs = q.NotBefore.UnixMilli()
	}
	r.quantile, r.isQuantile = q.Agg.Quantile()
	r.isAvgAgg = q.Agg == AggAvg
	r.keepAll = slices.ContainsFunc(q.Summary, func(a Agg) bool { _, ok := a.Quantile(); return ok })
	return r
}

// stepIndex returns the index of the step whose (t-Step, t] holds tMs, on the grid
// extended beyond its ends: negative before the first step, len(Values) or more after
// the last.
func (r *ranger) stepIndex(tMs int64) int {
	d := tMs - r.startMs
	i := d / r.stepMs // truncated: the ceiling for d <= 0
	if d > 0 && d%r.stepMs != 0 {
		i++
	}
	return int(i)
}

// inSummary reports whether a raw point placed at tMs counts in the summary:
// (Start-Step, End].
func (r *ranger) inSummary(tMs int64) bool { return tMs > r.startMs-r.stepMs && tMs <= r.lastMs }

func (r *ranger) run(ctx context.Context, it chunkenc.Iterator) error {
	for i := range r.series.Values {
		r.series.Values[i] = math.NaN()
	}
	r.all, r.bucket = r.all[:0], r.bucket[:0]
	r.allSum, r.allWeight, r.stepSum, r.stepWeight = 0, 0, 0, 0
	r.allMin, r.allMax, r.count = math.Inf(1), math.Inf(-1), 0
	r.curStep, r.havePrev, r.stepped = -1, false, false
	n := 0
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat {
			continue // Hindsight writes floats only
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		t, v := it.At()
		if math.IsNaN(v) || math.IsInf(v, 0) || t < r.minMs {
			continue
		}
		prevT, prevV, had := r.prevT, r.prevV, r.havePrev
		r.prevT, r.prevV, r.havePrev = t, v, true
		if !r.rate {
			r.addGauge(prevT, prevV, had && t > prevT && t-prevT <= r.maxGapMs, t, v)
			continue
		}
		if !had || t <= prevT || t-prevT > r.maxGapMs || v < prevV {
			continue
		}
		dt := float64(t-prevT) / 1e3
		r.addInterval(prevT, t, (v-prevV)/dt, dt)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read samples: %w", err)
	}
	r.flush()
	r.series.Summary = r.summary()
	r.series.acc = summaryAcc{sum: r.allSum, weight: r.allWeight, lo: r.allMin, hi: r.allMax, count: r.count, points: r.all}
	return nil
}

// summary returns the wanted aggregations of the series' raw points.
func (r *ranger) summary() Summary {
	avg := 0.0
	if r.count > 0 {
		avg = r.allSum / r.allWeight
	}
	return summaryOf(r.q.Summary, r.count, avg, r.allMin, r.allMax, r.all)
}

// addInterval records a CPU raw point v, the rate over (fromMs, toMs] (w seconds): in
// every step the interval overlaps, weighed by the overlap, and in the summary at toMs.
func (r *ranger) addInterval(fromMs, toMs int64, v, w float64) {
	first := max(r.stepIndex(fromMs+1), 0)
	last := min(r.stepIndex(toMs), len(r.series.Values)-1)
	for i := first; i <= last; i++ {
		end := r.startMs + int64(i)*r.stepMs
		overlap := min(end, toMs) - max(end-r.stepMs, fromMs)
		r.addStep(i, v, float64(overlap)/1e3)
	}
	r.addSummary(toMs, v, w)
}

// addGauge records a memory raw point v at tMs: in its step and, when the previous
// sample (prevMs, prevV) is near enough (near), in the steps between the two that hold
// no sample, with the previous value; in the summary at tMs.
func (r *ranger) addGauge(prevMs int64, prevV float64, near bool, tMs int64, v float64) {
	i := r.stepIndex(tMs)
	if near {
		for j := max(r.stepIndex(prevMs)+1, 0); j < min(i, len(r.series.Values)); j++ {
			r.addStep(j, prevV, 1)
		}
	}
	if i >= 0 && i < len(r.series.Values) {
		r.addStep(i, v, 1)
	}
	r.addSummary(tMs, v, 1)
}

// addStep adds a raw point v that covers step i, weighing w in its average. Steps come in
// order: a later step flushes the current one.
func (r *ranger) addStep(i int, v, w float64) {
	if i != r.curStep {
		r.flush()
		r.curStep = i
	}
	r.bucket = append(r.bucket, v)
	r.stepSum += v * w
	r.stepWeight += w
}

// addSummary adds a raw point v placed at tMs to the summary, weighing w in its average.
func (r *ranger) addSummary(tMs int64, v, w float64) {
	if !r.inSummary(tMs) {
		return
	}
	if r.keepAll {
		r.all = append(r.all, v)
	}
	r.count++
	r.allSum += v * w
	r.allWeight += w
	r.allMin = min(r.allMin, v)
	r.allMax = max(r.allMax, v)
}

// flush sets the current step's value from its raw points.
func (r *ranger) flush() {
	if r.curStep < 0 || len(r.bucket) == 0 {
		r.bucket, r.stepSum, r.stepWeight = r.bucket[:0], 0, 0
		return
	}
	var v float64
	switch {
	case r.isAvgAgg:
		v = r.stepSum / r.stepWeight
	case r.q.Agg == AggCount:
		v = float64(len(r.bucket))
	case r.q.Agg == AggMin:
		v = slices.Min(r.bucket)
	case r.q.Agg == AggMax:
		v = slices.Max(r.bucket)
	case r.isQuantile:
		slices.Sort(r.bucket)
		v = quantileSorted(r.bucket, r.quantile)
	}
	r.series.Values[r.curStep] = v
	r.stepped = true
	r.bucket, r.stepSum, r.stepWeight = r.bucket[:0], 0, 0
}
