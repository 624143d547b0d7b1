package promapi

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/hindsight-metrics/hindsight/httpapi/internal/querytime"
)

// timeParam parses the form value name, def when it is absent.
func timeParam(r *http.Request, name string, def, now time.Time) (time.Time, *apiError) {
	v := r.Form.Get(name)
	if v == "" {
		return def, nil
	}
	t, err := querytime.Time(v, now)
	if err != nil {
		return time.Time{}, badParam(name, err)
	}
	return t, nil
}

// timeRange parses start and end, defaulting to all of time.
func timeRange(r *http.Request, now time.Time) (start, end time.Time, _ *apiError) {
	start, aerr := timeParam(r, "start", querytime.MinTime, now)
	if aerr != nil {
		return start, end, aerr
	}
	end, aerr = timeParam(r, "end", querytime.MaxTime, now)
	if aerr != nil {
		return start, end, aerr
	}
	if end.Before(start) {
		return start, end, badParam("end", errors.New("end timestamp must not be before start time"))
	}
	return start, end, nil
}

// limitParam parses limit; 0 (absent) means none.
func limitParam(r *http.Request) (int, *apiError) {
	v := r.Form.Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, badParam("limit", err)
	}
	if n < 0 {
		return 0, badParam("limit", errors.New("limit must be non-negative"))
	}
	return n, nil
}

// hintLimit is the limit passed to storage: one more than asked for, so that truncation
// is noticed.
func hintLimit(limit int) int {
	if limit > 0 && limit < math.MaxInt {
		return limit + 1
	}
	return limit
}

// queryParam returns the query parameter, which must be present and at most
// MaxQueryBytes long.
func queryParam(r *http.Request) (string, *apiError) {
	q := r.Form.Get("query")
	switch {
	case q == "":
		return "", badParam("query", errors.New("no query given"))
	case len(q) > MaxQueryBytes:
		return "", badParam("query", fmt.Errorf("query is %d bytes long, more than %d", len(q), MaxQueryBytes))
	}
	return q, nil
}

// matchersParam parses the match[] parameters; required says whether one at least must
// be given.
func (h *Handler) matchersParam(r *http.Request, required bool) ([][]*labels.Matcher, *apiError) {
	values := r.Form["match[]"]
	switch {
	case len(values) == 0 && required:
		return nil, newError(errorBadData, errors.New("no match[] parameter provided"))
	case len(values) > MaxMatchers:
		return nil, badParam("match[]", fmt.Errorf("%d given, at most %d allowed", len(values), MaxMatchers))
	}
	for _, v := range values {
		if len(v) > MaxQueryBytes {
			return nil, badParam("match[]", fmt.Errorf("a selector is %d bytes long, more than %d", len(v), MaxQueryBytes))
		}
	}
	sets, err := h.parser.ParseMetricSelectors(values)
	if err != nil {
		return nil, badParam("match[]", err)
	}
	for _, set := range sets {
		if !selective(set) {
			return nil, badParam("match[]", errors.New("match[] must contain at least one non-empty matcher"))
		}
	}
	return sets, nil
}

// selective says whether a matcher set rules out some series: one of its matchers at
// least does not match the empty string.
func selective(set []*labels.Matcher) bool {
	for _, m := range set {
		if m != nil && !m.Matches("") {
			return true
		}
	}
	return false
}
