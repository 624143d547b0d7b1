package promapi

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/prometheus/promql"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/hindsight-metrics/hindsight/httpapi/internal/querytime"
)

// errTooManyPoints is Prometheus' own error for a range query with too many steps.
var errTooManyPoints = errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")

// query serves an instant query.
func (h *Handler) query(r *http.Request) result {
	qs, aerr := queryParam(r)
	if aerr != nil {
		return result{err: aerr}
	}
	now := h.now()
	ts, aerr := timeParam(r, "time", now, now)
	if aerr != nil {
		return result{err: aerr}
	}
	src, aerr := h.sourceParam(r, 0)
	if aerr != nil {
		return result{err: aerr}
	}
	q, aerr := h.queryQueryable(r, qs, src.queryable)
	if aerr != nil {
		return result{err: aerr}
	}
	return h.runQuery(r, qs, src.lookback, func(ctx context.Context, opts promql.QueryOpts) (promql.Query, error) {
		return h.engine.NewInstantQuery(ctx, q, opts, qs, ts)
	})
}

// queryRange serves a range query.
func (h *Handler) queryRange(r *http.Request) result {
	qs, aerr := queryParam(r)
	if aerr != nil {
		return result{err: aerr}
	}
	now := h.now()
	start, err := querytime.Time(r.Form.Get("start"), now)
	if err != nil {
		return result{err: badParam("start", err)}
	}
	end, err := querytime.Time(r.Form.Get("end"), now)
	if err != nil {
		return result{err: badParam("end", err)}
	}
	if end.Before(start) {
		return result{err: badParam("end", errors.New("end timestamp must not be before start time"))}
	}
	step, err := querytime.Duration(r.Form.Get("step"))
	if err != nil {
		return result{err: badParam("step", err)}
	}
	if step <= 0 {
		return result{err: badParam("step", errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"))}
	}
	if end.Sub(start)/step > MaxPoints {
		return result{err: newError(errorBadData, errTooManyPoints)}
	}
	src, aerr := h.sourceParam(r, step)
	if aerr != nil {
		return result{err: aerr}
	}
	q, aerr := h.queryQueryable(r, qs, src.queryable)
	if aerr != nil {
		return result{err: aerr}
	}
	return h.runQuery(r, qs, src.lookback, func(ctx context.Context, opts promql.QueryOpts) (promql.Query, error) {
		return h.engine.NewRangeQuery(ctx, q, opts, qs, start, end, step)
	})
}

// runQuery checks the parameters common to both queries, creates the query, waits for a
// slot and runs it. The result holds the query and the slot until it is written. The
// lookback is at least minLookback.
func (h *Handler) runQuery(r *http.Request, qs string, minLookback time.Duration, newQuery func(context.Context, promql.QueryOpts) (promql.Query, error)) result {
	limit, aerr := limitParam(r)
	if aerr != nil {
		return result{err: aerr}
	}
	var lookback time.Duration
	if v := r.Form.Get("lookback_delta"); v != "" {
		d, err := querytime.Duration(v)
		if err != nil {
			return result{err: badParam("lookback_delta", err)}
		}
		lookback = d
	}
	if minLookback > cmp.Or(lookback, h.cfg.LookbackDelta) {
		lookback = minLookback
	}
	ctx, cancel, aerr := h.requestContext(r)
	if aerr != nil {
		return result{err: aerr}
	}
	defer cancel()

	qry, err := newQuery(ctx, promql.NewPrometheusQueryOpts(false, lookback))
	if err != nil {
		return result{err: badParam("query", err)}
	}
	release, aerr := h.acquire(ctx)
	if aerr != nil {
		qry.Close()
		return result{err: aerr}
	}
	done := func() { qry.Close(); release() }
	res := qry.Exec(ctx)
	if res.Err != nil {
		done()
		return result{err: h.storageError(res.Err), query: qs}
	}
	warnings := res.Warnings
	if limit > 0 && truncate(res, limit) {
		warnings = warnings.Add(errTruncated)
	}
	return result{data: &v1.QueryData{ResultType: res.Value.Type(), Result: res.Value}, warnings: warnings, query: qs, done: done}
}

// errTruncated is Prometheus' warning for a result cut at limit.
var errTruncated = errors.New("results truncated due to limit")

// truncate cuts a vector or matrix result to limit series and says whether it did.
func truncate(res *promql.Result, limit int) bool {
	switch v := res.Value.(type) {
	case promql.Matrix:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	case promql.Vector:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	}
	return false
}
