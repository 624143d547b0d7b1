package tsdb

import (
	"cmp"
	"context"
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
	// Label order: container < namespace < node < pod < uid.
	slices.SortFunc(ids, func(a, b SeriesID) int {
		return cmp.Or(cmp.Compare(a.Container, b.Container), cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Node, b.Node), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.UID, b.UID))
	})
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

// fields returns the fields q needs: the average (which every window with a value has) and
// the count (Summary.Count is always set), the weight for an average, min and max when
// asked for. A percentile reads the averages.
func (r *tierRoles) fields(q RangeQuery) []RollupField {
	fs := []RollupField{r.avg, r.count}
	add := func(f RollupField) {
		if !slices.Contains(fs, f) {
			fs = append(fs, f)
		}
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

// rangeTier computes q's steps and summary points from tier t's windows, one series per
// object that sel picks and that has a window in the range.
func (db *DB) rangeTier(ctx context.Context, sel Selector, q RangeQuery, t Tier, fn func(*RangeSeries) error) error {
	roles := tierRolesOf[q.Resource]
	if roles == nil {
		return fmt.Errorf("range query: the %s tier keeps no %s", t, q.Resource)
	}
	fields := roles.fields(q)
	s := db.tiers[t]
	if s == nil {
		return fmt.Errorf("range query: the %s tier is off", t)
	}
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
	n := int((last-first)/res) + 1
	var win [NumRollupFields][]float64 // field → window → value (NaN: none; nil: not read)
	for _, f := range fields {
		win[f] = make([]float64, n)
	}
	rs := RangeSeries{Values: make([]float64, q.Steps())}
	var it chunkenc.Iterator
	for {
		id, heads, ok := j.next()
		if !ok {
			break
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("range query: %w", err)
		}
		for _, f := range fields {
			for k := range win[f] {
				win[f][k] = math.NaN()
			}
		}
		for i, h := range heads {
			if h == nil {
				continue
			}
			w := win[fields[i]]
			it = h.Iterator(it)
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				if k := (ts - first) / res; ts >= first && ts <= last && (ts-first)%res == 0 {
					w[k] = v
				}
			}
			if err := it.Err(); err != nil {
				return fmt.Errorf("range query: %w", err)
			}
		}
		rs.ID = id
		if !tierSteps(q, roles, first, res, &win, &rs) {
			continue
		}
		if err := fn(&rs); err != nil {
			return err
		}
	}
	if err := j.err(); err != nil {
		return fmt.Errorf("range query: %w", err)
	}
	return nil
}

// tierSteps fills rs's step values and summary points from one object's windows (win, by
// field, the fields q needs read, starting at first, res apart); false when no window has a
// value.
func tierSteps(q RangeQuery, roles *tierRoles, first, res int64, win *[NumRollupFields][]float64, rs *RangeSeries) bool {
	// A field not read (min or max when not asked for) is the average: never used.
	at := func(f RollupField, k int, avg float64) float64 {
		if win[f] == nil {
			return avg
		}
		return win[f][k]
	}
	quantile, isQuantile := q.Agg.Quantile()
	startMs, stepMs, lastMs := q.Start.UnixMilli(), q.Step.Milliseconds(), q.At(q.Steps()-1).UnixMilli()
	acc := newSummaryAcc()
	found := false
	type stepAcc struct {
		summaryAcc
		n int
	}
	var cur stepAcc
	curStep := -1
	flush := func() {
		if curStep < 0 || cur.n == 0 {
			return
		}
		var v float64
		switch {
		case q.Agg == AggAvg || q.Agg == (Agg{}):
			v = cur.sum / cur.weight
		case q.Agg == AggMin:
			v = cur.lo
		case q.Agg == AggMax:
			v = cur.hi
		case q.Agg == AggCount:
			v = float64(cur.count)
		case isQuantile:
			slices.Sort(cur.points)
			v = quantileSorted(cur.points, quantile)
		}
		rs.Values[curStep] = v
	}
	for i := range rs.Values {
		rs.Values[i] = math.NaN()
	}
	for k, avg := range win[roles.avg] {
		if math.IsNaN(avg) {
			continue
		}
		found = true
		end := first + int64(k)*res + res
		w := at(roles.weight, k, 1) * roles.weightUnit
		c := int(win[roles.count][k])
		v, lo, hi := avg*roles.unit, at(roles.min, k, avg)*roles.unit, at(roles.max, k, avg)*roles.unit
		// The step whose (t-Step, t] holds the window's end; the grid is aligned, so it
		// holds the whole window.
		d := end - startMs
		si := int(d / stepMs) // truncated: the ceiling for d <= 0
		if d > 0 && d%stepMs != 0 {
			si++
		}
		if si >= 0 && si < len(rs.Values) {
			if si != curStep {
				flush()
				cur, curStep = stepAcc{summaryAcc: newSummaryAcc(), n: 0}, si
				cur.points = cur.points[:0]
			}
			cur.n++
			cur.sum += v * w
			cur.weight += w
			cur.lo, cur.hi = min(cur.lo, lo), max(cur.hi, hi)
			cur.count += c
			cur.points = append(cur.points, v)
		}
		if end > startMs-stepMs && end <= lastMs {
			acc.sum += v * w
			acc.weight += w
			acc.lo, acc.hi = min(acc.lo, lo), max(acc.hi, hi)
			acc.count += c
			acc.points = append(acc.points, v)
		}
	}
	flush()
	rs.acc = acc
	rs.Summary = acc.summary(q.Summary)
	return found
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
