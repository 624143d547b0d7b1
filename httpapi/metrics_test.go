package httpapi

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSelfMetrics: every answered request is counted by endpoint and status code.
func TestSelfMetrics(t *testing.T) {
	e := newEnv(t, defaultFixture())
	reg := prometheus.NewPedanticRegistry()
	cfg := e.config()
	cfg.Registerer = reg
	h := newTestHandler(t, cfg)
	for _, tc := range []struct{ user, path string }{
		{"admin", "/history/v1/namespaces/shop/pods/db-0?" + goldenRange},
		{"admin", "/history/v1/namespaces/shop/pods/db-0?" + goldenRange},
		{"admin", "/history/v1/namespaces/shop/pods/db-0?step=5x"},
		{"bob", "/history/v1/cluster?" + goldenRange},
	} {
		get(t, h, tc.user, tc.path)
	}
	want := `
# HELP hindsight_history_requests_total History API requests, by endpoint and HTTP status code.
# TYPE hindsight_history_requests_total counter
hindsight_history_requests_total{code="200",endpoint="pod"} 2
hindsight_history_requests_total{code="400",endpoint="pod"} 1
hindsight_history_requests_total{code="403",endpoint="cluster"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "hindsight_history_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "hindsight_history_request_duration_seconds"); n != 2 {
		t.Errorf("duration histograms: %d, want one per endpoint (2)", n)
	}
	// A second handler on the same registry is refused, not a panic.
	if _, err := New(cfg); err == nil {
		t.Error("New with an already registered Registerer: no error")
	}
}

// TestGzip: a client that accepts gzip gets the same JSON and CSV, compressed.
func TestGzip(t *testing.T) {
	h := newEnv(t, defaultFixture()).handler(t)
	for _, format := range []string{"json", "csv"} {
		path := "/history/v1/namespaces/shop/pods?format=" + format + "&" + goldenRange
		plain := get(t, h, "admin", path)
		zipped := get(t, h, "admin", path, "Accept-Encoding", "gzip")
		if plain.Code != http.StatusOK || zipped.Code != http.StatusOK {
			t.Fatalf("%s: status %d, %d", format, plain.Code, zipped.Code)
		}
		if got := zipped.Header().Get("Content-Encoding"); got != "gzip" {
			t.Fatalf("%s: Content-Encoding %q, want gzip", format, got)
		}
		zippedLen := zipped.Body.Len()
		zr, err := gzip.NewReader(zipped.Body)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, plain.Body.Bytes()) {
			t.Errorf("%s: gzip body differs from the plain one", format)
		}
		t.Logf("%s: %d bytes, %d gzipped", format, plain.Body.Len(), zippedLen)
	}
}
