package promapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestNamespaced(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		fmt.Fprintf(w, "%s %s %q", r.Method, r.URL.Path, r.Form[namespaceParam])
	})
	h := Namespaced("/prometheus", echo)
	for _, tc := range []struct {
		method, target, body string
		code                 int
		want                 string
	}{
		{"GET", "/prometheus/namespaces/team/api/v1/query?query=up", "", 200, `GET /prometheus/api/v1/query ["team"]`},
		{"GET", "/prometheus/namespaces/team/api/v1/series?namespace=rival&match[]=up", "", 200, `GET /prometheus/api/v1/series ["team"]`},
		{"POST", "/prometheus/namespaces/team/api/v1/query", "query=up&namespace=rival", 200, `POST /prometheus/api/v1/query ["rival" "team"]`},
		{"GET", "/prometheus/namespaces/team/api/v1/label/pod/values", "", 200, `GET /prometheus/api/v1/label/pod/values ["team"]`},
		{"GET", "/prometheus/api/v1/query?query=up&namespace=a", "", 200, `GET /prometheus/api/v1/query ["a"]`},
		{"GET", "/prometheus/namespaces/Team/api/v1/query", "", 400, `invalid parameter \"namespace\"`},
		{"GET", "/prometheus/namespaces//api/v1/query", "", 400, `invalid parameter \"namespace\"`},
		{"GET", "/prometheus/namespaces/" + strings.Repeat("a", 64) + "/api/v1/query", "", 400, "must be no more than 63"},
	} {
		var r *http.Request
		if tc.method == "POST" {
			r = httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			r = httptest.NewRequest(tc.method, tc.target, nil)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%s %s = %d %s; want %d with %s", tc.method, tc.target, w.Code, w.Body, tc.code, tc.want)
		}
	}
}

// TestNamespacedPins: a request through /namespaces/<ns>/ reads <ns> alone, whatever its
// scope allows beyond it, and a selector naming another namespace finds nothing.
func TestNamespacedPins(t *testing.T) {
	for _, tc := range []struct {
		name       string
		scope      Scope
		path       string
		form       url.Values
		namespaces string // label/namespace/values
	}{
		{"all, pinned to db", Scope{All: true}, "/label/namespace/values", nil, "[db]"},
		{"all, pinned to db, selector on default", Scope{All: true}, "/label/namespace/values", url.Values{"match[]": {`{namespace="default"}`}}, "[]"},
		{"nodes and both namespaces, pinned to db", Scope{Nodes: true, Namespaces: map[string]time.Time{"db": {}, "default": {}}}, "/label/namespace/values", nil, "[db]"},
		{"default only, pinned to db", Scope{Namespaces: map[string]time.Time{"default": {}}}, "/label/namespace/values", nil, "[]"},
		{"all, pinned to db, node names", Scope{All: true}, "/label/node/values", url.Values{"match[]": {`node_memory_working_set_bytes`}}, "[]"},
	} {
		h := Namespaced("/prometheus", newHandler(t, openDB(t), func(c *Config) {
			c.Scope = func(*http.Request, []string) (Scope, error) { return tc.scope, nil }
		}))
		code, body := get(h, "/prometheus/namespaces/db/api/v1"+tc.path, tc.form)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.name, code, body)
		}
		var got []string
		mustDecodeData(t, body, &got)
		if fmt.Sprint(got) != tc.namespaces {
			t.Errorf("%s: %s = %v, want %s", tc.name, tc.path, got, tc.namespaces)
		}
	}
}
