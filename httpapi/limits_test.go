package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// blockingSamples is the TSDB whose Range, once entered, waits until the test releases
// it.
type blockingSamples struct {
	*tsdb.DB
	entered chan struct{} // receives once per Range call
	release chan struct{} // closed by the test
}

func (b *blockingSamples) Range(ctx context.Context, sel tsdb.Selector, q tsdb.RangeQuery, fn func(*tsdb.RangeSeries) error) error {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.DB.Range(ctx, sel, q, fn)
}

// TestBusy: with every slot taken and no queue, a query is refused at once with 429 and
// Retry-After, without reaching the TSDB; the running one is unaffected.
func TestBusy(t *testing.T) {
	e := newEnv(t, defaultFixture())
	bs := &blockingSamples{DB: e.db, entered: make(chan struct{}, 16), release: make(chan struct{})}
	cfg := e.config()
	cfg.Samples = bs
	cfg.Budget = newQueuedBudget(t, 1, 0, 0)
	h := newTestHandler(t, cfg)
	path := "/history/v1/nodes/n1?resource=cpu&" + goldenRange

	first := make(chan *httptest.ResponseRecorder)
	go func() {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set(userHeader, "admin")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		first <- w
	}()
	<-bs.entered // the first query holds the only slot

	w := get(t, h, "admin", path)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("second query: status %d, Retry-After %q, want 429 and 1: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if body := decodeError(t, w); body.Reason != "TooManyRequests" || body.Message != "all 1 query slots (shared with the Prometheus API) are taken and 0 more queries wait: try again in 1s" {
		t.Errorf("second query: %+v", body)
	}
	select {
	case <-bs.entered:
		t.Error("the refused query reached the TSDB")
	default:
	}

	close(bs.release)
	if w := <-first; w.Code != http.StatusOK {
		t.Errorf("first query: status %d: %s", w.Code, w.Body)
	}
	// The slot is free again.
	if w := get(t, h, "admin", path); w.Code != http.StatusOK {
		t.Errorf("third query: status %d: %s", w.Code, w.Body)
	}
}

// stuckSamples never answers before its context ends.
type stuckSamples struct {
	*tsdb.DB
	mu    sync.Mutex
	calls int
}

func (s *stuckSamples) Range(ctx context.Context, _ tsdb.Selector, _ tsdb.RangeQuery, _ func(*tsdb.RangeSeries) error) error {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

// TestTimeout: a query that outlasts QueryTimeout gets 503 Timeout, and frees its slot.
func TestTimeout(t *testing.T) {
	e := newEnv(t, defaultFixture())
	ss := &stuckSamples{DB: e.db}
	cfg := e.config()
	cfg.Samples = ss
	cfg.QueryTimeout = 10 * time.Millisecond
	cfg.Budget = newBudget(t, 1)
	h := newTestHandler(t, cfg)
	for _, path := range []string{"/cluster", "/nodes", "/namespaces", "/namespaces/shop", "/namespaces/shop/pods/web-a/containers", "/namespaces/shop/deployments/web"} {
		w := get(t, h, "admin", "/history/v1"+path+"?"+goldenRange)
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s: status %d, want 503: %s", path, w.Code, w.Body)
		}
		body := decodeError(t, w)
		if body.Reason != "Timeout" || body.Message != "the query took longer than the limit (--history-query-timeout): narrow it or use a larger step" {
			t.Errorf("%s: %+v", path, body)
		}
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.calls < 6 {
		t.Errorf("%d Range calls, want at least one per query", ss.calls)
	}
}

// TestCancelled: a query whose client went away is not reported as a timeout.
func TestCancelled(t *testing.T) {
	e := newEnv(t, defaultFixture())
	cfg := e.config()
	cfg.Samples = &stuckSamples{DB: e.db}
	h := newTestHandler(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := do(t, h, httptest.NewRequestWithContext(ctx, http.MethodGet, "/history/v1/cluster?"+goldenRange, nil), "admin")
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", w.Code, w.Body)
	}
	if body := decodeError(t, w); body.Reason == "Timeout" {
		t.Errorf("a cancelled request answered as a timeout: %+v", body)
	}
}

// TestClosedDB: a query on a closed TSDB gets 503, not 500.
func TestClosedDB(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	w := get(t, h, "admin", "/history/v1/cluster?"+goldenRange)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", w.Code, w.Body)
	}
	if body := decodeError(t, w); body.Reason != "Unavailable" {
		t.Errorf("%+v", body)
	}
}
