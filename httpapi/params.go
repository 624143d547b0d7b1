package httpapi

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/labels"

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
)

// knownParams are the parameters any endpoint accepts; another one is an error, so that
// a typo (stat=, lableSelector=) does not silently answer a different question.
var knownParams = []string{paramStart, paramEnd, paramStep, paramResource, paramAgg, paramSummary,
	paramView, paramFormat, paramLabelSelector, paramBy}

// defaultRange is the range when start is not given.
const defaultRange = time.Hour

// targetPoints is how many steps the default step aims at, at most.
const targetPoints = 1000

// maxParamLen bounds each parameter's value; a label selector is the longest.
const maxParamLen = 4096

// niceSteps are the default steps, smallest first; the smallest one that is at least the
// resolution and keeps the grid within targetPoints is chosen.
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
	// In name order, so that a request with several bad parameters always gets one answer.
	for _, name := range slices.Sorted(maps.Keys(v)) {
		vals := v[name]
		if !slices.Contains(knownParams, name) {
			return nil, paramError(name, "unknown parameter; known: %s", strings.Join(knownParams, ", "))
		}
		if len(vals) > 1 {
			return nil, paramError(name, "given %d times; give it once", len(vals))
		}
		if len(vals[0]) > maxParamLen {
			return nil, paramError(name, "%d bytes long, more than %d", len(vals[0]), maxParamLen)
		}
	}
	q := &query{agg: tsdb.AggAvg, summary: defaultSummary, view: viewSeries, format: formatJSON,
		resources: defaultResources}
	var err error
	q.end = now
	if s := v.Get(paramEnd); s != "" {
		if q.end, err = parseTime(s, now); err != nil {
			return nil, paramError(paramEnd, "%v", err)
		}
	}
	q.start = q.end.Add(-defaultRange)
	if s := v.Get(paramStart); s != "" {
		if q.start, err = parseTime(s, now); err != nil {
			return nil, paramError(paramStart, "%v", err)
		}
	}
	if !q.start.Before(q.end) {
		return nil, paramError(paramStart, "%s is not before end %s", q.start.Format(time.RFC3339), q.end.Format(time.RFC3339))
	}
	if s := v.Get(paramStep); s != "" {
		if q.step, err = parseDuration(s); err != nil {
			return nil, paramError(paramStep, "%v", err)
		}
		if q.step < time.Second {
			return nil, paramError(paramStep, "%s is shorter than 1s", q.step)
		}
		if q.step%time.Second != 0 {
			return nil, paramError(paramStep, "%s is not a whole number of seconds", q.step)
		}
	} else {
		q.step = defaultStep(q.end.Sub(q.start), lim.resolution, lim.maxPoints)
	}
	// Align the grid; the checks above bound both ends, so this does not overflow.
	q.start = alignDown(q.start, q.step)
	q.end = alignUp(q.end, q.step)
	if n := float64(q.end.Sub(q.start)/q.step) + 1; n > float64(lim.maxPoints) {
		return nil, &limitError{msg: fmt.Sprintf("step %s over %s gives %.0f points per series, more than the limit of %d (--history-max-points): use a step of at least %s",
			q.step, q.end.Sub(q.start), n, lim.maxPoints, minStep(q.end.Sub(q.start), lim.maxPoints))}
	}

	if s := v.Get(paramResource); s != "" {
		q.resources = nil
		for r := range strings.SplitSeq(s, ",") {
			res, ok := tsdb.ParseResource(strings.TrimSpace(r))
			if !ok || !res.History() {
				return nil, paramError(paramResource, "unknown resource %q; known: %s", r, resourceList())
			}
			if !slices.Contains(q.resources, res) {
				q.resources = append(q.resources, res)
			}
		}
	}
	if s := v.Get(paramAgg); s != "" {
		if q.agg, err = tsdb.ParseAgg(s); err != nil {
			return nil, paramError(paramAgg, "unknown aggregation %q; known: %s", s, tsdb.AggSyntax)
		}
	}
	if s, ok := v[paramSummary]; ok {
		q.summary = nil
		if s[0] != "" && s[0] != "none" {
			for a := range strings.SplitSeq(s[0], ",") {
				agg, err := tsdb.ParseAgg(strings.TrimSpace(a))
				if err != nil {
					return nil, paramError(paramSummary, "unknown aggregation %q; known: %s; or none", a, tsdb.AggSyntax)
				}
				if !slices.Contains(q.summary, agg) {
					q.summary = append(q.summary, agg)
				}
			}
		}
	}
	if s := v.Get(paramView); s != "" {
		q.view = view(s)
		if q.view != viewSeries && q.view != viewSummary {
			return nil, paramError(paramView, "unknown view %q; known: series, summary", s)
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
		return nil, paramError(paramFormat, "unknown format %q; known: json, csv", f)
	}
	if s := v.Get(paramLabelSelector); s != "" {
		if q.selector, err = labels.Parse(s); err != nil {
			return nil, paramError(paramLabelSelector, "%v", err)
		}
	}
	switch by := v.Get(paramBy); by {
	case "", "pod":
		q.by = by
	default:
		return nil, paramError(paramBy, "unknown grouping %q; known: pod", by)
	}
	return q, nil
}

// defaultSummary is the summary when the request names none. It is frozen
// (docs/history-api.md): its JSON keys and CSV columns never change, whatever
// aggregations are added.
var defaultSummary = []tsdb.Agg{tsdb.AggAvg, tsdb.AggMin, tsdb.AggMax, tsdb.AggP50, tsdb.AggP90, tsdb.AggP95, tsdb.AggP99, tsdb.AggCount}

// defaultResources are the resources when the request names none.
var defaultResources = []tsdb.Resource{tsdb.ResourceCPU, tsdb.ResourceMemory}

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

// minTime and maxTime bound the times a query may name, so that a time plus or minus a
// step stays within Unix nanoseconds (1678-2262).
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// parseTime parses an RFC 3339 time, Unix seconds (with a fraction), "now", or a time
// relative to now: "-24h", "now-7d", "now+1h", "-1h30m".
func parseTime(s string, now time.Time) (time.Time, error) {
	var t time.Time
	switch {
	case s == "now":
		t = now
	case strings.HasPrefix(s, "now-"), strings.HasPrefix(s, "now+"), strings.HasPrefix(s, "-"):
		rel := strings.TrimPrefix(s, "now")
		d, err := parseDuration(rel[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("relative time %q: %w", s, err)
		}
		if rel[0] == '-' {
			d = -d
		}
		t = now.Add(d)
	default:
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			if math.IsNaN(f) || math.IsInf(f, 0) || f < float64(minTime.Unix()) || f >= float64(maxTime.Unix()) {
				return time.Time{}, fmt.Errorf("%q is not a Unix time between 1970 and 2200", s)
			}
			sec, frac := math.Modf(f)
			t = time.Unix(int64(sec), int64(math.Round(frac*1e9)))
			break
		}
		var err error
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2006-01-02T15:04:05Z), Unix seconds, now, nor relative (-24h, now-7d)", s)
		}
	}
	if t.Before(minTime) || !t.Before(maxTime) {
		return time.Time{}, fmt.Errorf("%q is outside 1970-2200", s)
	}
	return t, nil
}

// maxDuration bounds durations, so that arithmetic on them cannot overflow.
const maxDuration = 10 * 365 * 24 * time.Hour

// parseDuration parses a duration as Prometheus writes them (model.ParseDuration: "90s",
// "15m", "1h30m", "7d", "2w"; the units ms, s, m, h, d, w, y, largest first), or a number
// of seconds ("300", "0.5", kept to the millisecond), so that a step or a relative time
// copied from a PromQL query or a Grafana panel means the same here.
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || f < 0 || f > maxDuration.Seconds() {
			return 0, fmt.Errorf("%q seconds is not between 0 and 10 years", s)
		}
		return time.Duration(math.Round(f*1e3)) * time.Millisecond, nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 90s, 15m, 1h30m, 7d or 2w, nor a number of seconds", s)
	}
	if time.Duration(d) > maxDuration {
		return 0, fmt.Errorf("%q is longer than 10 years", s)
	}
	return time.Duration(d), nil
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
