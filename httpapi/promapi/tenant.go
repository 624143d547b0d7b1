package promapi

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// MaxNamespaces bounds the distinct namespaces one request may name (namespace
// parameters and namespace matchers together): each costs an authorization check.
const MaxNamespaces = 100

// namespaceParam is the parameter that names the namespaces a request reads, as
// prom-label-proxy's tenant parameter does; it may be repeated.
const namespaceParam = "namespace"

// Scope is what one request may read.
type Scope struct {
	// All lets the request read every series, unchanged; the other fields are ignored.
	All bool
	// Nodes lets it read the series without a namespace label: the node series.
	Nodes bool
	// Namespaces maps each namespace whose pod and container series the request may
	// read to the time it may read them from: the creation of the namespace's current
	// incarnation, so that a re-created namespace does not show the previous one's
	// series. The zero time means from the beginning.
	Namespaces map[string]time.Time
}

// ScopeFunc decides what a request may read, given the namespaces it names (deduplicated
// and sorted; empty when it names none). An error answers 403 with its text.
type ScopeFunc func(r *http.Request, namespaces []string) (Scope, error)

// queryable returns the storage a request reads: Config.Queryable itself when the
// request may read everything, or else the same storage seen through the request's
// scope. named are the namespaces the request's selectors name.
func (h *Handler) queryable(r *http.Request, named []string) (storage.Queryable, *apiError) {
	return h.scopedQueryable(r, h.cfg.Queryable, named)
}

// scopedQueryable is base as the request's scope may read it.
func (h *Handler) scopedQueryable(r *http.Request, base storage.Queryable, named []string) (storage.Queryable, *apiError) {
	if h.cfg.Scope == nil {
		return base, nil
	}
	seen := map[string]struct{}{}
	for _, ns := range append(slices.Clone(r.Form[namespaceParam]), named...) {
		if ns != "" { // namespace= names nothing
			seen[ns] = struct{}{}
		}
	}
	if len(seen) > MaxNamespaces {
		return nil, badParam(namespaceParam, fmt.Errorf("%d namespaces named, at most %d allowed", len(seen), MaxNamespaces))
	}
	namespaces := make([]string, 0, len(seen))
	for ns := range seen {
		namespaces = append(namespaces, ns)
	}
	slices.Sort(namespaces)
	scope, err := h.cfg.Scope(r, namespaces)
	if err != nil {
		return nil, newError(errorForbidden, err)
	}
	if ns, ok := r.Context().Value(pinnedKey{}).(string); ok {
		scope = scope.pin(ns)
	}
	if scope.All {
		return base, nil
	}
	return newScopedQueryable(base, scope), nil
}

// pinnedKey is the context key of the namespace a request is pinned to (Namespaced).
type pinnedKey struct{}

// pin narrows the scope to namespace ns: what a request through
// .../namespaces/<ns>/... may read, whoever asks.
func (s Scope) pin(ns string) Scope {
	if s.All {
		return Scope{Namespaces: map[string]time.Time{ns: {}}}
	}
	pinned := Scope{Namespaces: map[string]time.Time{}}
	if from, ok := s.Namespaces[ns]; ok {
		pinned.Namespaces[ns] = from
	}
	return pinned
}

// queryNamespaces returns the namespaces that the selectors of query qs name.
func (h *Handler) queryNamespaces(qs string) ([]string, *apiError) {
	expr, err := h.parser.ParseExpr(qs)
	if err != nil {
		return nil, badParam("query", err)
	}
	var sets [][]*labels.Matcher
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			sets = append(sets, vs.LabelMatchers)
		}
		return nil
	})
	return namedNamespaces(sets), nil
}

// namedNamespaces returns the namespaces that matcher sets name: the value of a
// namespace="x" matcher, the alternatives of a namespace=~"x|y" one. Other matchers name
// none; whatever they match, the scope still bounds what is read.
func namedNamespaces(sets [][]*labels.Matcher) []string {
	var names []string
	for _, set := range sets {
		for _, m := range set {
			if m == nil || m.Name != tsdb.LabelNamespace {
				continue
			}
			switch m.Type {
			case labels.MatchEqual:
				if m.Value != "" {
					names = append(names, m.Value)
				}
			case labels.MatchRegexp:
				for _, v := range m.SetMatches() {
					if v != "" {
						names = append(names, v)
					}
				}
			}
		}
	}
	return names
}

// scopePart is one slice of a scope: the series a matcher on the namespace label picks
// (namespace="" for the node series), read from start (milliseconds) on.
type scopePart struct {
	matcher *labels.Matcher
	start   int64
}

// scopedQueryable is a Queryable that reads only a scope's series: every Select of its
// queriers, hence every selector of a query, its subqueries and functions included,
// gets the scope's namespace matcher and starts no earlier than its namespace's
// incarnation; label names and values come from those series only.
type scopedQueryable struct {
	base  storage.Queryable
	parts []scopePart
}

func newScopedQueryable(base storage.Queryable, s Scope) scopedQueryable {
	var parts []scopePart
	if s.Nodes {
		parts = append(parts, scopePart{labels.MustNewMatcher(labels.MatchEqual, tsdb.LabelNamespace, ""), math.MinInt64})
	}
	names := make([]string, 0, len(s.Namespaces))
	for ns := range s.Namespaces {
		if ns != "" {
			names = append(names, ns)
		}
	}
	slices.Sort(names)
	for _, ns := range names {
		start := int64(math.MinInt64)
		if since := s.Namespaces[ns]; !since.IsZero() {
			start = since.UnixMilli()
		}
		parts = append(parts, scopePart{labels.MustNewMatcher(labels.MatchEqual, tsdb.LabelNamespace, ns), start})
	}
	return scopedQueryable{base: base, parts: parts}
}

func (s scopedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := s.base.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &scopedQuerier{q: q, parts: s.parts, mint: mint, maxt: maxt}, nil
}

type scopedQuerier struct {
	q          storage.Querier
	parts      []scopePart
	mint, maxt int64
}

// Select selects in each part of the scope, with the part's matcher and start, and
// merges what the parts select (they are disjoint: one namespace value each).
func (q *scopedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	sets := make([]storage.SeriesSet, 0, len(q.parts))
	for _, p := range q.parts {
		h := storage.SelectHints{Start: q.mint, End: q.maxt}
		if hints != nil {
			h = *hints
		}
		clamped := p.start > h.Start
		if clamped {
			h.Start = p.start
			h.DisableTrimming = false // the samples before start must go
		}
		if h.Start > h.End {
			continue
		}
		// Without samples (series, label names and values), the TSDB answers every series
		// with a chunk overlapping the range, and the head's open chunks overlap every
		// range: a series of an earlier incarnation, still in the head, would show. A
		// clamped part reads the samples and keeps only the series with one in range.
		metadata := h.Func == "series"
		if clamped && metadata {
			h.Func = ""
		}
		with := make([]*labels.Matcher, 0, len(ms)+1)
		with = append(with, ms...)
		with = append(with, p.matcher)
		set := q.q.Select(ctx, sortSeries || len(q.parts) > 1, &h, with...)
		if clamped && metadata {
			set = &nonEmptySeriesSet{SeriesSet: set}
		}
		sets = append(sets, set)
	}
	switch len(sets) {
	case 0:
		return storage.EmptySeriesSet()
	case 1:
		return sets[0]
	}
	return storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
}

// LabelValues returns the values of name in the scope's series. They are read from the
// series themselves, not the index: an index answers for whole blocks, and would show a
// previous incarnation's pods.
func (q *scopedQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.collect(ctx, hints, ms, func(l labels.Labels, add func(string)) {
		if v := l.Get(name); v != "" {
			add(v)
		}
	})
}

// LabelNames returns the label names of the scope's series, read from the series.
func (q *scopedQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.collect(ctx, hints, ms, func(l labels.Labels, add func(string)) {
		l.Range(func(lb labels.Label) { add(lb.Name) })
	})
}

// collect gathers the strings of the selected series that pick returns, sorted, up to
// hints.Limit when set.
func (q *scopedQuerier) collect(ctx context.Context, hints *storage.LabelHints, ms []*labels.Matcher, pick func(labels.Labels, func(string))) ([]string, annotations.Annotations, error) {
	limit := 0
	if hints != nil {
		limit = hints.Limit
	}
	set := q.Select(ctx, false, &storage.SelectHints{Start: q.mint, End: q.maxt, Func: "series"}, ms...)
	found := map[string]struct{}{}
	add := func(s string) { found[s] = struct{}{} }
	for i := 1; set.Next(); i++ {
		if i%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, set.Warnings(), err
			}
		}
		pick(set.At().Labels(), add)
		if limit > 0 && len(found) >= limit {
			break
		}
	}
	if err := set.Err(); err != nil {
		return nil, set.Warnings(), err
	}
	out := make([]string, 0, len(found))
	for s := range found {
		out = append(out, s)
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, set.Warnings(), nil
}

func (q *scopedQuerier) Close() error { return q.q.Close() }

// nonEmptySeriesSet is a series set without the series that have no sample (in the
// range the set was selected with: the TSDB trims the samples outside).
type nonEmptySeriesSet struct {
	storage.SeriesSet
	it  chunkenc.Iterator
	err error
}

func (s *nonEmptySeriesSet) Next() bool {
	for s.SeriesSet.Next() {
		s.it = s.SeriesSet.At().Iterator(s.it)
		if s.it.Next() != chunkenc.ValNone {
			return true
		}
		if err := s.it.Err(); err != nil {
			s.err = err
			return false
		}
	}
	return false
}

func (s *nonEmptySeriesSet) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.SeriesSet.Err()
}

// queryQueryable is base as the request of the query qs may read it.
func (h *Handler) queryQueryable(r *http.Request, qs string, base storage.Queryable) (storage.Queryable, *apiError) {
	if h.cfg.Scope == nil {
		return base, nil
	}
	named, aerr := h.queryNamespaces(qs)
	if aerr != nil {
		return nil, aerr
	}
	return h.scopedQueryable(r, base, named)
}
