package tsdb

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Agg is an aggregation of raw points: per step, or over a whole range. It is avg, min,
// max, count or a percentile pNN or pNN.N (0 < NN < 100, at most three decimals). The
// zero Agg is none; Aggs are comparable, and equal when they aggregate alike.
type Agg struct {
	op aggOp
	// pm is a percentile's in thousandths of a percent (99.9 is 99900): exact, so that
	// String gives back what ParseAgg read.
	pm uint32
}

type aggOp uint8

const (
	aggNone aggOp = iota
	aggAvg
	aggMin
	aggMax
	aggCount
	aggPercentile
)

// The aggregations with a name, and the percentiles of the history API's default summary.
var (
	AggAvg   = Agg{op: aggAvg}
	AggMin   = Agg{op: aggMin}
	AggMax   = Agg{op: aggMax}
	AggCount = Agg{op: aggCount}
	AggP50   = Agg{op: aggPercentile, pm: 50_000}
	AggP90   = Agg{op: aggPercentile, pm: 90_000}
	AggP95   = Agg{op: aggPercentile, pm: 95_000}
	AggP99   = Agg{op: aggPercentile, pm: 99_000}
)

var aggNames = [...]string{aggAvg: "avg", aggMin: "min", aggMax: "max", aggCount: "count"}

// AggSyntax describes what ParseAgg accepts, for error messages.
const AggSyntax = "avg, min, max, count, or a percentile pNN or pNN.N (0 < NN < 100, at most 3 decimals: p50, p99.9)"

// maxPercentileDecimals bounds a percentile's decimals: p99.999 is the finest.
const maxPercentileDecimals = 3

var errAggSyntax = errors.New("not " + AggSyntax)

// ParseAgg parses an aggregation as Agg.String writes it. A percentile is written
// without leading zeros in its integer part and trailing zeros in its decimals (p5, not
// p05; p99.9, not p99.90), so that one aggregation has one name.
func ParseAgg(s string) (Agg, error) {
	for op, name := range aggNames {
		if name != "" && s == name {
			return Agg{op: aggOp(op)}, nil
		}
	}
	digits, ok := strings.CutPrefix(s, "p")
	if !ok || len(digits) > 2+1+maxPercentileDecimals {
		return Agg{}, errAggSyntax
	}
	intPart, frac, hasFrac := strings.Cut(digits, ".")
	if !isDigits(intPart) || len(intPart) > 2 || (len(intPart) == 2 && intPart[0] == '0') ||
		(intPart == "0" && !hasFrac) {
		return Agg{}, errAggSyntax
	}
	if hasFrac && (!isDigits(frac) || len(frac) > maxPercentileDecimals || frac[len(frac)-1] == '0') {
		return Agg{}, errAggSyntax
	}
	n, _ := strconv.Atoi(intPart) // at most two digits
	pm := uint32(n) * 1000
	for i, scale := 0, uint32(100); i < len(frac); i, scale = i+1, scale/10 {
		pm += uint32(frac[i]-'0') * scale
	}
	if pm == 0 {
		return Agg{}, errAggSyntax // p0.0 is refused above, p0 too: 0 < NN
	}
	return Agg{op: aggPercentile, pm: pm}, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String returns the aggregation's name: "avg", "p95", "p99.9"; "" for none.
func (a Agg) String() string {
	if a.op != aggPercentile {
		if int(a.op) < len(aggNames) {
			return aggNames[a.op]
		}
		return fmt.Sprintf("Agg(%d)", a.op)
	}
	s := "p" + strconv.FormatUint(uint64(a.pm/1000), 10)
	if frac := a.pm % 1000; frac != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%03d", frac), "0")
	}
	return s
}

// Quantile returns a percentile's quantile (0.999 for p99.9), false for another
// aggregation.
func (a Agg) Quantile() (float64, bool) {
	if a.op != aggPercentile {
		return 0, false
	}
	return float64(a.pm) / 100_000, true
}

func (a Agg) valid() bool {
	switch a.op {
	case aggAvg, aggMin, aggMax, aggCount:
		return a.pm == 0
	case aggPercentile:
		return a.pm > 0 && a.pm < 100_000
	}
	return false
}

// Summary aggregates raw points: Values[i] is Aggs[i]'s, NaN when Count is 0 (count's is
// Count). Percentiles interpolate linearly between the closest ranks, as PromQL's
// quantile_over_time does.
type Summary struct {
	Count  int
	Aggs   []Agg
	Values []float64
}

// Get returns the aggregation a of s: Count for AggCount, NaN when s has no a.
func (s Summary) Get(a Agg) float64 {
	if a == AggCount {
		return float64(s.Count)
	}
	if i := slices.Index(s.Aggs, a); i >= 0 {
		return s.Values[i]
	}
	return math.NaN()
}

// Summarize aggregates values with aggs, skipping NaNs, with a plain average. It
// reorders values.
func Summarize(values []float64, aggs []Agg) Summary {
	values = slices.DeleteFunc(values, math.IsNaN)
	if len(values) == 0 {
		return summaryOf(aggs, 0, 0, 0, 0, nil)
	}
	sum := 0.0
	for _, v := range values {
		sum += v
	}
	return summaryOf(aggs, len(values), sum/float64(len(values)), slices.Min(values), slices.Max(values), values)
}

// summaryOf returns the summary aggs of n raw points whose average, minimum and maximum
// are avg, lo and hi; points holds the raw points when aggs has a percentile, and is
// reordered. One or two percentiles are selected in O(n) each, more after one sort.
func summaryOf(aggs []Agg, n int, avg, lo, hi float64, points []float64) Summary {
	s := Summary{Count: n, Aggs: aggs, Values: make([]float64, len(aggs))}
	percentiles := 0
	for i, a := range aggs {
		switch {
		case n == 0:
			s.Values[i] = math.NaN()
		case a == AggAvg:
			s.Values[i] = avg
		case a == AggMin:
			s.Values[i] = lo
		case a == AggMax:
			s.Values[i] = hi
		case a == AggCount:
			s.Values[i] = float64(n)
		case a.op == aggPercentile:
			percentiles++
		}
	}
	if n == 0 || percentiles == 0 {
		return s
	}
	quantile := quantileSelect
	if percentiles > 2 {
		slices.Sort(points)
		quantile = quantileSorted
	}
	for i, a := range aggs {
		if q, ok := a.Quantile(); ok {
			s.Values[i] = quantile(points, q)
		}
	}
	return s
}

// quantileSelect returns what quantileSorted would of values once sorted, reordering
// values partially: O(n) instead of a sort's O(n log n).
func quantileSelect(values []float64, q float64) float64 {
	rank := q * float64(len(values)-1)
	lo := int(math.Floor(rank))
	w := rank - float64(lo)
	v := selectKth(values, lo)
	if w == 0 {
		return v
	}
	next := slices.Min(values[lo+1:]) // values[lo+1:] holds the larger ones
	return v*(1-w) + next*w
}

// selectKth reorders values so that values[k] is the k-th smallest, with no larger one
// before it and no smaller one after it, and returns it (Hoare's quickselect with a
// median-of-three pivot).
func selectKth(values []float64, k int) float64 {
	lo, hi := 0, len(values)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if values[mid] < values[lo] {
			values[mid], values[lo] = values[lo], values[mid]
		}
		if values[hi] < values[lo] {
			values[hi], values[lo] = values[lo], values[hi]
		}
		if values[hi] < values[mid] {
			values[hi], values[mid] = values[mid], values[hi]
		}
		pivot := values[mid]
		i, j := lo, hi
		for i <= j {
			for values[i] < pivot {
				i++
			}
			for values[j] > pivot {
				j--
			}
			if i <= j {
				values[i], values[j] = values[j], values[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return values[k]
		}
	}
	return values[k]
}

// quantileSorted interpolates between the closest ranks of sorted values (not empty).
func quantileSorted(values []float64, q float64) float64 {
	rank := q * float64(len(values)-1)
	lo := math.Floor(rank)
	hi := math.Ceil(rank)
	w := rank - lo
	return values[int(lo)]*(1-w) + values[int(hi)]*w
}
