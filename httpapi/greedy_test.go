package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/hindsight-metrics/hindsight/internal/testhttp"
)

// serveSlow serves path as user to a slow reader in the background; done is closed when
// the handler returns.
func serveSlow(h http.Handler, user, path string) (w *testhttp.SlowWriter, done chan struct{}) {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set(userHeader, user)
	return testhttp.Serve(h, r)
}

// TestSlowReaderFreesSlot: a client that reads its response slowly holds no query
// slot: with a budget of one slot and no queue, another query is served while the first
// response is still being written.
func TestSlowReaderFreesSlot(t *testing.T) {
	e := newEnv(t, defaultFixture())
	cfg := e.config()
	cfg.Budget = newQueuedBudget(t, 1, 0, 0)
	h := newTestHandler(t, cfg)
	path := "/history/v1/nodes/n1?resource=cpu&" + goldenRange

	slow, done := serveSlow(h, "admin", path)
	<-slow.Started // the response is being written, slowly
	if w := get(t, h, "admin", path); w.Code != http.StatusOK {
		t.Fatalf("a query while a slow client reads: status %d, want 200: %s", w.Code, w.Body)
	}
	close(slow.Read)
	<-done
	if slow.Code() != http.StatusOK || len(slow.Body()) == 0 {
		t.Fatalf("the slow client got %d with %d bytes", slow.Code(), len(slow.Body()))
	}
}

// TestForbiddenTakesNoSlot: a request is authorized before it takes a slot, so a user
// without the right is refused with 403 even while every slot is taken (not 429 or a
// wait), and takes no slot from the allowed.
func TestForbiddenTakesNoSlot(t *testing.T) {
	e := newEnv(t, defaultFixture())
	bs := &blockingSamples{DB: e.db, entered: make(chan struct{}, 16), release: make(chan struct{})}
	cfg := e.config()
	cfg.Samples = bs
	cfg.Budget = newQueuedBudget(t, 1, 0, 0)
	h := newTestHandler(t, cfg)

	first, done := serveSlow(h, "admin", "/history/v1/nodes/n1?resource=cpu&"+goldenRange)
	close(first.Read) // the first client reads at once
	<-bs.entered      // the only slot is taken
	for _, c := range []struct{ user, path string }{
		{"alice", "/history/v1/nodes?" + goldenRange},
		{"alice", "/history/v1/namespaces/other?" + goldenRange},
		{"nobody", "/history/v1/namespaces/shop/pods?" + goldenRange},
		{"nobody", "/history/v1/cluster?" + goldenRange},
		{"nodereader", "/history/v1/namespaces/shop/deployments/web?" + goldenRange},
	} {
		if w := get(t, h, c.user, c.path); w.Code != http.StatusForbidden {
			t.Errorf("%s %s with every slot taken: status %d, want 403: %s", c.user, c.path, w.Code, w.Body)
		}
	}
	close(bs.release)
	<-done
}

// TestWriteTimeout: a client that stops reading is cut off WriteTimeout after writing
// began, and its in-flight place is freed.
func TestWriteTimeout(t *testing.T) {
	e := newEnv(t, defaultFixture())
	cfg := e.config()
	cfg.WriteTimeout = 50 * time.Millisecond
	cfg.InFlight = newQueuedBudget(t, 1, 0, 0)
	h := newTestHandler(t, cfg)
	path := "/history/v1/nodes/n1?resource=cpu&" + goldenRange

	before := time.Now()
	slow, done := serveSlow(h, "admin", path)
	<-slow.Started
	// The client never reads: the handler returns at the deadline.
	w := get(t, h, "admin", path)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Errorf("a query while the only in-flight place is taken: status %d, Retry-After %q, want 429 and 1: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if body := decodeError(t, w); body.Message != "1 history and Prometheus requests are being served, the most at once: try again in 1s" {
		t.Errorf("429: %+v", body)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still writes to a client that does not read, 10s after a write timeout of 50ms")
	}
	after := time.Now()
	deadline := slow.Deadline()
	if deadline.Before(before.Add(cfg.WriteTimeout)) || deadline.After(after.Add(cfg.WriteTimeout)) {
		t.Errorf("write deadline %s, want WriteTimeout (%s) after the handler began writing, between %s and %s",
			deadline.Format(time.StampMicro), cfg.WriteTimeout, before.Add(cfg.WriteTimeout).Format(time.StampMicro), after.Add(cfg.WriteTimeout).Format(time.StampMicro))
	}
	if len(slow.Body()) != 0 {
		t.Errorf("the client that never read got %d bytes", len(slow.Body()))
	}
	if w := get(t, h, "admin", path); w.Code != http.StatusOK {
		t.Errorf("a query once the slow client was cut off: status %d: %s", w.Code, w.Body)
	}
}

// TestMaxResponseBytes: a response larger than MaxResponseBytes is refused with 422
// before anything is written; one within it is served whole.
func TestMaxResponseBytes(t *testing.T) {
	e := newEnv(t, defaultFixture())
	path := "/history/v1/namespaces/shop/pods?" + goldenRange
	for _, format := range []string{"json", "csv"} {
		full := get(t, e.handler(t), "admin", path+"&format="+format)
		if full.Code != http.StatusOK {
			t.Fatalf("%s without a cap: %d: %s", format, full.Code, full.Body)
		}
		size := full.Body.Len()
		for _, c := range []struct {
			max  int
			want int
		}{{size, http.StatusOK}, {size - 1, http.StatusUnprocessableEntity}, {size / 2, http.StatusUnprocessableEntity}} {
			cfg := e.config()
			cfg.MaxResponseBytes = c.max
			w := get(t, newTestHandler(t, cfg), "admin", path+"&format="+format)
			if w.Code != c.want {
				t.Errorf("%s of %d bytes with a cap of %d: status %d, want %d", format, size, c.max, w.Code, c.want)
				continue
			}
			if c.want == http.StatusOK {
				if !bytes.Equal(w.Body.Bytes(), full.Body.Bytes()) {
					t.Errorf("%s with a cap of its size: the body differs", format)
				}
				continue
			}
			if body := decodeError(t, w); body.Reason != "LimitExceeded" || body.Message != "the response is larger than the limit of "+strconv.Itoa(c.max)+" bytes (--history-max-response-bytes): narrow the query or use a larger step" {
				t.Errorf("%s over the cap: %+v", format, body)
			}
		}
	}
}
