package tsdb

import (
	"strings"
	"testing"
)

func TestParseAgg(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Agg
		q    float64 // the quantile, for a percentile
	}{
		{in: "avg", want: AggAvg},
		{in: "min", want: AggMin},
		{in: "max", want: AggMax},
		{in: "count", want: AggCount},
		{in: "p50", want: AggP50, q: 0.5},
		{in: "p90", want: AggP90, q: 0.9},
		{in: "p95", want: AggP95, q: 0.95},
		{in: "p99", want: AggP99, q: 0.99},
		{in: "p1", want: Agg{op: aggPercentile, pm: 1000}, q: 0.01},
		{in: "p5", want: Agg{op: aggPercentile, pm: 5000}, q: 0.05},
		{in: "p99.9", want: Agg{op: aggPercentile, pm: 99900}, q: 0.999},
		{in: "p99.99", want: Agg{op: aggPercentile, pm: 99990}, q: 0.9999},
		{in: "p99.999", want: Agg{op: aggPercentile, pm: 99999}, q: 0.99999},
		{in: "p0.5", want: Agg{op: aggPercentile, pm: 500}, q: 0.005},
		{in: "p0.001", want: Agg{op: aggPercentile, pm: 1}, q: 0.00001},
		{in: "p12.34", want: Agg{op: aggPercentile, pm: 12340}, q: 0.1234},
	}
	for _, tc := range tests {
		got, err := ParseAgg(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseAgg(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if s := got.String(); s != tc.in {
			t.Errorf("ParseAgg(%q).String() = %q", tc.in, s)
		}
		q, ok := got.Quantile()
		if ok != (tc.q != 0) || q != tc.q {
			t.Errorf("ParseAgg(%q).Quantile() = %v, %v; want %v", tc.in, q, ok, tc.q)
		}
		if !got.valid() {
			t.Errorf("ParseAgg(%q) is not valid", tc.in)
		}
	}

	for _, in := range []string{
		"", "p", "p0", "p00", "p0.0", "p0.000", "p100", "p100.0", "p101", "p-1", "p+1", "p1e2", "p1e-2", "p99.99.9",
		"P95", "AVG", "Avg", " p95", "p95 ", "p 95", "p05", "p050", "p99.90", "p99.9999", "p99.", "p.9", "p.", "pNaN",
		"pInf", "p9_9", "p٩٩", "p0x10", "mean", "median", "none", "p" + strings.Repeat("9", 1000),
		"p99." + strings.Repeat("9", 1<<16), strings.Repeat("avg", 1000),
	} {
		if got, err := ParseAgg(in); err == nil {
			t.Errorf("ParseAgg(%.40q) = %+v, want an error", in, got)
		}
	}
}

func TestAggStringOfNone(t *testing.T) {
	t.Parallel()
	if s := (Agg{}).String(); s != "" {
		t.Errorf("Agg{}.String() = %q, want empty", s)
	}
	if (Agg{}).valid() {
		t.Error("Agg{} is valid")
	}
}

// FuzzParseAgg: whatever parses prints back to itself, and parses again to the same Agg.
func FuzzParseAgg(f *testing.F) {
	for _, s := range []string{"avg", "min", "max", "count", "p50", "p99.9", "p0.001", "p0", "p100", "p99.90", "P95", "p1e2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAgg(s)
		if err != nil {
			return
		}
		if !a.valid() {
			t.Fatalf("ParseAgg(%q) = %+v, not valid", s, a)
		}
		str := a.String()
		if str != s {
			t.Fatalf("ParseAgg(%q).String() = %q: one aggregation, two names", s, str)
		}
		b, err := ParseAgg(str)
		if err != nil || b != a {
			t.Fatalf("ParseAgg(%q) = %+v, %v; want %+v", str, b, err, a)
		}
		if q, ok := a.Quantile(); ok && (q <= 0 || q >= 1) {
			t.Fatalf("ParseAgg(%q): quantile %v out of (0, 1)", s, q)
		}
	})
}
