package tsdb

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// PromQL over the tiers: the raw series' names served from rollups, as Thanos' query API
// does with its max_source_resolution parameter.
//
// DownsampledQueryable serves a selector of a CPU or memory series by its kubelet name
// (container_cpu_usage_seconds_total, pod_memory_working_set_bytes, ...) from the coarsest
// tier that the query allows, where that tier holds windows, from finer allowed tiers where
// it does not, and from the raw samples where none does (the newest hours, which no batch
// has rolled up yet). Any other selector reads what Queryable reads.
//
// Which tiers a selector may read: those whose resolution is at most the query's maximum
// (max_source_resolution; with auto, a fifth of the query's step, so that a step still
// holds five windows, as the history API's planner has it, and nothing for an instant
// query's instant selectors). A range selector also needs five windows in its range: rate
// over [1h] reads the 5m tier, not the 1h one, and rate over [5m] the raw samples.
//
// A tier's window (s, s+R] becomes one point stamped s+R: the end of what it summarises,
// so that no point tells of samples after its time. A window is read only when it lies
// wholly in the selector's range, as the TSDB trims raw samples to it: a window across the
// range's start (the tenancy's start of a namespace's incarnation, say) tells of samples
// before it, and is left out.
//   - Memory (a gauge): the window's avg in bytes, or its max when the selector is inside
//     max_over_time or max, its min inside min_over_time or min (Prometheus' hints name
//     the innermost function or aggregation around the selector). So
//     max_over_time(container_memory_working_set_bytes[1d]) is the raw maximum (rounded to
//     a KiB) and avg_over_time is the mean of the window averages.
//   - CPU (a counter): the counter is rebuilt from the windows' avg × covered time, which
//     is the core-seconds the intervals within the window used by Range's rules (range.go:
//     an interval longer than the gap bound or across a counter reset counts nothing). Its
//     value starts at rebuiltBase at the series' first point from a tier (or at its first
//     raw sample when the series begins in the raw part) and then only grows, across the junctions
//     between tiers and raw samples too: an interval across a junction is split at it, its
//     part before the junction counted at a point stamped there. rate, increase and irate
//     over it are therefore the history API's avg of the same span; the counter's absolute
//     value is not kept. A series that no tier serves is the raw series, untouched.
type downsampledQueryable struct {
	db   *DB
	max  time.Duration
	auto bool
}

// DownsampledQueryable returns the Queryable of a PromQL query that may read tiers whose
// resolution is at most maxRes, or, with auto, at most a fifth of the query's step (see
// above). maxRes 0 without auto reads what Queryable reads.
func (db *DB) DownsampledQueryable(maxRes time.Duration, auto bool) storage.Queryable {
	if maxRes <= 0 && !auto {
		return db.Queryable()
	}
	return downsampledQueryable{db: db, max: maxRes, auto: auto}
}

// Resolutions returns the resolutions of the tiers that are on, finest first.
func (db *DB) Resolutions() []time.Duration {
	var out []time.Duration
	for t := range NumTiers {
		if db.tiers[t] != nil {
			out = append(out, t.Resolution())
		}
	}
	return out
}

// viewPad is how much earlier than a query's mint the view's querier reads: a tier point
// stamped s+R is the window stamped s, and a junction's interval starts up to a gap before
// it.
func (db *DB) viewPad() int64 {
	return (Tier(NumTiers-1).Resolution() + gapBound(db.cfg.Resolution)).Milliseconds()
}

func (q downsampledQueryable) Querier(mint, maxt int64) (_ storage.Querier, err error) {
	pad := q.db.viewPad()
	from := max(mint, math.MinInt64+pad) - pad
	dq := &downsampledQuerier{q: q, mint: mint}
	var all []storage.Querier
	defer func() {
		if err != nil {
			for _, qr := range all {
				_ = qr.Close()
			}
		}
	}()
	// The view reads the raw TSDB and each tier through a querier of its own (a merged one
	// would chain every sample through the merge); other selectors read them merged, as
	// Queryable's do.
	if dq.raw, err = q.db.querier(from, maxt); err != nil {
		return nil, err
	}
	all = append(all, dq.raw)
	for t, s := range q.db.tiers {
		if s == nil {
			continue
		}
		if dq.tiers[t], err = q.db.tierQuerier(s, from, maxt); err != nil {
			return nil, fmt.Errorf("tier %s: %w", s.tier, err)
		}
		all = append(all, dq.tiers[t])
	}
	dq.Querier = storage.NewMergeQuerier(all, nil, storage.ChainedSeriesMerge)
	return dq, nil
}

type downsampledQuerier struct {
	storage.Querier // raw and tiers merged; Close closes them all
	raw             storage.Querier
	tiers           [NumTiers]storage.Querier
	q               downsampledQueryable
	mint            int64
}

// viewSegment is a span of point times (lo, hi] served from one source.
type viewSegment struct {
	lo, hi int64
	tier   Tier
	raw    bool
}

// maxRes returns the coarsest resolution a selector with these hints may read.
func (q *downsampledQuerier) maxRes(h *storage.SelectHints) time.Duration {
	m := q.q.max
	if q.q.auto {
		switch {
		case h.Step > 0:
			m = time.Duration(h.Step) * time.Millisecond / 5
		case h.Range > 0:
			m = time.Duration(math.MaxInt64)
		default:
			m = 0
		}
	}
	if h.Range > 0 {
		m = min(m, time.Duration(h.Range)*time.Millisecond/5)
	}
	return m
}

// segments returns the sources of point times (start-1, end] for tiers of resolution at
// most maxRes: the coarsest that holds windows there, else raw; in time order.
func (db *DB) segments(start, end int64, maxRes time.Duration) []viewSegment {
	segs := []viewSegment{{lo: start - 1, hi: end, raw: true}}
	for t := range NumTiers { // finest first: a coarser tier overlays a finer one
		if t.Resolution() > maxRes {
			break
		}
		cmint, cmaxt, ok := db.TierCoverage(t)
		if !ok {
			continue
		}
		segs = overlay(segs, viewSegment{lo: cmint, hi: cmaxt, tier: t})
	}
	return segs
}

// overlay puts s over segs where they meet, keeping segs' order and bounds.
func overlay(segs []viewSegment, s viewSegment) []viewSegment {
	var out []viewSegment
	for _, g := range segs {
		if g.hi <= s.lo || g.lo >= s.hi {
			out = append(out, g)
			continue
		}
		if g.lo < s.lo {
			out = append(out, viewSegment{lo: g.lo, hi: s.lo, tier: g.tier, raw: g.raw})
		}
		out = append(out, viewSegment{lo: max(g.lo, s.lo), hi: min(g.hi, s.hi), tier: s.tier})
		if g.hi > s.hi {
			out = append(out, viewSegment{lo: s.hi, hi: g.hi, tier: g.tier, raw: g.raw})
		}
	}
	return out
}

// viewField returns the rollup field that a memory selector inside function fn reads.
func viewField(fn string) RollupField {
	switch fn {
	case "max_over_time", "max":
		return FieldMemMax
	case "min_over_time", "min":
		return FieldMemMin
	}
	return FieldMemAvg
}

func (q *downsampledQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	def, others, ok := viewSelector(ms)
	if !ok || hints == nil {
		return q.Querier.Select(ctx, sortSeries, hints, ms...)
	}
	// Far from the int64 bounds, so that a segment's bounds ± a gap or a window do not wrap.
	start, end := max(hints.Start, q.mint, math.MinInt64/2), min(hints.End, math.MaxInt64/2)
	segs := q.q.db.segments(start, end, q.maxRes(hints))
	if len(segs) == 1 && segs[0].raw {
		return q.raw.Select(ctx, sortSeries, hints, ms...)
	}
	set, err := q.selectView(ctx, def, hints, segs, others)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	return set
}

// viewSelector returns the Schema row a selector names with an equality matcher, when the
// tiers summarise it, and the selector's other matchers.
func viewSelector(ms []*labels.Matcher) (SeriesDef, []*labels.Matcher, bool) {
	var def SeriesDef
	found := false
	for _, m := range ms {
		if m.Name == metricNameLabel && m.Type == labels.MatchEqual {
			d, ok := LookupSeries(m.Value)
			if !ok || (d.Resource != ResourceCPU && d.Resource != ResourceMemory) || found && d != def {
				return SeriesDef{}, nil, false
			}
			def, found = d, true
		}
	}
	if !found {
		return SeriesDef{}, nil, false
	}
	var others []*labels.Matcher
	for _, m := range ms {
		if m.Name != metricNameLabel {
			others = append(others, m)
		} else if !m.Matches(def.Name) {
			return SeriesDef{}, nil, false
		}
	}
	return def, others, true
}

// viewPart is one segment's series of one object: raw, or the tier fields it reads.
type viewPart struct {
	seg    viewSegment
	series [2]storage.Series // raw: [0]; CPU: avg, covered; memory: the field
}

// viewSeries is one object's series across the segments.
type viewSeries struct {
	lset  labels.Labels // with the raw name
	key   string        // the labels without the name
	parts []viewPart
	def   SeriesDef
	gap   int64
	tiers bool // some part is from a tier
}

func (q *downsampledQuerier) selectView(ctx context.Context, def SeriesDef, hints *storage.SelectHints, segs []viewSegment, others []*labels.Matcher) (storage.SeriesSet, error) {
	byKey := map[string]*viewSeries{}
	gap := gapBound(q.q.db.cfg.Resolution).Milliseconds()
	field := viewField(hints.Func)
	get := func(lset labels.Labels) *viewSeries {
		key := labels.NewBuilder(lset).Del(metricNameLabel).Labels()
		k := key.String()
		s := byKey[k]
		if s == nil {
			b := labels.NewBuilder(key)
			b.Set(metricNameLabel, def.Name)
			s = &viewSeries{lset: b.Labels(), key: k, def: def, gap: gap}
			byKey[k] = s
		}
		return s
	}
	read := func(from storage.Querier, name string, start, end int64) ([]storage.Series, error) {
		h := *hints
		h.Start, h.End = start, end
		sel := append([]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, metricNameLabel, name)}, others...)
		set := from.Select(ctx, true, &h, sel...)
		var out []storage.Series
		for set.Next() {
			out = append(out, set.At())
		}
		return out, set.Err()
	}
	for i, seg := range segs {
		if seg.raw {
			// A CPU interval across a junction with a tier needs its other sample.
			from, to := seg.lo+1, seg.hi
			if def.Resource == ResourceCPU && i > 0 {
				from = seg.lo - gap
			}
			if def.Resource == ResourceCPU && i < len(segs)-1 {
				to = seg.hi + gap
			}
			series, err := read(q.raw, def.Name, from, to)
			if err != nil {
				return nil, err
			}
			for _, s := range series {
				v := get(s.Labels())
				v.parts = append(v.parts, viewPart{seg: seg, series: [2]storage.Series{s}})
			}
			continue
		}
		res := seg.tier.Resolution().Milliseconds()
		// The windows (s, s+R] within (lo, hi]: stamped [lo, hi-R].
		from, to := seg.lo, seg.hi-res
		fields := []RollupField{field}
		if def.Resource == ResourceCPU {
			fields = []RollupField{FieldCPUAvg, FieldCPUCovered}
		}
		parts := map[string]*viewPart{}
		for j, f := range fields {
			series, err := read(q.tiers[seg.tier], RollupSeriesName(def.Object, seg.tier, f), from, to)
			if err != nil {
				return nil, err
			}
			for _, s := range series {
				v := get(s.Labels())
				p := parts[v.key]
				if p == nil {
					v.parts = append(v.parts, viewPart{seg: seg})
					p = &v.parts[len(v.parts)-1]
					parts[v.key] = p
				}
				p.series[j] = s
			}
		}
		for _, v := range byKey {
			if p := parts[v.key]; p != nil {
				v.tiers = true
				if def.Resource == ResourceCPU && (p.series[0] == nil || p.series[1] == nil) {
					return nil, fmt.Errorf("tier %s: %s has only one of avg and covered", seg.tier, v.lset)
				}
			}
		}
	}
	out := make([]*viewSeries, 0, len(byKey))
	for _, v := range byKey {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *viewSeries) int { return labels.Compare(a.lset, b.lset) })
	return &viewSet{series: out, i: -1, info: viewInfo(def, field, segs)}, nil
}

// viewInfo tells, as a PromQL info annotation (the API's "infos", which Grafana shows on the
// panel), which source served which span of a selector: "PromQL info: container_cpu_usage_
// seconds_total read from the 1h tier until 2026-11-28T00:00:00Z, the 5m tier until
// 2026-11-30T06:00:00Z, then from raw samples".
func viewInfo(def SeriesDef, field RollupField, segs []viewSegment) annotations.Annotations {
	var b strings.Builder
	b.WriteString(def.Name)
	if def.Resource == ResourceMemory {
		b.WriteString(" (the windows' " + rollupFieldDefs[field].op + ")")
	}
	b.WriteString(" read from")
	for i, seg := range segs {
		if i > 0 {
			b.WriteString(",")
		}
		if i > 0 && i == len(segs)-1 {
			b.WriteString(" then from")
		}
		if seg.raw {
			b.WriteString(" raw samples")
		} else {
			b.WriteString(" the " + seg.tier.String() + " tier")
		}
		if i < len(segs)-1 {
			b.WriteString(" until " + time.UnixMilli(seg.hi).UTC().Format(time.RFC3339))
		}
	}
	var a annotations.Annotations
	a.Add(fmt.Errorf("%w: %s", annotations.PromQLInfo, b.String()))
	return a
}

type viewSet struct {
	series []*viewSeries
	i      int
	info   annotations.Annotations
}

func (s *viewSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *viewSet) At() storage.Series                { return s.series[s.i] }
func (s *viewSet) Err() error                        { return nil }
func (s *viewSet) Warnings() annotations.Annotations { return s.info }

func (v *viewSeries) Labels() labels.Labels { return v.lset }

// Iterator computes the series' points, every part's, and iterates them: a series holds
// one point per window of its tier parts and the raw samples of its raw parts.
func (v *viewSeries) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	b := viewBuilder{v: v}
	for i := range v.parts {
		if err := b.fill(i); err != nil {
			return errIterator{Iterator: chunkenc.NewNopIterator(), err: err}
		}
	}
	return storage.NewListSeriesIterator(viewPoints(b.points))
}

// errIterator is an iterator with no samples that ends with err.
type errIterator struct {
	chunkenc.Iterator
	err error
}

func (it errIterator) Err() error { return it.err }

// viewPoints are a series' points as storage.Samples.
type viewPoints []floatSample

func (p viewPoints) Get(i int) chunks.Sample { return &p[i] } // a pointer: no allocation
func (p viewPoints) Len() int                { return len(p) }

func (s *floatSample) T() int64                      { return s.t }
func (s *floatSample) ST() int64                     { return 0 }
func (s *floatSample) F() float64                    { return s.f }
func (s *floatSample) H() *histogram.Histogram       { return nil }
func (s *floatSample) FH() *histogram.FloatHistogram { return nil }
func (s *floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s *floatSample) Copy() chunks.Sample           { c := *s; return &c }

// rebuiltBase is where a rebuilt counter that begins in a tier starts: far enough from 0
// that PromQL never limits a rate's extrapolation at a zero the counter never had (a
// rebuilt counter has no start), and with a float64 step below 1e-6 s at a year's usage.
const rebuiltBase = 1e9

// viewBuilder computes a viewSeries' points part by part.
type viewBuilder struct {
	v       *viewSeries
	points  []floatSample
	counter float64 // the rebuilt counter (CPU with a tier part)
	started bool
	it      [2]chunkenc.Iterator
}

// fill computes the points of part i.
func (it *viewBuilder) fill(i int) error {
	v, p := it.v, &it.v.parts[i]
	if p.seg.raw {
		return it.fillRaw(i)
	}
	res := p.seg.tier.Resolution().Milliseconds()
	it.it[0] = p.series[0].Iterator(it.it[0])
	if v.def.Resource == ResourceMemory {
		for it.it[0].Next() == chunkenc.ValFloat {
			t, f := it.it[0].At()
			if t >= p.seg.lo && t+res <= p.seg.hi {
				it.points = append(it.points, floatSample{t: t + res, f: f * 1024})
			}
		}
		return it.it[0].Err()
	}
	// CPU: avg (millicores) × covered (ms) is the window's core-seconds × 1e6.
	it.it[1] = p.series[1].Iterator(it.it[1])
	if !it.started {
		it.counter, it.started = rebuiltBase, true
	}
	for it.it[0].Next() == chunkenc.ValFloat {
		if it.it[1].Next() != chunkenc.ValFloat {
			if err := it.it[1].Err(); err != nil {
				return err
			}
			return fmt.Errorf("tier %s: %s: more avg windows than covered ones", p.seg.tier, v.lset)
		}
		t, avg := it.it[0].At()
		tc, covered := it.it[1].At()
		if t != tc {
			return fmt.Errorf("tier %s: %s: avg at %d, covered at %d", p.seg.tier, v.lset, t, tc)
		}
		if t < p.seg.lo || t+res > p.seg.hi {
			continue
		}
		it.counter += avg * covered / 1e6
		it.points = append(it.points, floatSample{t: t + res, f: it.counter})
	}
	if err := it.it[0].Err(); err != nil {
		return err
	}
	return it.it[1].Err()
}

// fillRaw computes the points of raw part i: its samples in (lo, hi], the counter rebuilt
// when the series has a tier part.
func (it *viewBuilder) fillRaw(i int) error {
	v, p := it.v, &it.v.parts[i]
	lo, hi := p.seg.lo, p.seg.hi
	rebuild := v.def.Resource == ResourceCPU && v.tiers
	it.it[0] = p.series[0].Iterator(it.it[0])
	var pt int64
	var pv float64
	had := false
	for it.it[0].Next() == chunkenc.ValFloat {
		t, f := it.it[0].At()
		if !rebuild {
			if t > lo && t <= hi {
				it.points = append(it.points, floatSample{t: t, f: f})
			}
			continue
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		if had && it.started && t > pt && t-pt <= v.gap && f >= pv {
			// The part of the interval (pt, t] inside (lo, hi]: an interval across a
			// junction with a tier is split at it, the tier holding the rest.
			if overlap := min(t, hi) - max(pt, lo); overlap > 0 {
				it.counter += (f - pv) * float64(overlap) / float64(t-pt)
			}
		}
		pt, pv, had = t, f, true
		switch {
		case t <= lo:
		case t <= hi:
			if !it.started {
				it.counter, it.started = f, true
			}
			it.points = append(it.points, floatSample{t: t, f: it.counter})
		default:
			// The interval across hi: its part before hi is counted at a point at hi.
			if n := len(it.points); it.started && (n == 0 || it.points[n-1].t < hi) {
				it.points = append(it.points, floatSample{t: hi, f: it.counter})
			}
			return it.it[0].Err()
		}
	}
	return it.it[0].Err()
}
