package promapi

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// The JSON encoding of results, that of Prometheus' API (web/api/v1/json_codec.go and
// util/jsonutil), written by hand as Prometheus does rather than through reflection.

// jsonData is the data of a success response.
type jsonData interface {
	appendJSON(b []byte) []byte
}

// queryData is the data of query and query_range: {"resultType":...,"result":...}.
type queryData struct{ value parser.Value }

func (d queryData) appendJSON(b []byte) []byte {
	b = append(b, `{"resultType":`...)
	b = appendString(b, string(d.value.Type()))
	b = append(b, `,"result":`...)
	switch v := d.value.(type) {
	case promql.Matrix:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendSeries(b, s)
		}
		b = append(b, ']')
	case promql.Vector:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendSample(b, s)
		}
		b = append(b, ']')
	case promql.Scalar:
		// Prometheus encodes a scalar or a string through encoding/json: its time as a
		// float, its value with 'f' always, unlike samples.
		b = append(b, '[')
		b = appendSeconds(b, v.T)
		b = append(b, ',', '"')
		b = strconv.AppendFloat(b, v.V, 'f', -1, 64)
		b = append(b, '"', ']')
	case promql.String:
		b = append(b, '[')
		b = appendSeconds(b, v.T)
		b = append(b, ',')
		b = appendString(b, v.V)
		b = append(b, ']')
	default:
		// The engine returns only the four types above; null rather than a panic.
		b = append(b, `null`...)
	}
	return append(b, '}')
}

// labelSets is the data of series: a list of label sets.
type labelSets []labels.Labels

func (d labelSets) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i, l := range d {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendLabels(b, l)
	}
	return append(b, ']')
}

// stringList is the data of labels and label values: a list of strings, [] when empty.
type stringList []string

func (d stringList) appendJSON(b []byte) []byte { return appendStrings(b, d) }

// rawJSON is data written as is.
type rawJSON string

func (d rawJSON) appendJSON(b []byte) []byte { return append(b, d...) }

// buildInfo is the data of status/buildinfo.
type buildInfo struct {
	version, revision, goVersion string
}

func (d buildInfo) appendJSON(b []byte) []byte {
	b = append(b, `{"version":`...)
	b = appendString(b, d.version)
	b = append(b, `,"revision":`...)
	b = appendString(b, d.revision)
	b = append(b, `,"branch":"","buildUser":"","buildDate":"","goVersion":`...)
	b = appendString(b, d.goVersion)
	return append(b, '}')
}

// appendSeries writes {"metric":{...},"values":[[t,"v"],...],"histograms":[[t,{...}],...]},
// each list left out when empty.
func appendSeries(b []byte, s promql.Series) []byte {
	b = append(b, `{"metric":`...)
	b = appendLabels(b, s.Metric)
	if len(s.Floats) > 0 {
		b = append(b, `,"values":[`...)
		for i, p := range s.Floats {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = appendTimestamp(b, p.T)
			b = append(b, ',')
			b = appendFloat(b, p.F)
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	if len(s.Histograms) > 0 {
		b = append(b, `,"histograms":[`...)
		for i, p := range s.Histograms {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = appendTimestamp(b, p.T)
			b = append(b, ',')
			b = appendHistogram(b, p.H)
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendSample writes {"metric":{...},"value":[t,"v"]} or, for a histogram,
// {"metric":{...},"histogram":[t,{...}]}.
func appendSample(b []byte, s promql.Sample) []byte {
	b = append(b, `{"metric":`...)
	b = appendLabels(b, s.Metric)
	if s.H == nil {
		b = append(b, `,"value":[`...)
	} else {
		b = append(b, `,"histogram":[`...)
	}
	b = appendTimestamp(b, s.T)
	b = append(b, ',')
	if s.H == nil {
		b = appendFloat(b, s.F)
	} else {
		b = appendHistogram(b, s.H)
	}
	return append(b, ']', '}')
}

// appendHistogram writes {"count":"c","sum":"s","buckets":[[boundaries,"lower","upper",
// "count"],...]}, empty buckets left out, boundaries 0 for (l,u], 1 for [l,u), 2 for (l,u)
// and 3 for [l,u].
func appendHistogram(b []byte, h *histogram.FloatHistogram) []byte {
	b = append(b, `{"count":`...)
	b = appendFloat(b, h.Count)
	b = append(b, `,"sum":`...)
	b = appendFloat(b, h.Sum)
	found := false
	for it := h.AllBucketIterator(); it.Next(); {
		bucket := it.At()
		if bucket.Count == 0 {
			continue
		}
		if found {
			b = append(b, ',')
		} else {
			b = append(b, `,"buckets":[`...)
			found = true
		}
		boundaries := 2
		switch {
		case bucket.LowerInclusive && bucket.UpperInclusive:
			boundaries = 3
		case bucket.LowerInclusive:
			boundaries = 1
		case bucket.UpperInclusive:
			boundaries = 0
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(boundaries), 10)
		b = append(b, ',')
		b = appendFloat(b, bucket.Lower)
		b = append(b, ',')
		b = appendFloat(b, bucket.Upper)
		b = append(b, ',')
		b = appendFloat(b, bucket.Count)
		b = append(b, ']')
	}
	if found {
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendLabels writes a label set as an object, in the set's (sorted) order.
func appendLabels(b []byte, l labels.Labels) []byte {
	b = append(b, '{')
	first := true
	l.Range(func(lb labels.Label) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, lb.Name)
		b = append(b, ':')
		b = appendString(b, lb.Value)
	})
	return append(b, '}')
}

// appendStrings writes a list of strings, [] when there are none.
func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendTimestamp writes milliseconds as seconds with up to three decimals, exactly.
func appendTimestamp(b []byte, t int64) []byte {
	u := uint64(t)
	if t < 0 {
		b = append(b, '-')
		u = -u // two's complement: right for math.MinInt64 too
	}
	b = strconv.AppendUint(b, u/1000, 10)
	if frac := u % 1000; frac != 0 {
		b = append(b, '.')
		if frac < 100 {
			b = append(b, '0')
		}
		if frac < 10 {
			b = append(b, '0')
		}
		b = strconv.AppendUint(b, frac, 10)
	}
	return b
}

// appendSeconds writes milliseconds as encoding/json writes float64(t)/1000.
func appendSeconds(b []byte, t int64) []byte {
	j, err := json.Marshal(float64(t) / 1000)
	if err != nil { // cannot happen: a finite float
		return appendTimestamp(b, t)
	}
	return append(b, j...)
}

// appendFloat writes a sample value as a JSON string, as Prometheus does: the shortest
// decimal that reads back the same, in exponent form below 1e-6 and from 1e21, and
// "+Inf", "-Inf" or "NaN".
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = append(b, '"')
	b = strconv.AppendFloat(b, f, format, -1, 64)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string, byte for byte as encoding/json does (HTML
// characters escaped, invalid UTF-8 replaced by U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
