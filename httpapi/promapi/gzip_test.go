package promapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestGzip: a client that accepts gzip (Grafana, promtool) gets the same body, compressed.
func TestGzip(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	form := url.Values{"match[]": {`{__name__=~".+"}`}}
	_, plain := get(h, prefix+"/series", form)
	r := request(context.Background(), http.MethodGet, prefix+"/series", form)
	r.Header.Set("Accept-Encoding", "gzip")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK || w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("status %d, Content-Encoding %q; want 200 gzip", w.Code, w.Header().Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, plain) {
		t.Errorf("gzip body differs:\n%s\nplain:\n%s", body, plain)
	}
}
