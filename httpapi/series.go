package httpapi

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hindsight-metrics/hindsight/tsdb"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// Series of a response.
//
// A series is one object's usage on the query's grid: one pod incarnation, container or
// node, or the total of a namespace, a workload or the cluster. A total's value at a step
// is the sum of its members' values there (a member without a value adds nothing; a step
// without any member's value is a gap), and its summary aggregates its step values. A
// single object's summary aggregates its raw points (one per scrape), whatever the step.

// result is a computed response.
type result struct {
	series []*seriesResult
}

// objectInfo describes a series' object, from the catalog.
type objectInfo struct {
	Kind       string            `json:"kind"`
	Namespace  string            `json:"namespace,omitempty"`
	Name       string            `json:"name,omitempty"`
	UID        string            `json:"uid,omitempty"`
	Node       string            `json:"node,omitempty"`
	Container  string            `json:"container,omitempty"`
	Owner      *catalog.Owner    `json:"owner,omitempty"`
	Controller *catalog.Owner    `json:"controller,omitempty"`
	QoSClass   string            `json:"qosClass,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	FirstSeen  *time.Time        `json:"firstSeen,omitempty"`
	LastSeen   *time.Time        `json:"lastSeen,omitempty"`
	Deleted    bool              `json:"deleted,omitempty"`
	DeletedAt  *time.Time        `json:"deletedAt,omitempty"`
	// Members counts the pods (or nodes) summed into a total.
	Members *int `json:"members,omitempty"`
}

// Lines that come with usage: what the object asked for and was given.
const (
	lineRequests    = "requests"
	lineLimits      = "limits"
	lineCapacity    = "capacity"
	lineAllocatable = "allocatable"
)

// seriesResult is one series with each requested resource.
type seriesResult struct {
	object    objectInfo
	resources []*resourceResult // in query order
	aggs      []tsdb.Agg        // of the summaries, the query's
	// total: the series sums members; its summary comes from its step values.
	total bool
	// got counts the stored series added, per resource.
	got []int
	// latestOnly: no step values, and lines of one value, the latest (view=summary).
	latestOnly bool
}

type resourceResult struct {
	resource tsdb.Resource
	values   []float64
	summary  tsdb.Summary
	lines    []line // requests and limits, or capacity and allocatable; step-aligned
}

type line struct {
	name   string
	values []float64
}

// last returns the line's last value that is not a gap, or NaN.
func (l line) last() float64 {
	for i := len(l.values) - 1; i >= 0; i-- {
		if !math.IsNaN(l.values[i]) {
			return l.values[i]
		}
	}
	return math.NaN()
}

// newSeries returns an empty series. A single object's series in view=summary keeps no
// step values: its summary comes from the raw points.
func newSeries(q *query, obj objectInfo, total bool) *seriesResult {
	s := &seriesResult{object: obj, aggs: q.summary, total: total, got: make([]int, len(q.resources)), latestOnly: q.view == viewSummary && !total}
	for _, r := range q.resources {
		rr := &resourceResult{resource: r}
		if !s.latestOnly {
			rr.values = nanSlice(q.steps())
		}
		s.resources = append(s.resources, rr)
	}
	return s
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

// add adds one stored series to resource ri of s.
func (s *seriesResult) add(ri int, rs *tsdb.RangeSeries) {
	r := s.resources[ri]
	for i, v := range rs.Values {
		if r.values == nil {
			break
		}
		if math.IsNaN(v) {
			continue
		}
		if math.IsNaN(r.values[i]) {
			r.values[i] = v
		} else {
			r.values[i] += v
		}
	}
	s.got[ri]++
	if s.got[ri] == 1 {
		r.summary = rs.Summary
	}
}

// finish computes the summaries that come from step values: a total's, or a series that
// several stored series were added to (a pod whose series moved between nodes).
//
// It also converts requests, limits, capacity and allocatable, summed in the catalog's
// integer units (millicores), to the API's (cores) with one division per value, so that a
// total of three 100m requests is 0.3 cores and not 0.30000000000000004.
func (s *seriesResult) finish() {
	for _, r := range s.resources {
		if _, unit, ok := r.resource.CatalogKey(); ok && unit != 1 {
			for _, l := range r.lines {
				for j, v := range l.values {
					l.values[j] = v / unit
				}
			}
		}
	}
	for i, r := range s.resources {
		switch {
		case r.values != nil && (s.total || s.got[i] != 1):
			r.summary = tsdb.Summarize(append([]float64(nil), r.values...), s.aggs)
		case s.got[i] == 0:
			// No stored series (view=summary keeps no values): the summary of no point,
			// null rather than the zero Summary's zeros.
			r.summary = tsdb.Summarize(nil, s.aggs)
		}
	}
}

// checkSize refuses a response of more than maxValues usage values, before it is
// computed. Requests and limits (or capacity and allocatable) add at most twice as many.
func checkSize(q *query, series int) error {
	if n := series * q.steps() * len(q.resources); n > maxValues {
		return &limitError{msg: fmt.Sprintf("%d series × %d steps × %d resources is more than the %d values one response may hold: use a larger step, fewer resources or a narrower selection",
			series, q.steps(), len(q.resources), maxValues)}
	}
	return nil
}

// maxMembers bounds the stored series summed into one total.
const maxMembers = 50_000

// gather runs the query over the stored series that sel picks, once per resource, and
// hands each series to add with the resource's index. maxSeries bounds the series.
//
// The resources are read in parallel; add is called by one of them at a time. A total's
// members need no summary of their raw points (the total's comes from its step values),
// so none is computed for them.
func (h *Handler) gather(ctx context.Context, q *query, sel tsdb.Selector, maxSeries int, total bool, add func(ri int, rs *tsdb.RangeSeries)) error {
	if err := q.slot.acquire(ctx); err != nil { // the request is authorized by now
		return err
	}
	var summary []tsdb.Agg
	if !total {
		summary = q.summary
	}
	base := tsdb.RangeQuery{Start: q.start, End: q.end, Step: q.step, Agg: q.agg, MaxSeries: maxSeries, Summary: summary, NotBefore: q.notBefore, Source: q.source}
	if q.parts == nil {
		// One plan for every read of the request, so that its parts agree (a tier may
		// load a block meanwhile) and the response can say which source served what.
		q.parts = h.cfg.Samples.Plan(base)
	}
	base.Parts = q.parts
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	for ri, res := range q.resources {
		g.Go(func() error {
			rq := base
			rq.Resource = res
			err := h.cfg.Samples.Range(ctx, sel, rq, func(rs *tsdb.RangeSeries) error {
				mu.Lock()
				defer mu.Unlock()
				add(ri, rs)
				return nil
			})
			if err != nil {
				return fmt.Errorf("query %s: %w", res, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Requests and limits of pods over the grid.

// endOfLife returns when a pod or node record stopped existing, or the zero time when
// it still exists.
func endOfLife(deleted bool, deletedAt, lastSeen time.Time) time.Time {
	if !deleted {
		return time.Time{}
	}
	if !deletedAt.IsZero() {
		return deletedAt
	}
	return lastSeen
}

// lifeAt returns the time at which to read a record's spec for step i: the step's time,
// or the end of its life when it ended during the step; false when it did not exist
// during the step.
func lifeAt(q *query, i int, first, eol time.Time) (time.Time, bool) {
	t := q.at(i)
	if t.Before(first) {
		return time.Time{}, false
	}
	if !eol.IsZero() {
		if !eol.After(t.Add(-q.step)) {
			return time.Time{}, false
		}
		if eol.Before(t) {
			t = eol
		}
	}
	return t, true
}

// specAt returns a container's requests and limits in effect at t.
func specAt(c catalog.ContainerSpec, t time.Time) catalog.ResourceChange {
	if len(c.Changes) == 0 {
		return catalog.ResourceChange{Requests: c.Requests, Limits: c.Limits}
	}
	if ch, ok := c.At(t); ok {
		return ch
	}
	return c.Changes[0] // seen first after the pod's creation: its first spec
}

// podSpecAt returns a pod's request and limit of key at t, in the catalog's canonical
// units (finish converts them): the sums over its app
// containers (init containers run before them). The request is false when no container
// requests r; the limit when any container has none (the pod is then unbounded).
func podSpecAt(rec *catalog.PodRecord, container string, key string, t time.Time) (req float64, hasReq bool, lim float64, hasLim bool) {
	hasLim = true
	n := 0
	var reqSum, limSum int64
	for _, c := range rec.Containers {
		if c.Init || (container != "" && c.Name != container) {
			continue
		}
		n++
		ch := specAt(c, t)
		if v, ok := ch.Requests[key]; ok {
			reqSum += v
			hasReq = true
		}
		if v, ok := ch.Limits[key]; ok {
			limSum += v
		} else {
			hasLim = false
		}
	}
	if n == 0 {
		hasLim = false
	}
	return float64(reqSum), hasReq, float64(limSum), hasLim
}

// addPodLines adds the pod's (or one of its containers') requests and limits to every
// resource of s that has them.
func addPodLines(q *query, s *seriesResult, rec *catalog.PodRecord, container string) {
	eol := endOfLife(rec.Deleted, rec.DeletedAt, rec.LastSeen)
	for _, r := range s.resources {
		key, _, ok := r.resource.CatalogKey()
		if !ok {
			continue
		}
		if len(r.lines) == 0 {
			r.lines = []line{{lineRequests, s.newLine(q)}, {lineLimits, s.newLine(q)}}
		}
		s.forSteps(q, rec.FirstSeen, eol, func(slot int, t time.Time) {
			req, hasReq, lim, hasLim := podSpecAt(rec, container, key, t)
			if hasReq {
				addAt(r.lines[0].values, slot, req)
			}
			if hasLim {
				addAt(r.lines[1].values, slot, lim)
			}
		})
	}
}

// newLine returns the empty values of a line of s: one per step, or the latest only.
func (s *seriesResult) newLine(q *query) []float64 {
	if s.latestOnly {
		return nanSlice(1)
	}
	return nanSlice(q.steps())
}

// forSteps calls fn with each step during which an object that lived from first to eol
// existed, and the time to read its spec at; with latestOnly, with the last such step
// only, in slot 0.
func (s *seriesResult) forSteps(q *query, first, eol time.Time, fn func(slot int, t time.Time)) {
	if s.latestOnly {
		for i := q.steps() - 1; i >= 0; i-- {
			if t, alive := lifeAt(q, i, first, eol); alive {
				fn(0, t)
				return
			}
		}
		return
	}
	for i := range q.steps() {
		if t, alive := lifeAt(q, i, first, eol); alive {
			fn(i, t)
		}
	}
}

// addNodeLines adds the node's capacity and allocatable to every resource of s that has
// them, for the steps during which it existed.
func addNodeLines(q *query, s *seriesResult, rec *catalog.NodeRecord) {
	eol := endOfLife(rec.Deleted, rec.DeletedAt, rec.LastSeen)
	for _, r := range s.resources {
		key, _, ok := r.resource.CatalogKey()
		if !ok {
			continue
		}
		if len(r.lines) == 0 {
			r.lines = []line{{lineCapacity, s.newLine(q)}, {lineAllocatable, s.newLine(q)}}
		}
		capacity, hasCap := rec.Capacity[key]
		alloc, hasAlloc := rec.Allocatable[key]
		s.forSteps(q, rec.FirstSeen, eol, func(slot int, _ time.Time) {
			if hasCap {
				addAt(r.lines[0].values, slot, float64(capacity))
			}
			if hasAlloc {
				addAt(r.lines[1].values, slot, float64(alloc))
			}
		})
	}
}

func addAt(vs []float64, i int, v float64) {
	if math.IsNaN(vs[i]) {
		vs[i] = v
	} else {
		vs[i] += v
	}
}

// Objects from catalog records.

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func ownerPtr(o catalog.Owner) *catalog.Owner {
	if o.IsZero() {
		return nil
	}
	return &o
}

func podObject(rec *catalog.PodRecord) objectInfo {
	return objectInfo{
		Kind: "Pod", Namespace: rec.Namespace, Name: rec.Name, UID: rec.UID, Node: rec.Node,
		Owner: ownerPtr(rec.Owner), Controller: ownerPtr(rec.Controller), QoSClass: rec.QoSClass,
		Labels: rec.Labels, FirstSeen: timePtr(rec.FirstSeen), LastSeen: timePtr(rec.LastSeen),
		Deleted: rec.Deleted, DeletedAt: timePtr(rec.DeletedAt),
	}
}

func nodeObject(rec *catalog.NodeRecord) objectInfo {
	return objectInfo{
		Kind: "Node", Name: rec.Name, UID: rec.UID, Labels: rec.Labels,
		FirstSeen: timePtr(rec.FirstSeen), LastSeen: timePtr(rec.LastSeen),
		Deleted: rec.Deleted, DeletedAt: timePtr(rec.DeletedAt),
	}
}

// overlaps reports whether a record's life overlaps the query's grid.
func overlaps(q *query, first time.Time, eol time.Time) bool {
	if first.After(q.end) {
		return false
	}
	return eol.IsZero() || eol.After(q.start.Add(-q.step))
}
