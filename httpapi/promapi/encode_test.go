package promapi

import (
	"encoding/json"
	"math"
	"testing"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/util/jsonutil"
)

// prometheusJSON runs one of Prometheus' own encoders (util/jsonutil, what its API uses).
func prometheusJSON(write func(*jsoniter.Stream)) string {
	s := jsoniter.ConfigCompatibleWithStandardLibrary.BorrowStream(nil)
	defer jsoniter.ConfigCompatibleWithStandardLibrary.ReturnStream(s)
	write(s)
	return string(s.Buffer())
}

func TestEncodeLikePrometheus(t *testing.T) {
	floats := []float64{0, 1, -1, 0.25, 1e-6, 9.99e-7, -1e-7, 1e21, 9.99e20, 1e300, 123456789.125, math.Inf(1), math.Inf(-1), math.NaN(), math.SmallestNonzeroFloat64, math.MaxFloat64, math.Copysign(0, -1)}
	for _, f := range floats {
		want := prometheusJSON(func(s *jsoniter.Stream) { jsonutil.MarshalFloat(f, s) })
		if got := string(appendFloat(nil, f)); got != want {
			t.Errorf("float %v: %s, Prometheus %s", f, got, want)
		}
	}
	for _, ts := range []int64{0, 1, 999, 1000, 1001, 1767225600500, -1, -1500, math.MaxInt64, math.MinInt64 + 1} {
		want := prometheusJSON(func(s *jsoniter.Stream) { jsonutil.MarshalTimestamp(ts, s) })
		if got := string(appendTimestamp(nil, ts)); got != want {
			t.Errorf("timestamp %d: %s, Prometheus %s", ts, got, want)
		}
	}
	h := &histogram.FloatHistogram{
		Schema: 0, ZeroThreshold: 0.001, ZeroCount: 2, Count: 12, Sum: 20.5,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 3}},
		PositiveBuckets: []float64{3, 0, 5},
		NegativeSpans:   []histogram.Span{{Offset: 1, Length: 1}},
		NegativeBuckets: []float64{2},
	}
	want := prometheusJSON(func(s *jsoniter.Stream) { jsonutil.MarshalHistogram(h, s) })
	if got := string(appendHistogram(nil, h)); got != want {
		t.Errorf("histogram: %s, Prometheus %s", got, want)
	}
	empty := &histogram.FloatHistogram{}
	want = prometheusJSON(func(s *jsoniter.Stream) { jsonutil.MarshalHistogram(empty, s) })
	if got := string(appendHistogram(nil, empty)); got != want {
		t.Errorf("empty histogram: %s, Prometheus %s", got, want)
	}
}

func TestEncodeResults(t *testing.T) {
	metric := labels.FromStrings("__name__", "x", "a", `q"<&>`)
	hist := &histogram.FloatHistogram{Count: 1, Sum: 2, ZeroCount: 1}
	tests := []struct {
		name string
		data jsonData
		want string
	}{
		{"empty matrix", queryData{promql.Matrix{}}, `{"resultType":"matrix","result":[]}`},
		{"empty vector", queryData{promql.Vector{}}, `{"resultType":"vector","result":[]}`},
		{"matrix", queryData{promql.Matrix{
			{Metric: metric, Floats: []promql.FPoint{{T: 1500, F: 1}, {T: 3000, F: math.NaN()}}},
			{Metric: labels.EmptyLabels(), Histograms: []promql.HPoint{{T: 1, H: hist}}},
		}}, `{"resultType":"matrix","result":[{"metric":{"__name__":"x","a":"q\"\u003c\u0026\u003e"},"values":[[1.500,"1"],[3,"NaN"]]},{"metric":{},"histograms":[[0.001,{"count":"1","sum":"2","buckets":[[3,"-0","0","1"]]}]]}]}`},
		{"vector", queryData{promql.Vector{
			{Metric: labels.FromStrings("a", "b"), T: 2000, F: math.Inf(-1)},
			{Metric: labels.FromStrings("a", "c"), T: 2000, H: hist},
		}}, `{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[2,"-Inf"]},{"metric":{"a":"c"},"histogram":[2,{"count":"1","sum":"2","buckets":[[3,"-0","0","1"]]}]}]}`},
		{"scalar", queryData{promql.Scalar{T: 1500, V: 1e-7}}, `{"resultType":"scalar","result":[1.5,"0.0000001"]}`},
		{"string", queryData{promql.String{T: 1000, V: "a\nb"}}, `{"resultType":"string","result":[1,"a\nb"]}`},
		{"label sets", labelSets{metric, labels.EmptyLabels()}, `[{"__name__":"x","a":"q\"\u003c\u0026\u003e"},{}]`},
		{"no label sets", labelSets{}, `[]`},
		{"strings", stringList{"a", "\u2028"}, `["a","\u2028"]`},
		{"no strings", stringList{}, `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.data.appendJSON(nil)
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("invalid JSON: %s", got)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `"\`, "<script>&", "\x00\x01\x1f\x7f", "\b\f\n\r\t", "é日本\U0001F600", "\xff\xfe", "a\xc3", "\u2028\u2029", "\xed\xa0\x80"} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, encoding/json %s", s, got, want)
		}
	}
}
