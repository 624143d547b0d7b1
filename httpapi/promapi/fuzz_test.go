package promapi

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/util/jsonutil"
)

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"0", "1767225600", "1767225600.123", "-1.5", "1e9", "0x1p30", "NaN", "+Inf", "1e300",
		"2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123456789+02:00", "0000-01-01T00:00:00Z", minTimeFormatted, maxTimeFormatted, "", "now", "1_000"} {
		f.Add(s)
	}
	lo, hi := millis(minTime), millis(maxTime)
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseTime(s)
		if err != nil {
			if !tm.IsZero() {
				t.Errorf("parseTime(%q) failed with a time %v", s, tm)
			}
			return
		}
		ms := millis(tm)
		if ms < lo || ms > hi {
			t.Fatalf("parseTime(%q) = %v, outside [minTime, maxTime]", s, tm)
		}
		// As a client sends it, seconds with up to three decimals; exact while float64
		// holds milliseconds (|seconds| < 1e11, beyond year 5000).
		if math.Abs(float64(tm.Unix())) < 1e11 {
			ms := tm.UnixMilli()
			secs := strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)
			back, err := parseTime(secs)
			if err != nil || back.UnixMilli() != ms {
				t.Errorf("parseTime(%q) = %v; its seconds %s read back as %v, %v", s, tm, secs, back, err)
			}
		}
		if y := tm.Year(); y >= 0 && y <= 9999 {
			rfc := tm.Format(time.RFC3339Nano)
			back, err := parseTime(rfc)
			if err != nil || !back.Equal(tm) {
				t.Errorf("parseTime(%q) = %v; its RFC 3339 %s read back as %v, %v", s, tm, rfc, back, err)
			}
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"15s", "1h30m", "1d", "2w", "1y", "100ms", "0", "0.5", "-15", "1e10", "9.2e9", "NaN", "Inf", "-Inf", "", "5", "1h1h", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err != nil {
			if d != 0 {
				t.Errorf("parseDuration(%q) failed with %v", s, d)
			}
			return
		}
		if fl, ferr := strconv.ParseFloat(s, 64); ferr == nil {
			if (fl > 0 && d < 0) || (fl < 0 && d > 0) {
				t.Errorf("parseDuration(%q) = %v: the sign changed", s, d)
			}
		} else if d < 0 {
			t.Errorf("parseDuration(%q) = %v: a negative Prometheus duration", s, d)
		}
		if d >= 0 && d%time.Millisecond == 0 {
			str := model.Duration(d).String()
			if back, err := parseDuration(str); err != nil || back != d {
				t.Errorf("parseDuration(%q) = %v; as %q it reads back as %v, %v", s, d, str, back, err)
			}
		}
		if d > -1<<62 && d < 1<<62 {
			secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
			back, err := parseDuration(secs)
			if tol := math.Abs(float64(d))/1e12 + 1; err != nil || math.Abs(float64(back-d)) > tol {
				t.Errorf("parseDuration(%q) = %v; as %s seconds it reads back as %v, %v", s, d, secs, back, err)
			}
		}
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\<>&", "\x00\x1f\x7f", "\u2028", "\xff", "日本", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, encoding/json %s", s, got, want)
		}
	})
}

func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 1, 1e-7, 1e21, math.Inf(1), math.NaN(), -123.456} {
		f.Add(v, int64(1767225600123))
	}
	f.Fuzz(func(t *testing.T, v float64, ts int64) {
		if got, want := string(appendFloat(nil, v)), prometheusJSON(func(s *jsoniter.Stream) { jsonutil.MarshalFloat(v, s) }); got != want {
			t.Errorf("appendFloat(%v) = %s, Prometheus %s", v, got, want)
		}
		if ts == math.MinInt64 {
			return // Prometheus' encoder writes garbage for it; ours a number
		}
		if got, want := string(appendTimestamp(nil, ts)), prometheusJSON(func(s *jsoniter.Stream) { jsonutil.MarshalTimestamp(ts, s) }); got != want {
			t.Errorf("appendTimestamp(%d) = %s, Prometheus %s", ts, got, want)
		}
	})
}

// FuzzHandler sends arbitrary parameters to every endpoint: no panic, no 500, and always a
// well-formed envelope.
func FuzzHandler(f *testing.F) {
	paths := []string{"/query", "/query_range", "/series", "/labels", "/label/node/values", "/status/buildinfo", "/x"}
	for i, raw := range []string{
		"query=up", "query=rate(node_cpu_usage_seconds_total[1m])&start=1767225600&end=1767226200&step=15",
		"match[]=node_cpu_usage_seconds_total", "match[]={node=~\"node-.*\"}&limit=1", "", "start=x",
		"query=%zz", "query=sum(rate(x[5m:1s]))&timeout=0.01", "query=1&time=NaN&limit=-1",
	} {
		f.Add(uint8(i), raw, i%2 == 0)
	}
	h := newHandler(f, openDB(f), func(c *Config) { c.Timeout = time.Second; c.MaxSamples = 100_000 })
	f.Fuzz(func(t *testing.T, which uint8, raw string, post bool) {
		path := prefix + paths[int(which)%len(paths)]
		var r *http.Request
		if post {
			r = httptest.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(raw))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			r = httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil)
			r.URL.RawQuery = raw
		}
		code, body := serve(h, r)
		if code == http.StatusInternalServerError {
			t.Fatalf("500 for %s %q: %s", path, raw, body)
		}
		var resp response
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatalf("%s %q: body %q: %v", path, raw, body, err)
		}
		switch {
		case code == http.StatusOK && resp.Status == "success" && len(resp.Data) > 0:
		case code != http.StatusOK && resp.Status == "error" && resp.ErrorType != "" && resp.Error != "":
		default:
			t.Fatalf("%s %q: status %d with %s", path, raw, code, body)
		}
	})
}
