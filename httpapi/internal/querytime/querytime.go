// Package querytime parses the times and durations of query parameters, for the history
// API and the Prometheus-compatible API alike: Prometheus' syntax (web/api/v1), plus
// "now" and times relative to now.
//
// Times are RFC 3339 or Unix seconds with a fraction, kept to the millisecond (the
// storage's unit), between MinTime and MaxTime, Prometheus' bounds (the widest that
// milliseconds since the epoch hold with room to spare); durations are Prometheus
// durations (model.ParseDuration: 90s, 1h30m, 7d) or seconds with a fraction, kept to
// the millisecond, within what a time.Duration holds. Errors are worded as Prometheus
// words them.
package querytime

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// MinTime and MaxTime bound the times Time accepts: Prometheus' defaults of a range left
// open.
var (
	MinTime = v1.MinTime
	MaxTime = v1.MaxTime

	minTimeFormatted = MinTime.Format(time.RFC3339Nano)
	maxTimeFormatted = MaxTime.Format(time.RFC3339Nano)
)

// Time parses s as Unix seconds with an optional fraction (rounded to the millisecond),
// RFC 3339, "now", or a time relative to now: "-24h", "now-7d", "now+1h30m", "now-90",
// whose duration is one Duration parses, unsigned. A bare number is Unix seconds even
// when negative, as in Prometheus: "-90" is in 1969, "-90s" 90 seconds ago.
func Time(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "now":
		return now, nil
	case s == minTimeFormatted:
		// time.Parse knows four-digit years only; Prometheus clients send these two bounds.
		return MinTime, nil
	case s == maxTimeFormatted:
		return MaxTime, nil
	case strings.HasPrefix(s, "now-"), strings.HasPrefix(s, "now+"), strings.HasPrefix(s, "-") && !isNumber(s):
		rel := strings.TrimPrefix(s, "now")
		if strings.HasPrefix(rel[1:], "-") || strings.HasPrefix(rel[1:], "+") {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
		}
		d, err := Duration(rel[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp: %w", s, err)
		}
		if rel[0] == '-' {
			d = -d
		}
		t := now.Add(d)
		if t.Before(MinTime) || t.After(MaxTime) {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp: out of range", s)
		}
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || f < float64(MinTime.Unix()) || f > float64(MaxTime.Unix()) {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp: out of range", s)
		}
		sec, frac := math.Modf(f)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.Before(MinTime) || t.After(MaxTime) {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp: out of range", s)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// isNumber says whether s is a number of seconds, "-1.5" for instance, rather than a
// relative time.
func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// Duration parses s as seconds with an optional fraction and sign (rounded to the
// millisecond), or as a Prometheus duration ("90s", "15m", "1h30m", "7d", "2w"; the units
// ms, s, m, h, d, w, y, largest first), so that a step copied from a PromQL query or a
// Grafana panel means the same in every API. It refuses NaN and what overflows.
func Duration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		ms := math.Round(f * 1e3)
		if math.IsNaN(ms) || ms >= float64(math.MaxInt64/int64(time.Millisecond)) || ms <= float64(math.MinInt64/int64(time.Millisecond)) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}
