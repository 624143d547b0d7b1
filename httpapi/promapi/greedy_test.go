package promapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hindsight-metrics/hindsight/httpapi/budget"
	"github.com/hindsight-metrics/hindsight/internal/testhttp"
)

func queuedBudget(t *testing.T, size, queue int, wait time.Duration) *budget.Budget {
	t.Helper()
	b, err := budget.NewQueued(size, queue, wait)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var greedyRange = url.Values{"query": {"rate(node_cpu_usage_seconds_total[1m])"}, "start": {unix(time.Minute)}, "end": {unix(2 * time.Minute)}, "step": {"15s"}}

// TestBusyAnswers429: with every slot taken and no queue, a query is refused at once with
// 429 and Retry-After.
func TestBusyAnswers429(t *testing.T) {
	bq := newBlockingQueryable(openDB(t))
	h := newHandler(t, bq, func(c *Config) { c.Budget = queuedBudget(t, 1, 0, 0) })
	first, done := testhttp.Serve(h, request(t.Context(), http.MethodGet, prefix+"/query_range", greedyRange))
	close(first.Read) // the first client reads at once
	<-bq.entered      // the only slot is taken
	for _, path := range []string{"/query", "/query_range", "/series", "/labels", "/label/node/values"} {
		form := url.Values{"query": {"1"}, "match[]": {"node_cpu_usage_seconds_total"}}
		for k, v := range greedyRange {
			form[k] = v
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request(t.Context(), http.MethodGet, prefix+path, form))
		want := `{"status":"error","errorType":"unavailable","error":"all 1 query slots (shared with the history API) are taken and 0 more queries wait: try again in 1s"}`
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" || w.Body.String() != want {
			t.Errorf("%s with the slot taken: %d, Retry-After %q, %s; want 429, 1, %s", path, w.Code, w.Header().Get("Retry-After"), w.Body, want)
		}
	}
	close(bq.release)
	<-done
}

// TestSlowReaderFreesSlot: a client reading its response slowly holds no query slot.
func TestSlowReaderFreesSlot(t *testing.T) {
	h := newHandler(t, openDB(t), func(c *Config) { c.Budget = queuedBudget(t, 1, 0, 0) })
	for _, path := range []string{"/query_range", "/series"} {
		form := url.Values{"match[]": {"node_cpu_usage_seconds_total"}}
		if path == "/query_range" {
			form = greedyRange
		}
		slow, done := testhttp.Serve(h, request(t.Context(), http.MethodGet, prefix+path, form))
		<-slow.Started
		if code, body := get(h, prefix+"/query_range", greedyRange); code != http.StatusOK {
			t.Errorf("a query while a slow client reads %s: %d %s, want 200", path, code, body)
		}
		close(slow.Read)
		<-done
		if slow.Code() != http.StatusOK || !strings.HasPrefix(slow.Body(), `{"status":"success"`) {
			t.Errorf("the slow client of %s got %d %s", path, slow.Code(), slow.Body())
		}
	}
}

// TestInFlightAndWriteTimeout: a client that never reads holds its in-flight place only
// until the write timeout; meanwhile a request beyond the limit is refused at once.
func TestInFlightAndWriteTimeout(t *testing.T) {
	h := newHandler(t, openDB(t), func(c *Config) {
		c.InFlight = queuedBudget(t, 1, 0, 0)
		c.WriteTimeout = 50 * time.Millisecond
	})
	slow, done := testhttp.Serve(h, request(t.Context(), http.MethodGet, prefix+"/query_range", greedyRange))
	<-slow.Started
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request(t.Context(), http.MethodGet, prefix+"/query_range", greedyRange))
	want := `{"status":"error","errorType":"unavailable","error":"1 history and Prometheus requests are being served, the most at once: try again in 1s"}`
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" || w.Body.String() != want {
		t.Errorf("beyond the in-flight limit: %d, Retry-After %q, %s; want 429, 1, %s", w.Code, w.Header().Get("Retry-After"), w.Body, want)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still writes to a client that does not read, 10s after a write timeout of 50ms")
	}
	if len(slow.Body()) != 0 {
		t.Errorf("the client that never read got %d bytes", len(slow.Body()))
	}
	if code, body := get(h, prefix+"/query_range", greedyRange); code != http.StatusOK {
		t.Errorf("once the slow client was cut off: %d %s", code, body)
	}
}

// TestListLimit: /series, /labels and /label/<name>/values are cut at ListLimit, with
// Prometheus' warning, when the request gives no limit or a larger one.
func TestListLimit(t *testing.T) {
	h := newHandler(t, openDB(t), func(c *Config) { c.ListLimit = 2 })
	const warning = `"warnings":["results truncated due to limit"]`
	for _, c := range []struct {
		path  string
		form  url.Values
		items int
		cut   bool
	}{
		{"/series", url.Values{"match[]": {`{__name__=~".+"}`}}, 2, true},
		{"/series", url.Values{"match[]": {`{__name__=~".+"}`}, "limit": {"0"}}, 2, true},
		{"/series", url.Values{"match[]": {`{__name__=~".+"}`}, "limit": {"100"}}, 2, true},
		{"/series", url.Values{"match[]": {`{__name__=~".+"}`}, "limit": {"1"}}, 1, true},
		{"/series", url.Values{"match[]": {`node_cpu_usage_seconds_total`}}, 2, false},
		{"/labels", nil, 2, true},
		{"/label/pod/values", nil, 2, false},
		{"/label/__name__/values", nil, 2, true},
	} {
		code, body := get(h, prefix+c.path, c.form)
		resp := decode(t, body)
		var items []any
		if err := json.Unmarshal(resp.Data, &items); err != nil || code != http.StatusOK {
			t.Errorf("%s %v: %d %s", c.path, c.form, code, body)
			continue
		}
		if len(items) != c.items || strings.Contains(string(body), warning) != c.cut {
			t.Errorf("%s %v: %d items, cut %t; want %d, %t: %s", c.path, c.form, len(items), strings.Contains(string(body), warning), c.items, c.cut, body)
		}
	}
}

// TestMaxResponseBytes: a response larger than MaxResponseBytes fails with 422.
func TestMaxResponseBytes(t *testing.T) {
	_, full := get(newHandler(t, openDB(t), nil), prefix+"/query_range", greedyRange)
	for _, c := range []struct {
		max  int
		want int
	}{{len(full), http.StatusOK}, {len(full) - 1, http.StatusUnprocessableEntity}} {
		h := newHandler(t, openDB(t), func(cfg *Config) { cfg.MaxResponseBytes = c.max })
		code, body := get(h, prefix+"/query_range", greedyRange)
		if code != c.want {
			t.Errorf("a %d-byte response with a cap of %d: %d %s, want %d", len(full), c.max, code, body, c.want)
		}
		if c.want != http.StatusOK && !strings.Contains(string(body), "more than the limit of") {
			t.Errorf("over the cap: %s", body)
		}
	}
}
