package promapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// openQuerier is a querier on the request's [start, end] with the request's limit and
// match[], opened in a query slot; done closes it and frees the slot.
type openQuerier struct {
	ctx        context.Context
	q          storage.Querier
	start, end int64 // milliseconds
	limit      int
	sets       [][]*labels.Matcher
	done       func()
}

// open parses the parameters common to series, labels and label values, then takes a
// slot and a querier. The limit is the request's, at most Config.ListLimit, which is
// also the default.
func (h *Handler) open(r *http.Request, matchRequired bool) (*openQuerier, *apiError) {
	limit, aerr := limitParam(r)
	if aerr != nil {
		return nil, aerr
	}
	if limit == 0 || limit > h.cfg.ListLimit {
		limit = h.cfg.ListLimit // cut with a warning past it, as at an asked-for limit
	}
	start, end, aerr := timeRange(r, h.now())
	if aerr != nil {
		return nil, aerr
	}
	sets, aerr := h.matchersParam(r, matchRequired)
	if aerr != nil {
		return nil, aerr
	}
	queryable, aerr := h.queryable(r, namedNamespaces(sets))
	if aerr != nil {
		return nil, aerr
	}
	ctx, cancel, aerr := h.requestContext(r)
	if aerr != nil {
		return nil, aerr
	}
	release, aerr := h.acquire(ctx)
	if aerr != nil {
		cancel()
		return nil, aerr
	}
	mint, maxt := timestamp.FromTime(start), timestamp.FromTime(end)
	q, err := queryable.Querier(mint, maxt)
	if err != nil {
		release()
		cancel()
		return nil, h.storageError(err)
	}
	return &openQuerier{
		ctx: ctx, q: q, start: mint, end: maxt, limit: limit, sets: sets,
		done: func() {
			if err := q.Close(); err != nil {
				h.log.Debug("closing querier", "err", err)
			}
			release()
			cancel()
		},
	}, nil
}

// fail ends an open querier with an error.
func (oq *openQuerier) fail(aerr *apiError, warnings annotations.Annotations) result {
	oq.done()
	return result{err: aerr, warnings: warnings}
}

// labelNames serves the label names of the series that match[] select (all by default).
func (h *Handler) labelNames(r *http.Request) result {
	oq, aerr := h.open(r, false)
	if aerr != nil {
		return result{err: aerr}
	}
	hints := &storage.LabelHints{Limit: hintLimit(oq.limit)}
	names, warnings, err := collect(oq, func(ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return oq.q.LabelNames(oq.ctx, hints, ms...)
	})
	if err != nil {
		return oq.fail(h.storageError(err), warnings)
	}
	return limited(oq, names, warnings)
}

// labelValues serves the values of the label in the path.
func (h *Handler) labelValues(r *http.Request) result {
	name, aerr := labelName(r)
	if aerr != nil {
		return result{err: aerr}
	}
	oq, aerr := h.open(r, false)
	if aerr != nil {
		return result{err: aerr}
	}
	hints := &storage.LabelHints{Limit: hintLimit(oq.limit)}
	values, warnings, err := collect(oq, func(ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return oq.q.LabelValues(oq.ctx, name, hints, ms...)
	})
	if err != nil {
		return oq.fail(h.storageError(err), warnings)
	}
	return limited(oq, values, warnings)
}

// collect calls get for each matcher set (once with none when there is none) and
// returns the union of the names, sorted.
func collect(oq *openQuerier, get func([]*labels.Matcher) ([]string, annotations.Annotations, error)) ([]string, annotations.Annotations, error) {
	var warnings annotations.Annotations
	if len(oq.sets) <= 1 {
		var ms []*labels.Matcher
		if len(oq.sets) == 1 {
			ms = oq.sets[0]
		}
		names, ws, err := get(ms)
		warnings.Merge(ws)
		if err != nil {
			return nil, warnings, err
		}
		names = slices.Clone(names) // the storage may own its slice
		slices.Sort(names)
		return names, warnings, nil
	}
	union := map[string]struct{}{}
	for _, ms := range oq.sets {
		names, ws, err := get(ms)
		warnings.Merge(ws)
		if err != nil {
			return nil, warnings, err
		}
		for _, n := range names {
			union[n] = struct{}{}
		}
	}
	names := make([]string, 0, len(union))
	for n := range union {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, warnings, nil
}

// limited answers names, cut at the limit with a warning.
func limited(oq *openQuerier, names []string, warnings annotations.Annotations) result {
	if names == nil {
		names = []string{}
	}
	if oq.limit > 0 && len(names) > oq.limit {
		names = names[:oq.limit]
		warnings = warnings.Add(errTruncated)
	}
	return result{data: names, warnings: warnings, done: oq.done}
}

// labelName returns the label name of the path, unescaped: chi routes on the escaped
// path when there is one, and names may be written U__-escaped as Prometheus allows.
func labelName(r *http.Request) (string, *apiError) {
	name := chi.URLParam(r, "name")
	if r.URL.RawPath != "" {
		unescaped, err := url.PathUnescape(name)
		if err != nil {
			return "", newError(errorBadData, fmt.Errorf("invalid label name: %q: %w", name, err))
		}
		name = unescaped
	}
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		return "", newError(errorBadData, fmt.Errorf("invalid label name: %q", name))
	}
	return name, nil
}
