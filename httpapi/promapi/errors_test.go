package promapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	promtsdb "github.com/prometheus/prometheus/tsdb"

	"github.com/hindsight-metrics/hindsight/httpapi/budget"
)

func TestBadInput(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	at := unix(5 * time.Minute)
	rangeOf := func(start, end, step string) url.Values {
		return url.Values{"query": {"up"}, "start": {start}, "end": {end}, "step": {step}}
	}
	matchers := make([]string, MaxMatchers+1)
	for i := range matchers {
		matchers[i] = fmt.Sprintf("m%d", i)
	}
	tests := []struct {
		name   string
		path   string
		form   url.Values
		body   string // a raw POST body instead of form, when set
		status int
		typ    string
		msg    string
	}{
		// query
		{"missing query", "/query", nil, "", 400, "bad_data", `invalid parameter "query": no query given`},
		{"bad promql", "/query", url.Values{"query": {"rate(up[5m]"}}, "", 400, "bad_data", `invalid parameter "query": 1:12: parse error: unclosed left parenthesis`},
		{"unknown function", "/query", url.Values{"query": {"nope(up)"}}, "", 400, "bad_data", `invalid parameter "query": 1:1: parse error: unknown function with name "nope"`},
		{"query too long", "/query", url.Values{"query": {strings.Repeat("1", MaxQueryBytes+1)}}, "", 400, "bad_data", `invalid parameter "query": query is 65537 bytes long, more than 65536`},
		{"bad time", "/query", url.Values{"query": {"up"}, "time": {"yesterday"}}, "", 400, "bad_data", `invalid parameter "time": cannot parse "yesterday" to a valid timestamp`},
		{"NaN time", "/query", url.Values{"query": {"up"}, "time": {"NaN"}}, "", 400, "bad_data", `invalid parameter "time": cannot parse "NaN" to a valid timestamp: out of range`},
		{"huge time", "/query", url.Values{"query": {"up"}, "time": {"1e300"}}, "", 400, "bad_data", `invalid parameter "time": cannot parse "1e300" to a valid timestamp: out of range`},
		{"bad timeout", "/query", url.Values{"query": {"up"}, "timeout": {"soon"}}, "", 400, "bad_data", `invalid parameter "timeout": cannot parse "soon" to a valid duration`},
		{"zero timeout", "/query", url.Values{"query": {"up"}, "timeout": {"0s"}}, "", 400, "bad_data", `invalid parameter "timeout": timeout must be positive`},
		{"bad limit", "/query", url.Values{"query": {"up"}, "limit": {"-1"}}, "", 400, "bad_data", `invalid parameter "limit": limit must be non-negative`},
		{"bad lookback", "/query", url.Values{"query": {"up"}, "lookback_delta": {"1x"}}, "", 400, "bad_data", `invalid parameter "lookback_delta": cannot parse "1x" to a valid duration`},
		{"too many samples", "/query", url.Values{"query": {"node_cpu_usage_seconds_total[10m]"}, "time": {at}}, "", 422, "execution", `query processing would load too many samples into memory in query execution`},
		// query_range
		{"missing start", "/query_range", url.Values{"query": {"up"}, "end": {"10"}, "step": {"1"}}, "", 400, "bad_data", `invalid parameter "start": cannot parse "" to a valid timestamp`},
		{"bad end", "/query_range", rangeOf("0", "2026-13-01T00:00:00Z", "1"), "", 400, "bad_data", `invalid parameter "end": cannot parse "2026-13-01T00:00:00Z" to a valid timestamp`},
		{"end before start", "/query_range", rangeOf("10", "5", "1"), "", 400, "bad_data", `invalid parameter "end": end timestamp must not be before start time`},
		{"bad step", "/query_range", rangeOf("0", "10", "often"), "", 400, "bad_data", `invalid parameter "step": cannot parse "often" to a valid duration`},
		{"zero step", "/query_range", rangeOf("0", "10", "0"), "", 400, "bad_data", `invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer`},
		{"negative step", "/query_range", rangeOf("0", "10", "-15"), "", 400, "bad_data", `invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer`},
		{"overflowing step", "/query_range", rangeOf("0", "10", "1e10"), "", 400, "bad_data", `invalid parameter "step": cannot parse "1e10" to a valid duration. It overflows int64`},
		{"too many points", "/query_range", rangeOf("0", "11001", "1"), "", 400, "bad_data", `exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)`},
		{"range vector", "/query_range", url.Values{"query": {"up[5m]"}, "start": {"0"}, "end": {"10"}, "step": {"1"}}, "", 400, "bad_data", `invalid parameter "query": invalid expression type "range vector" for range query, must be Scalar or instant Vector`},
		// series, labels, label values
		{"series without match[]", "/series", nil, "", 400, "bad_data", `no match[] parameter provided`},
		{"bad match[]", "/series", url.Values{"match[]": {`{node=}`}}, "", 400, "bad_data", `invalid parameter "match[]": 1:7: parse error: unexpected "}" in label matching, expected string`},
		{"empty matcher", "/series", url.Values{"match[]": {`{node=""}`}}, "", 400, "bad_data", `invalid parameter "match[]": match[] must contain at least one non-empty matcher`},
		{"too many match[]", "/labels", url.Values{"match[]": matchers}, "", 400, "bad_data", `invalid parameter "match[]": 101 given, at most 100 allowed`},
		{"match[] too long", "/labels", url.Values{"match[]": {strings.Repeat("a", MaxQueryBytes+1)}}, "", 400, "bad_data", `invalid parameter "match[]": a selector is 65537 bytes long, more than 65536`},
		{"bad series start", "/series", url.Values{"match[]": {"up"}, "start": {"x"}}, "", 400, "bad_data", `invalid parameter "start": cannot parse "x" to a valid timestamp`},
		{"bad label name", "/label/%ff/values", nil, "", 400, "bad_data", `invalid label name: "\xff"`},
		{"bad labels limit", "/label/node/values", url.Values{"limit": {"many"}}, "", 400, "bad_data", `invalid parameter "limit": strconv.Atoi: parsing "many": invalid syntax`},
		// the body
		{"body too large", "/query", nil, "query=" + strings.Repeat("1", MaxBodyBytes), 400, "bad_data", `error parsing form values: request body larger than 1048576 bytes`},
		{"bad form", "/query", nil, "query=%zz", 400, "bad_data", `error parsing form values: invalid URL escape "%zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r *http.Request
			if tt.body != "" {
				r = httptest.NewRequestWithContext(t.Context(), http.MethodPost, prefix+tt.path, strings.NewReader(tt.body))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				r = request(t.Context(), http.MethodGet, prefix+tt.path, tt.form)
			}
			h := h
			if tt.typ == "execution" {
				h = newHandler(t, h.cfg.Queryable, func(c *Config) { c.MaxSamples = 10 })
			}
			code, body := serve(h, r)
			if code != tt.status {
				t.Errorf("status %d, want %d", code, tt.status)
			}
			resp := decode(t, body)
			if resp.Status != "error" || resp.ErrorType != tt.typ || resp.Error != tt.msg {
				t.Errorf("got %s %s %q\nwant error %s %q", resp.Status, resp.ErrorType, resp.Error, tt.typ, tt.msg)
			}
		})
	}
}

func TestForbidden(t *testing.T) {
	var calls int
	h := newHandler(t, openDB(t), func(c *Config) {
		c.Authorize = func(r *http.Request) error {
			calls++
			if r.Header.Get("Authorization") == "Bearer good" {
				return nil
			}
			return errors.New(`user "bob" cannot get services/proxy in namespace "kube-system"`)
		}
	})
	paths := []string{"/query", "/query_range", "/series", "/labels", "/label/node/values", "/status/buildinfo", "/status/config", "/nowhere"}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			code, body := get(h, prefix+p, url.Values{"query": {"up"}})
			if code != http.StatusForbidden {
				t.Errorf("status %d, want 403", code)
			}
			checkBody(t, body, `{"status":"error","errorType":"forbidden","error":"user \"bob\" cannot get services/proxy in namespace \"kube-system\""}`)
		})
	}
	if calls != len(paths) {
		t.Errorf("Authorize called %d times, want %d", calls, len(paths))
	}
	r := request(t.Context(), http.MethodGet, prefix+"/status/buildinfo", nil)
	r.Header.Set("Authorization", "Bearer good")
	if code, body := serve(h, r); code != http.StatusOK {
		t.Errorf("authorized: status %d: %s", code, body)
	}
}

func TestTimeout(t *testing.T) {
	db := openDB(t)
	tests := []struct {
		name    string
		timeout time.Duration // Config.Timeout
		form    url.Values
		ctx     func(context.Context) context.Context
		typ     string
	}{
		{"timeout parameter", time.Hour, url.Values{"timeout": {"0.02"}}, nil, "timeout"},
		{"timeout capped by config", 20 * time.Millisecond, url.Values{"timeout": {"1h"}}, nil, "timeout"},
		{"config timeout", 20 * time.Millisecond, nil, nil, "timeout"},
		{"client gone", time.Hour, nil, func(ctx context.Context) context.Context {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx
		}, "canceled"},
	}
	for _, tt := range tests {
		for _, path := range []string{"/query", "/series"} {
			t.Run(tt.name+" "+path, func(t *testing.T) {
				// Select blocks until the context ends: only a timeout ends these requests.
				h := newHandler(t, newBlockingQueryable(db), func(c *Config) { c.Timeout = tt.timeout })
				form := url.Values{"query": {"node_cpu_usage_seconds_total"}, "match[]": {"node_cpu_usage_seconds_total"}}
				for k, v := range tt.form {
					form[k] = v
				}
				ctx := t.Context()
				if tt.ctx != nil {
					ctx = tt.ctx(ctx)
				}
				code, body := serve(h, request(ctx, http.MethodGet, prefix+path, form))
				resp := decode(t, body)
				if code != http.StatusServiceUnavailable || resp.ErrorType != tt.typ {
					t.Errorf("status %d %s, want 503 %s: %s", code, resp.ErrorType, tt.typ, body)
				}
			})
		}
	}
}

func TestConcurrencyLimit(t *testing.T) {
	bq := newBlockingQueryable(openDB(t))
	one, err := budget.New(1)
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, bq, func(c *Config) { c.Budget = one })
	rangeForm := url.Values{"query": {"rate(node_cpu_usage_seconds_total[1m])"}, "start": {unix(time.Minute)}, "end": {unix(2 * time.Minute)}, "step": {"15s"}}

	type answer struct {
		code int
		body []byte
	}
	first := make(chan answer, 1)
	go func() {
		code, body := get(h, prefix+"/query_range", rangeForm)
		first <- answer{code, body}
	}()
	<-bq.entered // the first request holds the only slot, blocked in Select

	for _, path := range []string{"/query", "/labels"} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		code, body := serve(h, request(ctx, http.MethodGet, prefix+path, url.Values{"query": {"1"}}))
		cancel()
		want := `{"status":"error","errorType":"timeout","error":"query timed out in query queue"}`
		if code != http.StatusServiceUnavailable || string(body) != want {
			t.Errorf("%s while the slot is held: %d %s, want 503 %s", path, code, body, want)
		}
	}

	close(bq.release)
	if a := <-first; a.code != http.StatusOK {
		t.Fatalf("first request: %d %s", a.code, a.body)
	}
	if code, body := get(h, prefix+"/query_range", rangeForm); code != http.StatusOK {
		t.Errorf("after the slot was freed: %d %s", code, body)
	}
}

func TestStorageErrors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		typ    string
	}{
		{"configured unavailable", fmt.Errorf("open querier: %w", errClosed), 503, "unavailable"},
		{"tsdb not ready", promtsdb.ErrNotReady, 503, "unavailable"},
		{"other", errors.New("disk on fire"), 422, "execution"},
	}
	for _, tt := range tests {
		for _, path := range []string{"/query", "/series", "/labels"} {
			t.Run(tt.name+" "+path, func(t *testing.T) {
				h := newHandler(t, failingQueryable{tt.err}, func(c *Config) { c.Unavailable = []error{nil, errClosed} })
				code, body := get(h, prefix+path, url.Values{"query": {"up"}, "match[]": {"up"}})
				resp := decode(t, body)
				if code != tt.status || resp.ErrorType != tt.typ || resp.Error != tt.err.Error() {
					t.Errorf("got %d %s %q, want %d %s %q", code, resp.ErrorType, resp.Error, tt.status, tt.typ, tt.err)
				}
			})
		}
	}
}

// TestNilBody serves a hand-made POST without a body, as a caller outside net/http may.
func TestNilBody(t *testing.T) {
	h := newHandler(t, failingQueryable{errClosed}, nil)
	u, _ := url.Parse(prefix + "/query")
	r := (&http.Request{Method: http.MethodPost, URL: u, Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}).WithContext(t.Context())
	code, body := serve(h, r)
	if want := `{"status":"error","errorType":"bad_data","error":"error parsing form values: missing form body"}`; code != http.StatusBadRequest || string(body) != want {
		t.Errorf("got %d %s, want 400 %s", code, body, want)
	}
}
