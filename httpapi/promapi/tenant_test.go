package promapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestQueryNamespaces: the namespaces a query names are those of its namespace="x" and
// namespace=~"x|y" matchers, in every selector (subqueries and function arguments too).
func TestQueryNamespaces(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{`up`, nil},
		{`up{namespace="a"}`, []string{"a"}},
		{`up{namespace=~"a|b"}`, []string{"a", "b"}},
		{`up{namespace=~"a.*"}`, nil},
		{`up{namespace!="a"}`, nil},
		{`up{namespace=""}`, nil},
		{`sum(rate(x{namespace="a"}[5m])) / sum(max_over_time(y{namespace="b"}[10m:1m]))`, []string{"a", "b"}},
		{`label_replace(x{namespace="c"}, "namespace", "d", "", "")`, []string{"c"}},
	} {
		got, aerr := h.queryNamespaces(tc.query)
		if aerr != nil {
			t.Fatalf("%s: %v", tc.query, aerr.err)
		}
		slices.Sort(got)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.query, got, tc.want)
		}
	}
}

// TestScopeCalls: Scope is called once per reading request with the namespaces named
// (parameters and matchers, deduplicated and sorted); its error answers 403 and too many
// namespaces 400, both before storage is read.
func TestScopeCalls(t *testing.T) {
	var calls [][]string
	deny := errors.New("denied by test")
	h := newHandler(t, openDB(t), func(c *Config) {
		c.Scope = func(r *http.Request, named []string) (Scope, error) {
			calls = append(calls, named)
			if slices.Contains(named, "forbidden") {
				return Scope{}, deny
			}
			return Scope{Namespaces: map[string]time.Time{"db": {}}}, nil
		}
	})
	for _, tc := range []struct {
		path   string
		form   url.Values
		status int
		named  []string
	}{
		{"/query", url.Values{"query": {`up{namespace="db"}`}, "namespace": {"db", "default"}}, 200, []string{"db", "default"}},
		{"/query_range", url.Values{"query": {`up{namespace=~"x|db"}`}, "start": {"0"}, "end": {"60"}, "step": {"15"}}, 200, []string{"db", "x"}},
		{"/series", url.Values{"match[]": {`{namespace="db"}`, `{namespace="forbidden"}`}}, 403, []string{"db", "forbidden"}},
		{"/labels", url.Values{}, 200, []string{}},
		{"/label/pod/values", url.Values{"namespace": {"db"}}, 200, []string{"db"}},
		{"/status/buildinfo", url.Values{}, 200, nil}, // reads no series: no call
	} {
		before := len(calls)
		code, body := get(h, prefix+tc.path, tc.form)
		if code != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.path, code, tc.status, body)
		}
		switch {
		case tc.named == nil && len(calls) != before:
			t.Errorf("%s: %d Scope calls, want none", tc.path, len(calls)-before)
		case tc.named != nil && len(calls) != before+1:
			t.Errorf("%s: %d Scope calls, want 1", tc.path, len(calls)-before)
		case tc.named != nil && fmt.Sprint(calls[before]) != fmt.Sprint(tc.named):
			t.Errorf("%s: named %v, want %v", tc.path, calls[before], tc.named)
		}
	}
	many := url.Values{"match[]": {`{namespace="db"}`}}
	for i := range MaxNamespaces + 1 {
		many.Add("namespace", "ns-"+strconv.Itoa(i))
	}
	if code, body := get(h, prefix+"/series", many); code != http.StatusBadRequest {
		t.Errorf("%d namespaces: status %d, want 400: %s", MaxNamespaces+1, code, body)
	}
}

// TestScopedSeries: a scope reads the node series and its namespaces' series only, each
// namespace from its start, through every reading endpoint.
func TestScopedSeries(t *testing.T) {
	since := t0.Add(5 * time.Minute)
	for _, tc := range []struct {
		name  string
		scope Scope
		want  string // label/namespace/values of everything
		pods  string // label/pod/values
		first float64
	}{
		{"all", Scope{All: true}, "[db default]", "[pg-0 web-0]", float64(t0.Unix())},
		{"nodes", Scope{Nodes: true}, "[]", "[]", 0},
		{"db", Scope{Namespaces: map[string]time.Time{"db": {}}}, "[db]", "[pg-0]", float64(t0.Unix())},
		{"db since 5m", Scope{Namespaces: map[string]time.Time{"db": since}}, "[db]", "[pg-0]", float64(since.Unix())},
		{"db after its samples", Scope{Namespaces: map[string]time.Time{"db": t0.Add(time.Hour)}}, "[]", "[]", 0},
		{"nothing", Scope{}, "[]", "[]", 0},
	} {
		h := newHandler(t, openDB(t), func(c *Config) {
			c.Scope = func(*http.Request, []string) (Scope, error) { return tc.scope, nil }
		})
		for _, ep := range []struct{ path, want string }{{"/label/namespace/values", tc.want}, {"/label/pod/values", tc.pods}} {
			code, body := get(h, prefix+ep.path, nil)
			var got []string
			if code != http.StatusOK {
				t.Fatalf("%s %s: %d %s", tc.name, ep.path, code, body)
			}
			mustDecodeData(t, body, &got)
			if fmt.Sprint(got) != ep.want {
				t.Errorf("%s %s: %v, want %s", tc.name, ep.path, got, ep.want)
			}
		}
		code, body := get(h, prefix+"/query_range", url.Values{"query": {`{__name__=~"container_.*"}`},
			"start": {strconv.FormatInt(t0.Unix(), 10)}, "end": {strconv.FormatInt(t0.Add(10*time.Minute).Unix(), 10)}, "step": {"15"}})
		if code != http.StatusOK {
			t.Fatalf("%s: query_range %d %s", tc.name, code, body)
		}
		var qd struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		}
		mustDecodeData(t, body, &qd)
		first := 0.0
		for _, s := range qd.Result {
			if ts := s.Values[0][0].(float64); first == 0 || ts < first {
				first = ts
			}
		}
		if first != tc.first {
			t.Errorf("%s: first container sample at %v, want %v", tc.name, first, tc.first)
		}
	}
}

func mustDecodeData(t *testing.T, body []byte, v any) {
	t.Helper()
	r := decode(t, body)
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decode %s: %v", r.Data, err)
	}
}
