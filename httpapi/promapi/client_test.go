package promapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// TestClient talks to the handler with client_golang's API client, the one promtool and
// many tools use: it POSTs form-encoded bodies and falls back to GET.
func TestClient(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client, err := api.NewClient(api.Config{Address: srv.URL + "/prometheus"})
	if err != nil {
		t.Fatal(err)
	}
	c := v1.NewAPI(client)
	ctx := t.Context()

	v, warnings, err := c.Query(ctx, `sum(rate(node_cpu_usage_seconds_total[1m]))`, t0.Add(5*time.Minute))
	if err != nil || len(warnings) > 0 {
		t.Fatalf("Query: %v %v", err, warnings)
	}
	if vec, ok := v.(model.Vector); !ok || len(vec) != 1 || abs(float64(vec[0].Value)-1.75) > 1e-9 {
		t.Errorf("Query = %v, want one sample of 1.75", v)
	}

	v, _, err = c.QueryRange(ctx, `node_memory_working_set_bytes{node="node-b"}`, v1.Range{Start: t0, End: t0.Add(time.Minute), Step: 30 * time.Second})
	if err != nil {
		t.Fatalf("QueryRange: %v", err)
	}
	m, ok := v.(model.Matrix)
	if !ok || len(m) != 1 || len(m[0].Values) != 3 || m[0].Values[2].Value != 3<<30+4<<20 || m[0].Values[2].Timestamp != model.TimeFromUnixNano(t0.Add(time.Minute).UnixNano()) {
		t.Errorf("QueryRange = %v", v)
	}

	series, _, err := c.Series(ctx, []string{`{pod="web-0"}`}, t0, t0.Add(time.Hour))
	if err != nil || len(series) != 2 {
		t.Errorf("Series = %v, %v; want 2", series, err)
	}
	names, _, err := c.LabelNames(ctx, []string{"node_cpu_usage_seconds_total"}, time.Time{}, time.Time{})
	if err != nil || len(names) != 2 || names[1] != "node" {
		t.Errorf("LabelNames = %v, %v", names, err)
	}
	values, _, err := c.LabelValues(ctx, "namespace", nil, time.Time{}, time.Time{})
	if err != nil || len(values) != 2 || values[0] != "db" {
		t.Errorf("LabelValues = %v, %v", values, err)
	}
	info, err := c.Buildinfo(ctx)
	if err != nil || info.Version != "test-1.2.3" {
		t.Errorf("Buildinfo = %+v, %v", info, err)
	}

	_, _, err = c.Query(ctx, `rate(`, time.Time{})
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Errorf("bad query: %#v, want a bad_data error", err)
	}
	_, _, err = c.QueryRange(ctx, `up`, v1.Range{Start: t0, End: t0.Add(24 * time.Hour), Step: time.Second})
	if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Errorf("too many points: %#v, want a bad_data error", err)
	}
}

// TestClientForbidden checks that a refusal reaches the client, after its GET retry. The
// client does not decode the body of a 403: it reports a client_error with the body as
// detail.
func TestClientForbidden(t *testing.T) {
	var (
		mu      sync.Mutex
		methods []string
	)
	h := newHandler(t, openDB(t), func(c *Config) {
		c.Authorize = func(r *http.Request) error {
			mu.Lock()
			defer mu.Unlock()
			methods = append(methods, r.Method)
			return errors.New("no")
		}
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client, err := api.NewClient(api.Config{Address: srv.URL + "/prometheus"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = v1.NewAPI(client).Query(t.Context(), "up", time.Time{})
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrClient || apiErr.Detail != `{"status":"error","errorType":"forbidden","error":"no"}` {
		t.Errorf("Query: %#v, want a client error with the 403's body", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(methods) != 2 || methods[0] != http.MethodPost || methods[1] != http.MethodGet {
		t.Errorf("Authorize saw %v, want POST then GET", methods)
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
