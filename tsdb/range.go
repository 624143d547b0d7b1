package tsdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Range queries: past usage on a grid of steps.
//
// A raw point is what one scrape tells: for memory (and swap) the working set of a
// sample; for CPU the rate over the interval between two consecutive samples of the
// counter, in cores, placed at the later sample. An interval over which the counter
// decreased (a restarted container) or that is longer than maxGapFactor resolutions (two
// scrapes in a row missed) gives no point: a gap is never a zero, and a reset never a
// negative rate.
//
// Step t of [Start, End] covers (t-Step, t]: its value is the query's aggregation of the
// raw points in it, NaN when it holds none. CPU's avg is time-weighted: the counter's
// increase over the time its intervals cover. The summary covers every raw point of
// (Start-Step, End], so that it does not depend on the step.

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
	// points (Count is always set). Percentiles cost a selection over every raw point
	// of the series, so ask only for what is used.
	Summary []Agg
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
	// Values has one value per step, NaN where the step holds no raw point.
	Values []float64
	// Summary aggregates every raw point of the range. Unlike Values, it is not reused.
	Summary Summary
}

// maxGapFactor is, in resolutions, the longest interval between two samples over which a
// CPU rate is computed. A scrape retried late, or one missed round, still gives a rate;
// two missed rounds in a row are a gap.
const maxGapFactor = 2.5

// Range calls fn with every series that sel picks and that has a raw point in the
// range, in label order. fn must not keep the series: its slices are reused. Range stops
// at fn's first error and returns it; it fails with ErrTooManySeries when more than
// q.MaxSeries series match, and with ErrClosed when the DB closes meanwhile.
func (db *DB) Range(ctx context.Context, sel Selector, q RangeQuery, fn func(*RangeSeries) error) error {
	if err := q.Validate(); err != nil {
		return fmt.Errorf("range query: %w", err)
	}
	if q.Agg == (Agg{}) {
		q.Agg = AggAvg
	}
	name := SeriesName(sel.Object, q.Resource)
	if name == "" {
		return fmt.Errorf("range query: no %s series of object %s", q.Resource, sel.Object)
	}
	maxGap := time.Duration(maxGapFactor * float64(db.cfg.Resolution))
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, metricNameLabel, name)}
	for _, l := range []struct{ name, value string }{
		{LabelNode, sel.Node}, {LabelNamespace, sel.Namespace}, {LabelPod, sel.Pod},
		{LabelContainer, sel.Container}, {LabelUID, sel.UID},
	} {
		if l.value != "" {
			ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, l.name, l.value))
		}
	}
	if len(sel.UIDs) > 0 {
		quoted := make([]string, len(sel.UIDs))
		for i, u := range sel.UIDs {
			quoted[i] = regexp.QuoteMeta(u)
		}
		m, err := labels.NewMatcher(labels.MatchRegexp, LabelUID, strings.Join(quoted, "|"))
		if err != nil {
			return fmt.Errorf("range query: uids: %w", err)
		}
		ms = append(ms, m)
	}
	// The raw points of the first step may need a sample from before it.
	mint := q.Start.Add(-q.Step - maxGap).UnixMilli()
	maxt := q.At(q.Steps() - 1).UnixMilli()
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
		if r.series.Summary.Count == 0 {
			continue
		}
		n++
		if q.MaxSeries > 0 && n > q.MaxSeries {
			return fmt.Errorf("more than %d series: %w", q.MaxSeries, ErrTooManySeries)
		}
		lset := s.Labels()
		r.series.ID = SeriesID{
			Node: lset.Get(LabelNode), Namespace: lset.Get(LabelNamespace), Pod: lset.Get(LabelPod),
			Container: lset.Get(LabelContainer), UID: lset.Get(LabelUID),
		}
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
	series               RangeSeries
	all                  []float64 // every raw point, for the summary
	bucket               []float64 // the raw points of the current step
	allSum, allWeight    float64
	stepSum, stepWeight  float64
	curStep              int
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
		series: RangeSeries{Values: make([]float64, q.Steps())},
	}
	if r.stepMs <= 0 {
		r.stepMs = 1
	}
	r.quantile, r.isQuantile = q.Agg.Quantile()
	r.isAvgAgg = q.Agg == AggAvg
	r.keepAll = slices.ContainsFunc(q.Summary, func(a Agg) bool { _, ok := a.Quantile(); return ok })
	return r
}

// stepOf returns the step whose (t-Step, t] holds tMs, or -1 when none does.
func (r *ranger) stepOf(tMs int64) int {
	if tMs <= r.startMs-r.stepMs || tMs > r.lastMs {
		return -1
	}
	d := tMs - r.startMs
	if d <= 0 {
		return 0
	}
	return int((d + r.stepMs - 1) / r.stepMs)
}

func (r *ranger) run(ctx context.Context, it chunkenc.Iterator) error {
	for i := range r.series.Values {
		r.series.Values[i] = math.NaN()
	}
	r.all, r.bucket = r.all[:0], r.bucket[:0]
	r.allSum, r.allWeight, r.stepSum, r.stepWeight = 0, 0, 0, 0
	r.allMin, r.allMax, r.count = math.Inf(1), math.Inf(-1), 0
	r.curStep, r.havePrev = -1, false
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
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		if !r.rate {
			r.add(t, v, 1)
			continue
		}
		prevT, prevV, had := r.prevT, r.prevV, r.havePrev
		r.prevT, r.prevV, r.havePrev = t, v, true
		if !had || t <= prevT || t-prevT > r.maxGapMs || v < prevV {
			continue
		}
		dt := float64(t-prevT) / 1e3
		r.add(t, (v-prevV)/dt, dt)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read samples: %w", err)
	}
	r.flush()
	r.series.Summary = r.summary()
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

// add records a raw point v at tMs, weighing w in averages (its interval for CPU).
func (r *ranger) add(tMs int64, v, w float64) {
	i := r.stepOf(tMs)
	if i < 0 {
		return
	}
	if i != r.curStep {
		r.flush()
		r.curStep = i
	}
	r.bucket = append(r.bucket, v)
	r.stepSum += v * w
	r.stepWeight += w
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
	r.bucket, r.stepSum, r.stepWeight = r.bucket[:0], 0, 0
}
