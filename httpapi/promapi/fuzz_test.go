package promapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzHandler sends arbitrary parameters to every endpoint: no panic, no 500, and always a
// well-formed envelope.
func FuzzHandler(f *testing.F) {
	paths := []string{"/query", "/query_range", "/series", "/labels", "/label/node/values", "/status/buildinfo", "/x"}
	for i, raw := range []string{
		"query=up", "query=rate(node_cpu_usage_seconds_total[1m])&start=1767225600&end=1767226200&step=15",
		"match[]=node_cpu_usage_seconds_total", "match[]={node=~\"node-.*\"}&limit=1", "", "start=x",
		"query=%zz", "query=sum(rate(x[5m:1s]))&timeout=0.01", "query=1&time=NaN&limit=-1",
		"query=up&max_source_resolution=auto", "query=up&max_source_resolution=-1h", "query=up&max_source_resolution=1e400h",
		"query=node_memory_working_set_bytes&start=1767225600&end=1767226200&step=1h&max_source_resolution=auto",
	} {
		f.Add(uint8(i), raw, i%2 == 0)
	}
	db := openDB(f)
	h := newHandler(f, db, func(c *Config) {
		c.Timeout = time.Second
		c.MaxSamples = 100_000
		c.Downsampled = &fakeDownsampler{Queryable: db, resolutions: []time.Duration{5 * time.Minute, time.Hour}}
	})
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
