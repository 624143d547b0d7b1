package promapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/prometheus/storage"

	"github.com/hindsight-metrics/hindsight/httpapi/internal/querytime"
)

// Downsampled storage: query and query_range take Thanos' max_source_resolution.
//
//	max_source_resolution=raw (or 0s, or none given)  the raw samples only, as Prometheus
//	max_source_resolution=5m, 1h or any duration        tiers whose resolution is at most it
//	max_source_resolution=auto                           tiers of at most a fifth of the step
//
// Config.Downsampled decides what each selector reads (tsdb.DB.DownsampledQueryable). A
// tier's points are a resolution apart, so the lookback of instant selectors grows to the
// coarsest resolution the query allows, as Thanos' dynamic lookback does: a query that
// allows the 1h tier looks back an hour for the latest point. A server with its tiers off
// serves every value from the raw samples.

// sourceParamName is the parameter's name, Thanos'.
const sourceParamName = "max_source_resolution"

// Downsampler is storage with downsampled tiers: tsdb.DB.
type Downsampler interface {
	// Resolutions returns the tiers' resolutions, finest first.
	Resolutions() []time.Duration
	// DownsampledQueryable returns the storage a query reads that allows tiers of
	// resolution at most maxRes, or with auto of at most a fifth of its step.
	DownsampledQueryable(maxRes time.Duration, auto bool) storage.Queryable
}

// querySource is what a query reads, and the least lookback its instant selectors need.
type querySource struct {
	queryable storage.Queryable
	lookback  time.Duration
}

// sourceParam reads max_source_resolution for a query of step (0 for an instant query).
func (h *Handler) sourceParam(r *http.Request, step time.Duration) (querySource, *apiError) {
	v := r.Form.Get(sourceParamName)
	var maxRes time.Duration
	auto := false
	switch v {
	case "", "raw":
	case "auto":
		auto = true
		maxRes = step / 5 // an instant query's instant selectors read raw samples
	default:
		d, err := querytime.Duration(v)
		if err != nil {
			return querySource{}, badParam(sourceParamName, fmt.Errorf("%w: want raw, auto or a duration such as 5m or 1h", err))
		}
		if d < 0 {
			return querySource{}, badParam(sourceParamName, errors.New("a negative resolution"))
		}
		maxRes = d
	}
	if h.cfg.Downsampled == nil || maxRes <= 0 && !auto {
		return querySource{queryable: h.cfg.Queryable}, nil
	}
	var lookback time.Duration
	for _, res := range h.cfg.Downsampled.Resolutions() {
		if res <= maxRes {
			lookback = res
		}
	}
	return querySource{queryable: h.cfg.Downsampled.DownsampledQueryable(maxRes, auto), lookback: lookback}, nil
}
