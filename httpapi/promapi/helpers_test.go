package promapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	promtsdb "github.com/prometheus/prometheus/tsdb"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current responses")

const prefix = "/prometheus/api/v1"

// t0 is the time of the fixture's first samples; they follow every 15s for 10 minutes.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	fixtureStep    = 15 * time.Second
	fixtureSamples = 41 // t0 .. t0+10m
)

// fixtureSeries are the fixture's series: counters grow by rate*15 every 15s, gauges by
// slope every 15s.
var fixtureSeries = []struct {
	lbls         labels.Labels
	start, slope float64
}{
	{labels.FromStrings("__name__", "node_cpu_usage_seconds_total", "node", "node-a"), 1000, 0.25 * 15},
	{labels.FromStrings("__name__", "node_cpu_usage_seconds_total", "node", "node-b"), 5000, 1.5 * 15},
	{labels.FromStrings("__name__", "node_memory_working_set_bytes", "node", "node-a"), 1 << 30, 0},
	{labels.FromStrings("__name__", "node_memory_working_set_bytes", "node", "node-b"), 3 << 30, 1 << 20},
	{labels.FromStrings("__name__", "container_cpu_usage_seconds_total", "node", "node-a", "namespace", "default", "pod", "web-0", "container", "app", "uid", "uid-web-0"), 10, 0.1 * 15},
	{labels.FromStrings("__name__", "container_cpu_usage_seconds_total", "node", "node-b", "namespace", "db", "pod", "pg-0", "container", "postgres", "uid", "uid-pg-0"), 100, 0.5 * 15},
	{labels.FromStrings("__name__", "container_memory_working_set_bytes", "node", "node-a", "namespace", "default", "pod", "web-0", "container", "app", "uid", "uid-web-0"), 256 << 20, 0},
	{labels.FromStrings("__name__", "container_memory_working_set_bytes", "node", "node-b", "namespace", "db", "pod", "pg-0", "container", "postgres", "uid", "uid-pg-0"), 512 << 20, 0},
}

// openDB opens a Prometheus TSDB in a temporary directory with the fixture's samples.
func openDB(t testing.TB) *promtsdb.DB {
	t.Helper()
	db, err := promtsdb.Open(t.TempDir(), nil, nil, promtsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatalf("open tsdb: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close tsdb: %v", err)
		}
	})
	app := db.Appender(context.Background())
	for i := range fixtureSamples {
		ts := t0.Add(time.Duration(i) * fixtureStep).UnixMilli()
		for _, s := range fixtureSeries {
			if _, err := app.Append(0, s.lbls, ts, s.start+float64(i)*s.slope); err != nil {
				t.Fatalf("append %s: %v", s.lbls, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return db
}

// allow is an Authorize that lets everything through.
func allow(*http.Request) error { return nil }

// newHandler returns a handler over q with the test's defaults, changed by edit.
func newHandler(t testing.TB, q storage.Queryable, edit func(*Config)) *Handler {
	t.Helper()
	cfg := Config{Prefix: prefix, Queryable: q, Authorize: allow, Version: "test-1.2.3", Revision: "abc"}
	if edit != nil {
		edit(&cfg)
	}
	h, err := New(cfg, testlog.New(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.now = func() time.Time { return t0.Add(5 * time.Minute) }
	return h
}

// request builds a request: a GET with form in the URL, or a POST with form as a
// form-encoded body.
func request(ctx context.Context, method, path string, form url.Values) *http.Request {
	var r *http.Request
	if method == http.MethodPost {
		r = httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		target := path
		if len(form) > 0 {
			target += "?" + form.Encode()
		}
		r = httptest.NewRequestWithContext(ctx, method, target, nil)
	}
	return r
}

// serve runs r through h and returns the status code and the body.
func serve(h http.Handler, r *http.Request) (int, []byte) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

// get serves a GET of path with form.
func get(h http.Handler, path string, form url.Values) (int, []byte) {
	return serve(h, request(context.Background(), http.MethodGet, path, form))
}

// response is a decoded API response.
type response struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
	Infos     []string        `json:"infos"`
}

func decode(t testing.TB, body []byte) response {
	t.Helper()
	var r response
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return r
}

// checkGolden compares the indented body with testdata/<name>.golden.json, or rewrites
// the file under -update.
func checkGolden(t *testing.T, name string, body []byte) {
	t.Helper()
	var indented bytes.Buffer
	if err := json.Indent(&indented, body, "", "  "); err != nil {
		t.Fatalf("indent %s: %v", body, err)
	}
	indented.WriteByte('\n')
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, indented.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./httpapi/promapi -update to create it)", err)
	}
	if !bytes.Equal(indented.Bytes(), want) {
		t.Errorf("response differs from %s (run with -update to accept):\ngot:\n%s\nwant:\n%s", path, indented.Bytes(), want)
	}
}

// blockingQueryable wraps a Queryable whose Select waits until release is closed or its
// context ends; entered receives a value each time a Select starts waiting.
type blockingQueryable struct {
	storage.Queryable
	entered chan struct{}
	release chan struct{}
}

func newBlockingQueryable(q storage.Queryable) *blockingQueryable {
	return &blockingQueryable{Queryable: q, entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (b *blockingQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := b.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &blockingQuerier{Querier: q, b: b}, nil
}

type blockingQuerier struct {
	storage.Querier
	b *blockingQueryable
}

func (q *blockingQuerier) Select(ctx context.Context, sorted bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	q.b.entered <- struct{}{}
	select {
	case <-q.b.release:
		return q.Querier.Select(ctx, sorted, hints, ms...)
	case <-ctx.Done():
		return storage.ErrSeriesSet(ctx.Err())
	}
}

// failingQueryable fails every Querier with err.
type failingQueryable struct{ err error }

func (f failingQueryable) Querier(int64, int64) (storage.Querier, error) { return nil, f.err }

var errClosed = errors.New("tsdb closed")
