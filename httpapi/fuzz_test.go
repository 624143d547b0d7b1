package httpapi

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fuzzNow is the clock of the fuzz tests.
var fuzzNow = time.Date(2026, 11, 30, 12, 34, 56, 789_000_000, time.UTC)

// checkParamError fails unless err is one of the package's errors with a message.
func checkParamError(t *testing.T, err error) {
	t.Helper()
	var ae *apiError
	var le *limitError
	switch {
	case errors.As(err, &ae):
		// A parameter without a name (?=x) is unknown, and named "".
		if ae.msg == "" || ae.status != 400 || !strings.HasPrefix(ae.msg, ae.param+": ") ||
			ae.param == "" && !strings.HasPrefix(ae.msg, ": unknown parameter") {
			t.Fatalf("apiError %+v: want a 400 naming its parameter", ae)
		}
	case errors.As(err, &le):
		if le.msg == "" || !strings.Contains(le.msg, "--history-max-points") {
			t.Fatalf("limitError %q: want a message naming the flag", le.msg)
		}
	default:
		t.Fatalf("error %T %v: want *apiError or *limitError", err, err)
	}
}

var suggested = regexp.MustCompile(`use a step of at least (\S+)$`)

func FuzzParseQuery(f *testing.F) {
	// Each input is up to six name=value pairs (separated by \n), an Accept header and
	// the points limit.
	for _, seed := range []struct {
		pairs, accept string
		maxPoints     uint16
	}{
		{"", "", 11000},
		{"start=-1h\nstep=15s", "text/csv", 11000},
		{"start=2026-11-30T00:00:00Z\nend=2026-11-30T00:20:00Z\nstep=5m", "", 11000},
		{"start=-30d\nstep=1s", "", 11000},
		{"start=-30d\nstep=1s", "", 3},
		{"start=-30d", "", 2},
		{"start=-300w", "", 11000},
		{"start=0\nend=7258118399", "", 11000},
		{"start=0\nend=7258118399\nstep=1s", "", 11000},
		{"start=0\nend=1\nstep=3650d", "", 11000},
		{"end=0", "", 11000},
		{"start=now\nend=-1h", "", 11000},
		{"step=0.5", "", 11000},
		{"step=1500ms", "", 11000},
		{"resource=cpu, memory,swap\nagg=p99\nsummary=none\nview=summary\nformat=csv", "", 11000},
		{"resource=,\nsummary=", "", 11000},
		{"summary=p50,p50,count", "", 11000},
		{"labelSelector=app in (a,b),!x,y!=z", "", 11000},
		{"labelSelector=!!!", "", 11000},
		{"labelSelector=  ", "", 11000},
		{"by=pod\nbogus=1", "", 11000},
		{"step=1m\nstep=2m", "", 11000},
		{"format=xml", "application/json, text/csv", 11000},
		{"agg=", "", 1},
		{"start=-30d\nstep=1h\nresolution=5m", "", 11000},
		{"start=-30d\nstep=7m\nresolution=1h", "", 11000},
		{"resolution=raw\nresolution=auto", "", 11000},
		{"resolution=5M", "", 11000},
	} {
		f.Add(seed.pairs, seed.accept, seed.maxPoints)
	}
	f.Fuzz(func(t *testing.T, pairs, accept string, maxPoints uint16) {
		v := url.Values{}
		for i, p := range strings.SplitN(pairs, "\n", 7) {
			if i == 6 {
				break
			}
			name, value, _ := strings.Cut(p, "=")
			v.Add(name, value)
		}
		lim := limits{resolution: 15 * time.Second, maxPoints: int(maxPoints)}
		q, err := parseQuery(v, accept, fuzzNow, lim)
		if err != nil {
			checkParamError(t, err)
			// Without a step, the default step keeps the grid within the limit, so a
			// request that names no step is never refused for its points.
			var le *limitError
			if _, given := v[paramStep]; !given && lim.maxPoints >= 3 && errors.As(err, &le) {
				t.Fatalf("no step given, max %d points: %v", lim.maxPoints, err)
			}
			// The step that a refusal for too many points names is accepted.
			if m := suggested.FindStringSubmatch(err.Error()); m != nil && lim.maxPoints >= 3 {
				v.Set(paramStep, m[1])
				if q, err := parseQuery(v, accept, fuzzNow, lim); err != nil && errors.As(err, &le) {
					t.Fatalf("the suggested step %s is refused: %v", m[1], err)
				} else if err == nil && q.steps() > lim.maxPoints {
					t.Fatalf("the suggested step %s gives %d points", m[1], q.steps())
				}
			}
			return
		}
		if !q.start.Before(q.end) {
			t.Fatalf("start %s not before end %s", q.start, q.end)
		}
		if q.step < time.Second || q.step%time.Second != 0 {
			t.Fatalf("step %s", q.step)
		}
		if n := q.steps(); n > lim.maxPoints || n < 2 {
			t.Fatalf("%d steps, limit %d", n, lim.maxPoints)
		}
		if !q.start.Equal(alignDown(q.start, q.step)) || !q.at(q.steps()-1).Equal(q.end) {
			t.Fatalf("grid %s..%s every %s is not aligned", q.start, q.end, q.step)
		}
		// A forced tier gets a grid its windows tile, which Range requires.
		if tr, ok := q.source.Tier(); ok && (q.step%tr.Resolution() != 0 || q.start.UnixMilli()%tr.Resolution().Milliseconds() != 0) {
			t.Fatalf("resolution %s with step %s from %s", tr, q.step, q.start)
		}
		if len(q.resources) == 0 || q.agg.String() == "" || (q.view != viewSeries && q.view != viewSummary) ||
			(q.format != formatJSON && q.format != formatCSV) || (q.by != "" && q.by != "pod") {
			t.Fatalf("query %+v", q)
		}
		// The default step aims at targetPoints (one more for the alignment).
		if _, given := v[paramStep]; !given && q.steps() > targetPoints+1 {
			t.Fatalf("default step %s over %s: %d steps", q.step, q.end.Sub(q.start), q.steps())
		}
	})
}

// TestParseQueryDefaultStepWithinLimit: a request without a step is never refused for
// its points, whatever the range and the limit.
func TestParseQueryDefaultStepWithinLimit(t *testing.T) {
	for _, maxPoints := range []int{3, 10, 100, 1000, 1002, 11000} {
		for _, start := range []string{"-1h", "-24h", "-7d", "-30d", "-520w", "0"} {
			v := url.Values{"start": {start}}
			q, err := parseQuery(v, "", fuzzNow, limits{resolution: 15 * time.Second, maxPoints: maxPoints})
			if err != nil {
				t.Errorf("max %d points, start=%s: %v", maxPoints, start, err)
				continue
			}
			if q.steps() > maxPoints {
				t.Errorf("max %d points, start=%s: %d steps", maxPoints, start, q.steps())
			}
		}
	}
}
