package httpapi

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/hindsight-metrics/hindsight/httpapi/internal/querytime"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

// Query parameters of every history endpoint.
const (
	paramStart         = "start"
	paramEnd           = "end"
	paramStep          = "step"
	paramResource      = "resource"
	paramAgg           = "agg"
	paramSummary       = "summary"
	paramView          = "view"
	paramFormat        = "format"
	paramLabelSelector = "labelSelector"
	paramBy            = "by"
	paramResolution    = "resolution"
)

// knownParams are the parameters any endpoint accepts; another one is an error, so that
// a typo (stat=, lableSelector=) does not silently answer a different question.
var knownParams = []string{paramStart, paramEnd, paramStep, paramResource, paramAgg, paramSummary,
	paramView, paramFormat, paramLabelSelector, paramBy, paramResolution}

// defaultRange is the range when start is not given.
const defaultRange = time.Hour

// targetPoints is how many steps the default step aims at, at most.
const targetPoints = 1000

// maxParamLen bounds each parameter's value; a label selector is the longest.
const maxParamLen = 4096

// niceSteps are the default steps, smallest first; the smallest one that is at least the
// resolution and keeps the grid within targetPoints is chosen. A step of one resolution
// holds no sample, or two, when kubelets' timestamps jitter; tsdb.DB.Range assigns raw
// points by the time they cover, so such a step still has a value (docs/history-api.md,
// "The grid").
var niceSteps = []time.Duration{
	10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour,
	6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour,
}

// view says what a response holds.
type view string

const (
	viewSeries  view = "series"  // step values and the summary
	viewSummary view = "summary" // the summary only
)

// format is a response's encoding.
type format string

const (
	formatJSON format = "json"
	formatCSV  format = "csv"
)

// query is a request's parsed parameters.
type query struct {
	start, end time.Time // the grid: start, start+step, … end (end is on the grid)
	step       time.Duration
	resources  []tsdb.Resource
	agg        tsdb.Agg
	summary    []tsdb.Agg
	view       view
	format     format
	selector   labels.Selector // nil when none was given
	by         string          // "" (the object's total) or "pod"
	notBefore  time.Time       // the oldest sample read; zero: any (a tenant's namespace incarnation)
	source     tsdb.Source     // resolution: auto (the planner), raw or a tier
	// parts is the plan every Range call of the request follows, made by its first gather
	// (a request's gathers run one after another); nil before it.
	parts []tsdb.RangePart
	slot  *slot // the request's query slot, taken by gather
}

// steps returns the number of steps of the grid.
func (q *query) steps() int { return int(q.end.Sub(q.start)/q.step) + 1 }

// at returns the time of step i.
func (q *query) at(i int) time.Time { return q.start.Add(time.Duration(i) * q.step) }

// limits are the bounds a query must respect.
type limits struct {
	resolution time.Duration // the scrape interval: the smallest default step
	maxPoints  int           // steps per series
}

// parseQuery parses and checks every parameter. accept is the request's Accept header.
// The grid is aligned to whole multiples of the step (in Unix time) and widened to cover
// [start, end]: step values then line up across queries and a step's value never mixes
// two queries' boundaries.
func parseQuery(v url.Values, accept string, now time.Time, lim limits) (*query, error) {
	if err := checkParams(v); err != nil {
		return nil, err
	}
	q := &query{agg: tsdb.AggAvg, summary: defaultSummary, view: viewSeries, format: formatJSON,
		resources: defaultResources}
	for _, parse := range []func() error{
		func() error { return q.parseGrid(v, now, lim) },
		func() error { return q.parseComputation(v) },
		func() error { return q.parsePresentation(v, accept) },
	} {
		if err := parse(); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// checkParams rejects unknown, repeated and overlong parameters, in name order, so that a
// request with several bad parameters always gets one answer.
func checkParams(v url.Values) error {
	for _, name := range slices.Sorted(maps.Keys(v)) {
		vals := v[name]
		if !slices.Contains(knownParams, name) {
			return paramError(name, "unknown parameter; known: %s", strings.Join(knownParams, ", "))
		}
		if len(vals) > 1 {
			return paramError(name, "given %d times; give it once", len(vals))
		}
		if len(vals[0]) > maxParamLen {
			return paramError(name, "%d bytes long, more than %d", len(vals[0]), maxParamLen)
		}
	}
	return nil
}

// parseGrid reads start, end, step and resolution, and aligns the grid to multiples of the
// step.
func (q *query) parseGrid(v url.Values, now time.Time, lim limits) error {
	var err error
	q.end = now
	if s := v.Get(paramEnd); s != "" {
		if q.end, err = parseTime(s, now); err != nil {
			return paramError(paramEnd, "%v", err)
		}
	}
	q.start = q.end.Add(-defaultRange)
	if s := v.Get(paramStart); s != "" {
		if q.start, err = parseTime(s, now); err != nil {
			return paramError(paramStart, "%v", err)
		}
	}
	if !q.start.Before(q.end) {
		return paramError(paramStart, "%s is not before end %s", q.start.Format(time.RFC3339), q.end.Format(time.RFC3339))
	}
	// A forced tier needs steps of its whole windows; its windows are the shortest default.
	shortest := lim.resolution
	if s := v.Get(paramResolution); s != "" {
		src, ok := tsdb.ParseSource(s)
		if !ok {
			return paramError(paramResolution, "unknown resolution %q; known: %s", s, sourceList())
		}
		q.source = src
		if t, ok := src.Tier(); ok {
			shortest = max(shortest, t.Resolution())
		}
	}
	if s := v.Get(paramStep); s != "" {
		if q.step, err = querytime.Duration(s); err != nil {
			return paramError(paramStep, "%v", err)
		}
		if q.step < time.Second {
			return paramError(paramStep, "%s is shorter than 1s", q.step)
		}
		if q.step > maxStep {
			return paramError(paramStep, "%q is longer than 10 years", s)
		}
		if q.step%time.Second != 0 {
			return paramError(paramStep, "%s is not a whole number of seconds", q.step)
		}
	} else {
		q.step = defaultStep(q.end.Sub(q.start), shortest, lim.maxPoints)
	}
	// The grid is aligned to the step below, so to a tier's windows when they tile it.
	if t, ok := q.source.Tier(); ok && q.step%t.Resolution() != 0 {
		return paramError(paramResolution, "the %s tier serves steps that are whole multiples of %s; step is %s", t, t.Resolution(), q.step)
	}
	// Align the grid; the checks above bound both ends, so this does not overflow.
	q.start = alignDown(q.start, q.step)
	q.end = alignUp(q.end, q.step)
	if n := float64(q.end.Sub(q.start)/q.step) + 1; n > float64(lim.maxPoints) {
		return &limitError{msg: fmt.Sprintf("step %s over %s gives %.0f points per series, more than the limit of %d (--history-max-points): use a step of at least %s",
			q.step, q.end.Sub(q.start), n, lim.maxPoints, minStep(q.end.Sub(q.start), lim.maxPoints))}
	}
	return nil
}

// parseComputation reads what is computed: resource, agg, summary, labelSelector and by.
// (resolution, which bounds the step, is read with the grid.)
func (q *query) parseComputation(v url.Values) error {
	var err error
	if s := v.Get(paramResource); s != "" {
		q.resources = nil
		for r := range strings.SplitSeq(s, ",") {
			res, ok := tsdb.ParseResource(strings.TrimSpace(r))
			if !ok || !res.History() {
				return paramError(paramResource, "unknown resource %q; known: %s", r, resourceList())
			}
			if !slices.Contains(q.resources, res) {
				q.resources = append(q.resources, res)
			}
		}
	}
	if s := v.Get(paramAgg); s != "" {
		if q.agg, err = tsdb.ParseAgg(s); err != nil {
			return paramError(paramAgg, "unknown aggregation %q; known: %s", s, tsdb.AggSyntax)
		}
	}
	if s, ok := v[paramSummary]; ok {
		q.summary = nil
		if s[0] != "" && s[0] != "none" {
			for a := range strings.SplitSeq(s[0], ",") {
				agg, err := tsdb.ParseAgg(strings.TrimSpace(a))
				if err != nil {
					return paramError(paramSummary, "unknown aggregation %q; known: %s; or none", a, tsdb.AggSyntax)
				}
				if !slices.Contains(q.summary, agg) {
					q.summary = append(q.summary, agg)
				}
			}
		}
	}
	if s := v.Get(paramLabelSelector); s != "" {
		if q.selector, err = labels.Parse(s); err != nil {
			return paramError(paramLabelSelector, "%v", err)
		}
	}
	switch by := v.Get(paramBy); by {
	case "", "pod":
		q.by = by
	default:
		return paramError(paramBy, "unknown grouping %q; known: pod", by)
	}
	return nil
}

// parsePresentation reads how the answer is written: view and format (or Accept).
func (q *query) parsePresentation(v url.Values, accept string) error {
	if s := v.Get(paramView); s != "" {
		q.view = view(s)
		if q.view != viewSeries && q.view != viewSummary {
			return paramError(paramView, "unknown view %q; known: series, summary", s)
		}
	}
	switch f := v.Get(paramFormat); f {
	case "":
		if acceptsCSV(accept) {
			q.format = formatCSV
		}
	case string(formatJSON), string(formatCSV):
		q.format = format(f)
	default:
		return paramError(paramFormat, "unknown format %q; known: json, csv", f)
	}
	return nil
}

// defaultSummary is the summary when the request names none. It is frozen
// (docs/history-api.md): its JSON keys and CSV columns never change, whatever
// aggregations are added.
var defaultSummary = []tsdb.Agg{tsdb.AggAvg, tsdb.AggMin, tsdb.AggMax, tsdb.AggP50, tsdb.AggP90, tsdb.AggP95, tsdb.AggP99, tsdb.AggCount}

// defaultResources are the resources when the request names none.
var defaultResources = []tsdb.Resource{tsdb.ResourceCPU, tsdb.ResourceMemory}

// sourceList names the values of resolution: "auto, raw, 5m, 1h".
func sourceList() string {
	names := []string{tsdb.SourceAuto.String(), tsdb.SourceRaw.String()}
	for t := range tsdb.NumTiers {
		names = append(names, t.String())
	}
	return strings.Join(names, ", ")
}

// resourceList names the resources the API serves: "cpu, memory, swap".
func resourceList() string {
	s := make([]string, len(tsdb.HistoryResources))
	for i, r := range tsdb.HistoryResources {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

// acceptsCSV reports whether an Accept header prefers text/csv to JSON: it names
// text/csv and no JSON type before it.
func acceptsCSV(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "text/csv":
			return true
		case "application/json", "application/*":
			return false
		}
	}
	return false
}

// minTime and maxTime bound the times of the history grid, so that a time plus or minus
// a step stays within Unix nanoseconds (1678-2262); maxStep bounds its step likewise.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

const maxStep = 10 * 365 * 24 * time.Hour

// parseTime parses a time of the grid: what querytime.Time accepts (RFC 3339, Unix
// seconds, now, relative to now), within 1970-2200.
func parseTime(s string, now time.Time) (time.Time, error) {
	t, err := querytime.Time(s, now)
	if err != nil {
		return time.Time{}, err
	}
	if t.Before(minTime) || !t.Before(maxTime) {
		return time.Time{}, fmt.Errorf("%q is outside 1970-2200", s)
	}
	return t, nil
}

// defaultStep returns the smallest nice step of at least the resolution that keeps a
// range of length d within targetPoints, and within maxPoints (when at least 3), so that
// a request that names no step is never refused for its points.
func defaultStep(d, resolution time.Duration, maxPoints int) time.Duration {
	for _, s := range niceSteps {
		// Aligning the grid to the step adds up to two points.
		if s >= resolution && d/s+2 <= targetPoints && int64(d/s)+3 <= int64(maxPoints) {
			return s
		}
	}
	// Beyond a week per step: whole weeks, or more for a small maxPoints.
	w := 7 * 24 * time.Hour
	return max((d/targetPoints/w+1)*w, minStep(d, maxPoints))
}

// minStep returns the smallest whole-second step that keeps any range of length d within
// maxPoints (at least 3), as does every longer step: aligning the grid to a step s widens
// the range by less than 2s, so its grid has fewer than d/s+3 points, which a step over
// d/(maxPoints-2) keeps within maxPoints. (d/(maxPoints-1), which ignores the alignment,
// can leave a point too many, and the step it names is then refused too.)
func minStep(d time.Duration, maxPoints int) time.Duration {
	s := d / time.Duration(max(maxPoints-2, 1))
	return s.Truncate(time.Second) + time.Second
}

func alignDown(t time.Time, step time.Duration) time.Time {
	ns := t.UnixNano()
	return time.Unix(0, ns-mod(ns, int64(step)))
}

func alignUp(t time.Time, step time.Duration) time.Time {
	d := alignDown(t, step)
	if d.Equal(t) {
		return d
	}
	return d.Add(step)
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
