package promapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
