package promapi

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func unix(d time.Duration) string { return strconv.FormatInt(t0.Add(d).Unix(), 10) }

// matrix is a decoded matrix result.
type matrix []struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

func TestQueryRangeRate(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	code, body := get(h, prefix+"/query_range", url.Values{
		"query": {"rate(node_cpu_usage_seconds_total[1m])"},
		"start": {unix(2 * time.Minute)},
		"end":   {unix(4 * time.Minute)},
		"step":  {"30s"},
	})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	checkGolden(t, "query_range", body)

	resp := decode(t, body)
	var data struct {
		ResultType string `json:"resultType"`
		Result     matrix `json:"result"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.ResultType != "matrix" || len(data.Result) != 2 {
		t.Fatalf("got %s with %d series, want a matrix of 2", data.ResultType, len(data.Result))
	}
	want := map[string]float64{"node-a": 0.25, "node-b": 1.5}
	for _, s := range data.Result {
		if len(s.Values) != 5 {
			t.Errorf("%v: %d points, want 5", s.Metric, len(s.Values))
		}
		for i, p := range s.Values {
			ts, v := p[0].(float64), p[1].(string)
			if wantTS := float64(t0.Add(2*time.Minute + time.Duration(i)*30*time.Second).Unix()); ts != wantTS {
				t.Errorf("%v point %d at %v, want %v", s.Metric, i, ts, wantTS)
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.Abs(f-want[s.Metric["node"]]) > 1e-9 {
				t.Errorf("%v point %d = %q, want %v", s.Metric, i, v, want[s.Metric["node"]])
			}
		}
		if _, ok := s.Metric["__name__"]; ok {
			t.Errorf("rate kept __name__: %v", s.Metric)
		}
	}
}

func TestQueryInstant(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	at := unix(5 * time.Minute)
	tests := []struct {
		name  string
		form  url.Values
		check func(t *testing.T, body []byte)
	}{{
		name: "rate by node",
		form: url.Values{"query": {"sum by (node) (rate(container_cpu_usage_seconds_total[1m]))"}, "time": {at}},
		check: func(t *testing.T, body []byte) {
			checkVector(t, body, map[string]float64{"node-a": 0.1, "node-b": 0.5})
		},
	}, {
		name: "memory gauge, default time",
		form: url.Values{"query": {"node_memory_working_set_bytes"}},
		check: func(t *testing.T, body []byte) {
			// At t0+5m the 21st sample: node-b's working set grew 20 MiB.
			checkVector(t, body, map[string]float64{"node-a": 1 << 30, "node-b": 3<<30 + 20<<20})
		},
	}, {
		name: "scalar",
		form: url.Values{"query": {"1+1"}, "time": {at}},
		check: func(t *testing.T, body []byte) {
			checkBody(t, body, `{"status":"success","data":{"resultType":"scalar","result":[`+at+`,"2"]}}`)
		},
	}, {
		name: "string",
		form: url.Values{"query": {`"a<b"`}, "time": {"1767225900.5"}},
		check: func(t *testing.T, body []byte) {
			checkBody(t, body, `{"status":"success","data":{"resultType":"string","result":[1767225900.5,"a\u003cb"]}}`)
		},
	}, {
		name: "limit truncates with a warning",
		form: url.Values{"query": {"node_memory_working_set_bytes"}, "time": {at}, "limit": {"1"}},
		check: func(t *testing.T, body []byte) {
			checkBody(t, body, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"node_memory_working_set_bytes","node":"node-a"},"value":[`+at+`,"1073741824"]}]},"warnings":["results truncated due to limit"]}`)
		},
	}, {
		name: "subquery without a step",
		form: url.Values{"query": {"max_over_time(rate(node_cpu_usage_seconds_total{node=\"node-a\"}[1m])[3m:])"}, "time": {at}},
		check: func(t *testing.T, body []byte) {
			checkVector(t, body, map[string]float64{"node-a": 0.25})
		},
	}, {
		name: "warning annotation",
		form: url.Values{"query": {"rate(node_memory_working_set_bytes[1m])"}, "time": {at}},
		check: func(t *testing.T, body []byte) {
			resp := decode(t, body)
			if len(resp.Infos) == 0 {
				t.Errorf("no info about rate() on a gauge: %s", body)
			}
		},
	}, {
		name: "at modifier and negative offset",
		form: url.Values{"query": {"node_memory_working_set_bytes{node=\"node-b\"} @ " + unix(0) + " offset -1m"}, "time": {at}},
		check: func(t *testing.T, body []byte) {
			checkVector(t, body, map[string]float64{"node-b": 3<<30 + 4<<20})
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(h, prefix+"/query", tt.form)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			tt.check(t, body)
		})
	}
}

// checkVector checks a vector result's values by node.
func checkVector(t *testing.T, body []byte, want map[string]float64) {
	t.Helper()
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(decode(t, body).Data, &data); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, s := range data.Result {
		f, err := strconv.ParseFloat(s.Value[1].(string), 64)
		if err != nil {
			t.Fatal(err)
		}
		got[s.Metric["node"]] = f
	}
	if data.ResultType != "vector" {
		t.Errorf("result type %s, want vector", data.ResultType)
	}
	approx := cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) })
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("values by node (-want +got):\n%s", diff)
	}
}

func checkBody(t *testing.T, body []byte, want string) {
	t.Helper()
	if string(body) != want {
		t.Errorf("body\n%s\nwant\n%s", body, want)
	}
}

func TestSeries(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	code, body := get(h, prefix+"/series", url.Values{
		"match[]": {"container_cpu_usage_seconds_total", `{__name__=~"node_.*", node="node-a"}`},
		"start":   {unix(0)},
		"end":     {unix(10 * time.Minute)},
	})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	checkGolden(t, "series", body)

	t.Run("limit", func(t *testing.T) {
		_, body := get(h, prefix+"/series", url.Values{"match[]": {"node_cpu_usage_seconds_total"}, "limit": {"1"}})
		checkBody(t, body, `{"status":"success","data":[{"__name__":"node_cpu_usage_seconds_total","node":"node-a"}],"warnings":["results truncated due to limit"]}`)
	})
	t.Run("out of range", func(t *testing.T) {
		_, body := get(h, prefix+"/series", url.Values{"match[]": {"node_cpu_usage_seconds_total"}, "end": {unix(-time.Hour)}})
		checkBody(t, body, `{"status":"success","data":[]}`)
	})
}

func TestLabels(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	tests := []struct {
		name, path string
		form       url.Values
		want       string
	}{
		{"all names", "/labels", nil, `["__name__","container","namespace","node","pod","uid"]`},
		{"names of a metric", "/labels", url.Values{"match[]": {"node_memory_working_set_bytes"}}, `["__name__","node"]`},
		{"names of two selectors", "/labels", url.Values{"match[]": {"node_memory_working_set_bytes", `{namespace="db"}`}}, `["__name__","container","namespace","node","pod","uid"]`},
		{"names before the data", "/labels", url.Values{"end": {unix(-time.Hour)}}, `[]`},
		{"metric names", "/label/__name__/values", nil, `["container_cpu_usage_seconds_total","container_memory_working_set_bytes","node_cpu_usage_seconds_total","node_memory_working_set_bytes"]`},
		{"nodes of containers", "/label/node/values", url.Values{"match[]": {"container_cpu_usage_seconds_total"}}, `["node-a","node-b"]`},
		{"pods of two selectors", "/label/pod/values", url.Values{"match[]": {`{namespace="db"}`, `{pod="web-0"}`}}, `["pg-0","web-0"]`},
		{"unknown label", "/label/job/values", nil, `[]`},
		{"escaped name", "/label/U__node/values", url.Values{"match[]": {`{namespace="db"}`}}, `["node-b"]`},
		{"percent-encoded name", "/label/%6eode/values", url.Values{"match[]": {`{namespace="db"}`}}, `["node-b"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(h, prefix+tt.path, tt.form)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			checkBody(t, body, `{"status":"success","data":`+tt.want+`}`)
		})
	}
	t.Run("limit", func(t *testing.T) {
		_, body := get(h, prefix+"/label/node/values", url.Values{"limit": {"1"}})
		checkBody(t, body, `{"status":"success","data":["node-a"],"warnings":["results truncated due to limit"]}`)
	})
}

func TestStatusAndOthers(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{http.MethodGet, prefix + "/status/buildinfo", 200,
			`{"status":"success","data":{"version":"test-1.2.3","revision":"abc","branch":"","buildUser":"","buildDate":"","goVersion":"` + runtime.Version() + `"}}`},
		{http.MethodPost, prefix + "/status/buildinfo", 200,
			`{"status":"success","data":{"version":"test-1.2.3","revision":"abc","branch":"","buildUser":"","buildDate":"","goVersion":"` + runtime.Version() + `"}}`},
		{http.MethodGet, prefix + "/metadata", 200, `{"status":"success","data":{}}`},
		{http.MethodGet, prefix + "/query_exemplars", 200, `{"status":"success","data":[]}`},
		{http.MethodGet, prefix + "/status/config", 404,
			`{"status":"error","errorType":"not_found","error":"/prometheus/api/v1/status/config is not served: hindsight serves query, query_range, series, labels, label/\u003cname\u003e/values and status/buildinfo under /prometheus/api/v1"}`},
		{http.MethodGet, "/api/v1/query", 404,
			`{"status":"error","errorType":"not_found","error":"/api/v1/query is not served: hindsight serves query, query_range, series, labels, label/\u003cname\u003e/values and status/buildinfo under /prometheus/api/v1"}`},
		{http.MethodDelete, prefix + "/query", 405,
			`{"status":"error","errorType":"bad_data","error":"method DELETE is not allowed on /prometheus/api/v1/query: use GET or POST"}`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, body := serve(h, request(t.Context(), tt.method, tt.path, nil))
			if code != tt.code {
				t.Errorf("status %d, want %d", code, tt.code)
			}
			checkBody(t, body, tt.body)
		})
	}
}

func TestPostForm(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	tests := []struct {
		path string
		form url.Values
	}{
		{"/query", url.Values{"query": {"node_memory_working_set_bytes"}, "time": {unix(time.Minute)}}},
		{"/query_range", url.Values{"query": {"rate(container_cpu_usage_seconds_total[1m])"}, "start": {unix(time.Minute)}, "end": {unix(3 * time.Minute)}, "step": {"15"}}},
		{"/series", url.Values{"match[]": {"container_memory_working_set_bytes", "node_memory_working_set_bytes"}}},
		{"/labels", url.Values{"match[]": {"container_memory_working_set_bytes"}}},
		{"/label/pod/values", url.Values{"match[]": {"container_memory_working_set_bytes"}}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			getCode, getBody := get(h, prefix+tt.path, tt.form)
			postCode, postBody := serve(h, request(t.Context(), http.MethodPost, prefix+tt.path, tt.form))
			if getCode != http.StatusOK || postCode != http.StatusOK {
				t.Fatalf("GET %d %s, POST %d %s", getCode, getBody, postCode, postBody)
			}
			if string(getBody) != string(postBody) {
				t.Errorf("POST answered\n%s\nGET answered\n%s", postBody, getBody)
			}
		})
	}
}
