package promapi

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// The bounds of time ranges left open (series, labels), those of Prometheus' API: the
// widest that milliseconds since the epoch hold with room to spare.
var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()

	minTimeFormatted = minTime.Format(time.RFC3339Nano)
	maxTimeFormatted = maxTime.Format(time.RFC3339Nano)
)

// parseTime parses a timestamp as Prometheus does: Unix seconds with an optional
// fraction (rounded to the millisecond) or RFC 3339. Unlike Prometheus, it refuses NaN,
// infinities and seconds outside [minTime, maxTime].
func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || f < float64(minTime.Unix()) || f > float64(maxTime.Unix()) {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp: out of range", s)
		}
		sec, frac := math.Modf(f)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	// time.Parse knows four-digit years only; Prometheus clients send these two bounds.
	switch s {
	case minTimeFormatted:
		return minTime, nil
	case maxTimeFormatted:
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration parses a duration as Prometheus does: seconds with an optional fraction,
// or a Prometheus duration such as 1h30m. It refuses NaN and what overflows.
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		ns := f * float64(time.Second)
		if math.IsNaN(ns) || ns >= float64(math.MaxInt64) || ns <= float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ns), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

// timeParam parses the form value name, def when it is absent.
func timeParam(r *http.Request, name string, def time.Time) (time.Time, *apiError) {
	v := r.Form.Get(name)
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, badParam(name, err)
	}
	return t, nil
}

// timeRange parses start and end, defaulting to all of time.
func timeRange(r *http.Request) (start, end time.Time, _ *apiError) {
	start, aerr := timeParam(r, "start", minTime)
	if aerr != nil {
		return start, end, aerr
	}
	end, aerr = timeParam(r, "end", maxTime)
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

// millis is t in milliseconds since the epoch, as the storage counts.
func millis(t time.Time) int64 {
	return t.Unix()*1000 + int64(t.Nanosecond())/int64(time.Millisecond)
}
