package httpapi

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/hindsight-metrics/hindsight/httpapi/budget"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

func TestParseTime(t *testing.T) {
	now := fuzzNow
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"now", now},
		{"-24h", now.Add(-24 * time.Hour)},
		{"now-7d", now.Add(-7 * 24 * time.Hour)},
		{"now+1h", now.Add(time.Hour)},
		{"-1h30m", now.Add(-90 * time.Minute)},
		{"now-2w", now.Add(-14 * 24 * time.Hour)},
		{"now-1044", now.Add(-1044 * time.Second)},
		{"now-1y", now.Add(-365 * 24 * time.Hour)},
		{"-90s", now.Add(-90 * time.Second)},
		{"now-1", now.Add(-time.Second)},
		{"2026-11-30T00:00:00Z", time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)},
		{"2026-11-30T01:00:00+01:00", time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)},
		{"2026-11-30T00:00:00.25Z", time.Date(2026, 11, 30, 0, 0, 0, 250e6, time.UTC)},
		{"1795996800", time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)},
		{"1795996800.5", time.Date(2026, 11, 30, 0, 0, 0, 500e6, time.UTC)},
		{"0", time.Unix(0, 0)},
	} {
		got, err := parseTime(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseTime(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "yesterday", "now-", "now+", "-", "now-0.29h", "now--1h", "1969-12-31T23:59:59Z",
		"2200-01-01T00:00:00Z", "7258118400", "NaN", "Inf", "2026-11-30", "2026-11-30T00:00:00", "now-300y",
		"-90"} { // a number is Unix seconds, as in Prometheus: -90 is in 1969
		if got, err := parseTime(in, now); err == nil {
			t.Errorf("parseTime(%q) = %s, want an error", in, got)
		}
	}
}

// TestQueryDefaults: without parameters, the last hour at the resolution, CPU and
// memory, avg, every summary, JSON.
func TestQueryDefaults(t *testing.T) {
	now := at(30*time.Minute + 7*time.Second)
	q, err := parseQuery(url.Values{}, "", now, limits{resolution: res, maxPoints: DefaultMaxPoints})
	if err != nil {
		t.Fatal(err)
	}
	if want := at(-30*time.Minute + 0*time.Second); !q.start.Equal(want) {
		t.Errorf("start %s, want %s (an hour before now, aligned down)", q.start, want)
	}
	if want := at(30*time.Minute + 15*time.Second); !q.end.Equal(want) {
		t.Errorf("end %s, want %s (now, aligned up)", q.end, want)
	}
	if q.step != res || q.steps() != 242 {
		t.Errorf("step %s, %d steps; want %s, 242", q.step, q.steps(), res)
	}
	if !slices.Equal(q.resources, []tsdb.Resource{tsdb.ResourceCPU, tsdb.ResourceMemory}) || q.agg != tsdb.AggAvg ||
		!slices.Equal(q.summary, defaultSummary) || q.view != viewSeries || q.format != formatJSON || q.selector != nil || q.by != "" {
		t.Errorf("query %+v", q)
	}
	// Longer ranges take longer nice steps, never below the resolution.
	for _, tc := range []struct {
		start string
		res   time.Duration
		step  time.Duration
	}{
		{"-1h", 15 * time.Second, 15 * time.Second},
		{"-1h", time.Minute, time.Minute},
		{"-6h", 15 * time.Second, 30 * time.Second},
		{"-24h", 15 * time.Second, 2 * time.Minute},
		{"-7d", 15 * time.Second, 15 * time.Minute},
		{"-30d", 15 * time.Second, time.Hour},
	} {
		q, err := parseQuery(url.Values{"start": {tc.start}}, "", now, limits{resolution: tc.res, maxPoints: DefaultMaxPoints})
		if err != nil || q.step != tc.step {
			t.Errorf("start=%s at a %s resolution: step %v, %v; want %s", tc.start, tc.res, q, err, tc.step)
		}
	}
}

// The default summary is frozen (docs/history-api.md): its JSON keys and CSV columns
// never change when an aggregation is added.
func TestDefaultSummaryFrozen(t *testing.T) {
	var got []string
	for _, a := range defaultSummary {
		got = append(got, a.String())
	}
	if want := []string{"avg", "min", "max", "p50", "p90", "p95", "p99", "count"}; !slices.Equal(got, want) {
		t.Errorf("default summary %v, want %v", got, want)
	}
}

// Any percentile is an aggregation, per step and in the summary, in the order asked.
func TestQueryPercentiles(t *testing.T) {
	lim := limits{resolution: res, maxPoints: DefaultMaxPoints}
	q, err := parseQuery(url.Values{"agg": {"p99.9"}, "summary": {"p99.99, count,p5,p99.99,p50"}}, "", fuzzNow, lim)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range q.summary {
		got = append(got, a.String())
	}
	if q.agg.String() != "p99.9" || !slices.Equal(got, []string{"p99.99", "count", "p5", "p50"}) {
		t.Errorf("agg %s, summary %v", q.agg, got)
	}
	for _, bad := range []string{"p0", "p100", "p99.90", "P95", "p1e2"} {
		if _, err := parseQuery(url.Values{"agg": {bad}}, "", fuzzNow, lim); err == nil {
			t.Errorf("agg=%s: no error", bad)
		}
		if _, err := parseQuery(url.Values{"summary": {"avg," + bad}}, "", fuzzNow, lim); err == nil {
			t.Errorf("summary=avg,%s: no error", bad)
		}
	}
}

func TestQueryValues(t *testing.T) {
	lim := limits{resolution: res, maxPoints: DefaultMaxPoints}
	v := url.Values{"resource": {"swap, cpu,cpu"}, "agg": {"p95"}, "summary": {"max,p50,max"}, "view": {"summary"},
		"labelSelector": {"app in (web,db),tier!=x"}, "by": {"pod"}, "step": {"1m"}, "start": {"-1h"}}
	q, err := parseQuery(v, "text/csv", fuzzNow, lim)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(q.resources, []tsdb.Resource{tsdb.ResourceSwap, tsdb.ResourceCPU}) || q.agg != tsdb.AggP95 ||
		!slices.Equal(q.summary, []tsdb.Agg{tsdb.AggMax, tsdb.AggP50}) || q.view != viewSummary || q.format != formatCSV || q.by != "pod" {
		t.Errorf("query %+v", q)
	}
	if q.selector == nil || !q.selector.Matches(labels.Set{"app": "web"}) || q.selector.Matches(labels.Set{"app": "web", "tier": "x"}) {
		t.Errorf("selector %v", q.selector)
	}
	for _, none := range []string{"", "none"} {
		q, err := parseQuery(url.Values{"summary": {none}}, "", fuzzNow, lim)
		if err != nil || len(q.summary) != 0 {
			t.Errorf("summary=%q: %v %v", none, q.summary, err)
		}
	}
}

func TestAcceptsCSV(t *testing.T) {
	for accept, want := range map[string]bool{
		"": false, "*/*": false, "text/csv": true, "TEXT/CSV": true, " text/csv ; q=1": true, "text/plain, text/csv": true,
		"application/json, text/csv": false, "application/*;q=0.5, text/csv": false, "text/csv, application/json": true,
		"application/jsonl, text/csv": true, "text/csvx": false,
	} {
		if got := acceptsCSV(accept); got != want {
			t.Errorf("acceptsCSV(%q) = %v, want %v", accept, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	e := &fakeAuthz{}
	if _, err := New(Config{}); err == nil ||
		!strings.Contains(err.Error(), "Samples is required") || !strings.Contains(err.Error(), "Catalog is required") || !strings.Contains(err.Error(), "Authorizer is required") {
		t.Errorf("New(Config{}): %v", err)
	}
	env := newEnv(t, &fixture{rounds: 1, now: t0})
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.MaxPoints = -1 }, "MaxPoints must not be negative, got -1"},
		{func(c *Config) { c.MaxSeries = -2 }, "MaxSeries must not be negative, got -2"},
		{func(c *Config) { c.Resolution = -time.Second }, "Resolution and QueryTimeout must not be negative"},
		{func(c *Config) { c.QueryTimeout = -time.Second }, "Resolution and QueryTimeout must not be negative"},
	} {
		cfg := env.config()
		cfg.Authorizer = e
		tc.mod(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want %q", err, tc.want)
		}
	}
	cfg := Config{Samples: env.db, Catalog: env.cat, Authorizer: e}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if h.cfg.MaxPoints != DefaultMaxPoints || h.cfg.MaxSeries != DefaultMaxSeries || h.cfg.QueryTimeout != DefaultQueryTimeout ||
		h.cfg.Budget.Size() != budget.DefaultSize() || h.cfg.Resolution != tsdb.DefaultResolution || h.cfg.Now == nil || h.log == nil {
		t.Errorf("defaults: %+v", h.cfg)
	}
}
