package tsdb

import (
	"cmp"
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

// The planner: which source serves each step of a range query.
//
// A step is served from the coarsest tier whose windows are at most a fifth of the step
// (Thanos' rule: a step still summarises five windows or more), whose windows tile the step
// (the step is a whole number of windows and the grid is aligned to them, as the history
// API's grid is to its step), and which holds every window of the step; else from the next
// finer tier that does; else from the raw samples. Consecutive steps with one source form a
// part. RangeQuery.Source forces one source for every step.
//
// From a tier, a step's avg weighs each window's avg by its covered milliseconds (CPU) or
// its sample count (memory): the raw avg of the step, rounded to a millicore or a KiB per
// window. min and max are the windows' (exact, rounded); count sums the windows' counts
// (for CPU, the intervals that end in the step, where the raw step counts every interval
// that overlaps it); a percentile is that of the windows' averages, not of the raw points.
// The summary is computed likewise over the windows that end in its span: its avg, min,
// max and count are those of the raw points, its percentiles those of the windows'.

// Source is where a range query reads its points.
type Source uint8

const (
	// SourceAuto lets the planner choose, step by step (the zero value).
	SourceAuto Source = iota
	// SourceRaw is the raw samples.
	SourceRaw
	// SourceTier5m and SourceTier1h are the downsampled tiers.
	SourceTier5m
	SourceTier1h
)

// sourceNames are the sources' names in the read APIs: "auto", "raw" or a tier's name.
var sourceNames = [...]string{SourceAuto: "auto", SourceRaw: "raw", SourceTier5m: Tier5m.String(), SourceTier1h: Tier1h.String()}

// String returns the source's name.
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return fmt.Sprintf("Source(%d)", uint8(s))
}

// ParseSource returns the source named s.
func ParseSource(s string) (Source, bool) {
	i := slices.Index(sourceNames[:], s)
	return Source(max(i, 0)), i >= 0
}

// Tier returns the tier of a tier source.
func (s Source) Tier() (Tier, bool) {
	if s < SourceTier5m || s > SourceTier1h {
		return 0, false
	}
	return Tier(s - SourceTier5m), true
}

func tierSource(t Tier) Source { return SourceTier5m + Source(t) }

// RangePart is a run of consecutive steps of a query served from one source.
type RangePart struct {
	// First and Last are the indexes of the part's first and last steps.
	First, Last int
	Source      Source
}

// validSource reports a problem with q's forced source.
func (q RangeQuery) validSource() error {
	t, ok := q.Source.Tier()
	if !ok {
		if q.Source > SourceTier1h {
			return fmt.Errorf("unknown source %s", q.Source)
		}
		return nil
	}
	res := t.Resolution()
	if q.Step%res != 0 || q.Start.UnixMilli()%res.Milliseconds() != 0 {
		return fmt.Errorf("the %s tier serves steps that are whole multiples of %s on a grid aligned to them; got step %s from %s",
			t, res, q.Step, q.Start.UTC().Format(time.RFC3339))
	}
	return nil
}

// validParts reports a problem with q's given plan: its parts must tile the grid in order,
// and a tier part's steps must be whole windows of the tier on an aligned grid.
func (q RangeQuery) validParts() error {
	if q.Parts == nil {
		return nil
	}
	next := 0
	for _, p := range q.Parts {
		if p.First != next || p.Last < p.First || p.Source == SourceAuto {
			return fmt.Errorf("plan %v does not tile the grid of %d steps", q.Parts, q.Steps())
		}
		pq := q.part(p)
		pq.Source = p.Source
		if err := pq.validSource(); err != nil {
			return err
		}
		next = p.Last + 1
	}
	if next != q.Steps() {
		return fmt.Errorf("plan %v does not tile the grid of %d steps", q.Parts, q.Steps())
	}
	return nil
}

// Plan returns the parts of q's grid and the source of each (see above): one part for a
// forced source, as many as the sources change for SourceAuto.
func (db *DB) Plan(q RangeQuery) []RangePart {
	n := q.Steps()
	if n == 0 {
		return nil
	}
	if q.Source != SourceAuto {
		return []RangePart{{First: 0, Last: n - 1, Source: q.Source}}
	}
	type candidate struct {
		src        Source
		mint, maxt int64
	}
	var cands []candidate // coarsest first
	for t := NumTiers - 1; t < NumTiers; t-- {
		res := t.Resolution()
		if 5*res > q.Step || q.Step%res != 0 || q.Start.UnixMilli()%res.Milliseconds() != 0 {
			continue
		}
		if mint, maxt, ok := db.TierCoverage(t); ok {
			cands = append(cands, candidate{tierSource(t), mint, maxt})
		}
	}
	notBefore := int64(math.MinInt64)
	if !q.NotBefore.IsZero() {
		// A tier's CPU windows hold intervals that began up to a gap before them.
		notBefore = q.NotBefore.Add(gapBound(db.cfg.Resolution)).UnixMilli()
	}
	var parts []RangePart
	for i := range n {
		t, step := q.At(i).UnixMilli(), q.Step.Milliseconds()
		src := SourceRaw
		for _, c := range cands {
			if c.mint <= t-step && t <= c.maxt && t-step >= notBefore {
				src = c.src
				break
			}
		}
		if len(parts) > 0 && parts[len(parts)-1].Source == src {
			parts[len(parts)-1].Last = i
			continue
		}
		parts = append(parts, RangePart{First: i, Last: i, Source: src})
	}
	return parts
}

// part returns the query of part p's steps.
func (q RangeQuery) part(p RangePart) RangeQuery {
	pq := q
	pq.Start, pq.End = q.At(p.First), q.At(p.Last)
	return pq
}

// rangeParts runs a plan of several parts, or of one tier part: it gathers each series'
// steps and summary points from every part, then calls fn with them in label order.
func (db *DB) rangeParts(ctx context.Context, sel Selector, q RangeQuery, parts []RangePart, fn func(*RangeSeries) error) error {
	type merged struct {
		series RangeSeries
		acc    summaryAcc
	}
	all := map[SeriesID]*merged{}
	get := func(id SeriesID) *merged {
		m := all[id]
		if m == nil {
			m = &merged{series: RangeSeries{ID: id, Values: make([]float64, q.Steps())}, acc: newSummaryAcc()}
			for i := range m.series.Values {
				m.series.Values[i] = math.NaN()
			}
			all[id] = m
		}
		return m
	}
	for _, p := range parts {
		pq := q.part(p)
		collect := func(rs *RangeSeries) error {
			m := get(rs.ID)
			copy(m.series.Values[p.First:p.Last+1], rs.Values)
			m.acc.merge(&rs.acc)
			if q.MaxSeries > 0 && len(all) > q.MaxSeries {
				return fmt.Errorf("more than %d series: %w", q.MaxSeries, ErrTooManySeries)
			}
			return nil
		}
		var err error
		if t, ok := p.Source.Tier(); ok {
			err = db.rangeTier(ctx, sel, pq, t, collect)
		} else {
			err = db.rangeRaw(ctx, sel, pq, collect)
		}
		if err != nil {
			return err
		}
	}
	ids := make([]SeriesID, 0, len(all))
	for id := range all {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, compareIDs)
	for _, id := range ids {
		m := all[id]
		m.series.Summary = m.acc.summary(q.Summary)
		if err := fn(&m.series); err != nil {
			return err
		}
	}
	return nil
}

// summaryAcc accumulates the points of a summary: their weighted sum, count, extremes and,
// for percentiles, the points themselves.
type summaryAcc struct {
	sum, weight float64
	lo, hi      float64
	count       int
	points      []float64
}

func newSummaryAcc() summaryAcc { return summaryAcc{lo: math.Inf(1), hi: math.Inf(-1)} }

func (a *summaryAcc) merge(b *summaryAcc) {
	a.sum += b.sum
	a.weight += b.weight
	a.lo, a.hi = min(a.lo, b.lo), max(a.hi, b.hi)
	a.count += b.count
	a.points = append(a.points, b.points...)
}

func (a *summaryAcc) summary(aggs []Agg) Summary {
	avg := 0.0
	if a.weight > 0 {
		avg = a.sum / a.weight
	}
	if a.count > 0 && len(a.points) == 0 && slices.ContainsFunc(aggs, func(g Agg) bool { _, ok := g.Quantile(); return ok }) {
		// No point to take a percentile of: cannot happen, as a window or raw point that
		// counts is also a point; but never index an empty slice.
		a.points = append(a.points, avg)
	}
	return summaryOf(aggs, a.count, avg, a.lo, a.hi, a.points)
}

// tierRoles names the fields of a resource that play each part in a range query, and the
// units: a value times unit is in the resource's unit, a weight times weightUnit in the
// raw points' (seconds for CPU, samples for memory).
type tierRoles struct {
	weight, count, avg, min, max RollupField
	unit, weightUnit             float64
}

var tierRolesOf = [NumResources]*tierRoles{
	ResourceCPU:    {FieldCPUCovered, FieldCPUCount, FieldCPUAvg, FieldCPUMin, FieldCPUMax, 1e-3, 1e-3},
	ResourceMemory: {FieldMemCount, FieldMemCount, FieldMemAvg, FieldMemMin, FieldMemMax, 1024, 1},
}

// fields returns the fields q needs, the average first (every window with a value has
// one): the weight for an average, min and max when asked for, the count for agg=count or
// a summary (whose Count is always set). A percentile reads the averages.
func (r *tierRoles) fields(q RangeQuery) []RollupField {
	fs := []RollupField{r.avg}
	add := func(f RollupField) {
		if !slices.Contains(fs, f) {
			fs = append(fs, f)
		}
	}
	if len(q.Summary) > 0 || q.Agg == AggCount {
		add(r.count)
	}
	for _, a := range append([]Agg{q.Agg}, q.Summary...) {
		switch a {
		case AggAvg, Agg{}:
			add(r.weight)
		case AggMin:
			add(r.min)
		case AggMax:
			add(r.max)
		}
	}
	return fs
}

// errTierOutOfStep is rangeTier's error when the fields of one object's windows do not
// line up (every field of a window is written together, so only damage does that).
var errTierOutOfStep = errors.New("a tier's series of one object do not hold the same windows")

// rangeTier computes q's steps and summary points from tier t's windows, one series per
// object that sel picks and that has a window in the range. It reads the fields q needs
// in step, window by window: they hold the same windows.
func (db *DB) rangeTier(ctx context.Context, sel Selector, q RangeQuery, t Tier, fn func(*RangeSeries) error) error {
	roles := tierRolesOf[q.Resource]
	if roles == nil {
		return fmt.Errorf("range query: the %s tier keeps no %s", t, q.Resource)
	}
	s := db.tiers[t]
	if s == nil {
		return fmt.Errorf("range query: the %s tier is off", t)
	}
	fields := roles.fields(q)
	res, step := t.Resolution().Milliseconds(), q.Step.Milliseconds()
	// The windows of the steps: their starts from Start-Step to End-res.
	first, last := q.Start.UnixMilli()-step, q.At(q.Steps()-1).UnixMilli()-res
	querier, err := db.tierQuerier(s, first, last)
	if err != nil {
		return fmt.Errorf("range query: %w", err)
	}
	defer querier.Close()

	sets := make([]storage.SeriesSet, len(fields))
	for i, f := range fields {
		ms, err := selectorMatchers(RollupSeriesName(sel.Object, t, f), sel)
		if err != nil {
			return fmt.Errorf("range query: %w", err)
		}
		sets[i] = querier.Select(ctx, true, &storage.SelectHints{Start: first, End: last}, ms...)
	}
	j := newJoin(sets)
	ts := newTierStepper(q, roles, fields, first, last, res)
	its := make([]chunkenc.Iterator, len(fields))
	for {
		id, heads, ok := j.next()
		if !ok {
			break
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("range query: %w", err)
		}
		if heads[0] == nil {
			continue // no average: no window (a lone field is damage, and ignored)
		}
		for i, h := range heads {
			if h == nil {
				return fmt.Errorf("range query: %v: %s: %w", id, RollupSeriesName(sel.Object, t, fields[i]), errTierOutOfStep)
			}
			its[i] = h.Iterator(its[i])
		}
		found, err := ts.run(its)
		if err != nil {
			return fmt.Errorf("range query: %v: %w", id, err)
		}
		if !found {
			continue
		}
		ts.rs.ID = id
		if err := fn(&ts.rs); err != nil {
			return err
		}
	}
	if err := j.err(); err != nil {
		return fmt.Errorf("range query: %w", err)
	}
	return nil
}

// tierStepper turns one object's windows into step values and summary points, reusing its
// buffers.
type tierStepper struct {
	q                         RangeQuery
	roles                     *tierRoles
	first, last               int64 // the windows' starts read, ms
	startMs, stepMs, lastStep int64
	res                       int64
	// at maps a RollupField to its iterator's index in run's its (-1: not read).
	at         [NumRollupFields]int
	quantile   float64
	isQuantile bool
	keepPoints bool // a percentile of the summary is asked for
	vals       []float64
	rs         RangeSeries
	cur        summaryAcc // the current step's
	curStep    int
	curN       int
}

func newTierStepper(q RangeQuery, roles *tierRoles, fields []RollupField, first, last, res int64) *tierStepper {
	t := &tierStepper{
		q: q, roles: roles, first: first, last: last, res: res,
		startMs: q.Start.UnixMilli(), stepMs: q.Step.Milliseconds(), lastStep: q.At(q.Steps() - 1).UnixMilli(),
		vals: make([]float64, len(fields)),
		rs:   RangeSeries{Values: make([]float64, q.Steps())},
	}
	for f := range t.at {
		t.at[f] = slices.Index(fields, RollupField(f))
	}
	t.quantile, t.isQuantile = q.Agg.Quantile()
	t.keepPoints = slices.ContainsFunc(q.Summary, func(a Agg) bool { _, ok := a.Quantile(); return ok })
	return t
}

// get returns the value of field f in the current window, def when f is not read.
func (t *tierStepper) get(f RollupField, def float64) float64 {
	if i := t.at[f]; i >= 0 {
		return t.vals[i]
	}
	return def
}

// run reads one object's windows, every field in step; false when no window is in range.
func (t *tierStepper) run(its []chunkenc.Iterator) (bool, error) {
	for i := range t.rs.Values {
		t.rs.Values[i] = math.NaN()
	}
	acc := newSummaryAcc()
	acc.points = t.rs.acc.points[:0]
	t.curStep, t.curN = -1, 0
	found := false
	for {
		var ts int64
		for i, it := range its {
			vt := it.Next()
			if vt == chunkenc.ValNone {
				if err := it.Err(); err != nil {
					return false, err
				}
				if i != 0 {
					return false, errTierOutOfStep
				}
				t.flush()
				t.rs.acc = acc
				t.rs.Summary = acc.summary(t.q.Summary)
				return found, nil
			}
			wt, v := it.At()
			if i == 0 {
				ts = wt
			} else if wt != ts || vt != chunkenc.ValFloat {
				return false, errTierOutOfStep
			}
			t.vals[i] = v
		}
		if ts < t.first || ts > t.last || (ts-t.first)%t.res != 0 || math.IsNaN(t.vals[0]) {
			continue
		}
		found = true
		t.add(ts, &acc)
	}
}

// add adds the current window (stamped ts) to its step and, when it ends in the summary's
// span, to acc.
func (t *tierStepper) add(ts int64, acc *summaryAcc) {
	r := t.roles
	avg := t.vals[0]
	v := avg * r.unit
	lo, hi := t.get(r.min, avg)*r.unit, t.get(r.max, avg)*r.unit
	w := t.get(r.weight, 1) * r.weightUnit
	c := int(t.get(r.count, 0))
	end := ts + t.res
	// The step whose (t-Step, t] holds the window's end; the grid is aligned, so it holds
	// the whole window.
	d := end - t.startMs
	si := int(d / t.stepMs) // truncated: the ceiling for d <= 0
	if d > 0 && d%t.stepMs != 0 {
		si++
	}
	if si >= 0 && si < len(t.rs.Values) {
		if si != t.curStep {
			t.flush()
			points := t.cur.points[:0]
			t.cur, t.curStep, t.curN = newSummaryAcc(), si, 0
			t.cur.points = points
		}
		t.curN++
		t.cur.sum += v * w
		t.cur.weight += w
		t.cur.lo, t.cur.hi = min(t.cur.lo, lo), max(t.cur.hi, hi)
		t.cur.count += c
		if t.isQuantile {
			t.cur.points = append(t.cur.points, v)
		}
	}
	if end > t.startMs-t.stepMs && end <= t.lastStep {
		acc.sum += v * w
		acc.weight += w
		acc.lo, acc.hi = min(acc.lo, lo), max(acc.hi, hi)
		acc.count += c
		if t.keepPoints {
			acc.points = append(acc.points, v)
		}
	}
}

// flush sets the current step's value.
func (t *tierStepper) flush() {
	if t.curStep < 0 || t.curN == 0 {
		return
	}
	var v float64
	switch q := t.q; {
	case q.Agg == AggAvg || q.Agg == (Agg{}):
		v = t.cur.sum / t.cur.weight
	case q.Agg == AggMin:
		v = t.cur.lo
	case q.Agg == AggMax:
		v = t.cur.hi
	case q.Agg == AggCount:
		v = float64(t.cur.count)
	case t.isQuantile:
		slices.Sort(t.cur.points)
		v = quantileSorted(t.cur.points, t.quantile)
	}
	t.rs.Values[t.curStep] = v
	t.curN = 0
}

// selectorMatchers returns the matchers of sel's series named name.
func selectorMatchers(name string, sel Selector) ([]*labels.Matcher, error) {
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
			return nil, fmt.Errorf("uids: %w", err)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// join walks several series sets sorted by labels in step, one object at a time: the
// series of the same object (the same labels but the metric name) come together.
type join struct {
	sets  []storage.SeriesSet
	heads []storage.Series // the current series of each set; nil once it is done
	ids   []SeriesID
	out   []storage.Series
	e     error
}

func newJoin(sets []storage.SeriesSet) *join {
	j := &join{sets: sets, heads: make([]storage.Series, len(sets)), ids: make([]SeriesID, len(sets)), out: make([]storage.Series, len(sets))}
	for i := range sets {
		j.advance(i)
	}
	return j
}

func (j *join) advance(i int) {
	j.heads[i] = nil
	if j.sets[i].Next() {
		j.heads[i] = j.sets[i].At()
		j.ids[i] = seriesID(j.heads[i].Labels())
	} else if err := j.sets[i].Err(); err != nil && j.e == nil {
		j.e = err
	}
}

// compareIDs orders objects as their series' labels sort: container < namespace < node <
// pod < uid.
func compareIDs(a, b SeriesID) int {
	return cmp.Or(cmp.Compare(a.Container, b.Container), cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Node, b.Node), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.UID, b.UID))
}

// next returns the next object and its series, one per set (nil where a set has none);
// false at the end or on an error (err).
func (j *join) next() (SeriesID, []storage.Series, bool) {
	if j.e != nil {
		return SeriesID{}, nil, false
	}
	var id SeriesID
	found := false
	for i, h := range j.heads {
		if h != nil && (!found || compareIDs(j.ids[i], id) < 0) {
			id, found = j.ids[i], true
		}
	}
	if !found {
		return SeriesID{}, nil, false
	}
	for i, h := range j.heads {
		j.out[i] = nil
		if h != nil && j.ids[i] == id {
			j.out[i] = h
			j.advance(i)
		}
	}
	return id, j.out, true
}

func (j *join) err() error { return j.e }

// seriesID returns the object of a series' labels.
func seriesID(lset labels.Labels) SeriesID {
	return SeriesID{
		Node: lset.Get(LabelNode), Namespace: lset.Get(LabelNamespace), Pod: lset.Get(LabelPod),
		Container: lset.Get(LabelContainer), UID: lset.Get(LabelUID),
	}
}
