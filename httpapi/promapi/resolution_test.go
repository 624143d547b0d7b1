package promapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/storage"
)

// fakeDownsampler serves its queryable for every resolution and records what it was asked.
type fakeDownsampler struct {
	storage.Queryable
	resolutions []time.Duration

	mu    sync.Mutex
	asked []string
}

func (f *fakeDownsampler) Resolutions() []time.Duration { return f.resolutions }

func (f *fakeDownsampler) DownsampledQueryable(maxRes time.Duration, auto bool) storage.Queryable {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, maxRes.String()+" auto="+strconv.FormatBool(auto))
	return f.Queryable
}

func (f *fakeDownsampler) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.asked) == 0 {
		return ""
	}
	return f.asked[len(f.asked)-1]
}

// TestSourceParam checks max_source_resolution: which storage a query reads, and the
// lookback that grows to the coarsest resolution allowed (the fixture's last samples are at
// t0+10m; an instant query 40 minutes later finds them only with a lookback of an hour).
func TestSourceParam(t *testing.T) {
	db := openDB(t)
	ds := &fakeDownsampler{Queryable: db, resolutions: []time.Duration{5 * time.Minute, time.Hour}}
	h := newHandler(t, db, func(c *Config) { c.Downsampled = ds })
	late := strconv.FormatInt(t0.Add(50*time.Minute).Unix(), 10)
	for _, c := range []struct {
		name   string
		path   string
		form   url.Values
		status int
		asked  string // "" when the raw storage serves
		series int
	}{
		{"none given", "/query", url.Values{"query": {"node_memory_working_set_bytes"}, "time": {late}}, 200, "", 0},
		{"raw", "/query", url.Values{"query": {"node_memory_working_set_bytes"}, "time": {late}, sourceParamName: {"raw"}}, 200, "", 0},
		{"0s", "/query", url.Values{"query": {"node_memory_working_set_bytes"}, "time": {late}, sourceParamName: {"0s"}}, 200, "", 0},
		{"1h: an hour's lookback", "/query", url.Values{"query": {"node_memory_working_set_bytes"}, "time": {late}, sourceParamName: {"1h"}}, 200, "1h0m0s auto=false", 2},
		{"30m: the 5m tier's lookback", "/query", url.Values{"query": {"node_memory_working_set_bytes"}, "time": {late}, sourceParamName: {"30m"}}, 200, "30m0s auto=false", 0},
		{"an explicit lookback beyond it", "/query", url.Values{"query": {"node_memory_working_set_bytes"}, "time": {late}, sourceParamName: {"30m"}, "lookback_delta": {"2h"}}, 200, "30m0s auto=false", 2},
		{"auto, instant: raw instant selectors", "/query", url.Values{"query": {"node_memory_working_set_bytes"}, "time": {late}, sourceParamName: {"auto"}}, 200, "0s auto=true", 0},
		{"auto, 5h steps", "/query_range", url.Values{"query": {"node_memory_working_set_bytes"}, "start": {late}, "end": {late}, "step": {"5h"}, sourceParamName: {"auto"}}, 200, "1h0m0s auto=true", 2},
		{"auto, 1h steps", "/query_range", url.Values{"query": {"node_memory_working_set_bytes"}, "start": {late}, "end": {late}, "step": {"1h"}, sourceParamName: {"auto"}}, 200, "12m0s auto=true", 0},
		{"not a duration", "/query", url.Values{"query": {"up"}, sourceParamName: {"fine"}}, 400, "", 0},
		{"negative", "/query", url.Values{"query": {"up"}, sourceParamName: {"-5m"}}, 400, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ds.mu.Lock()
			ds.asked = nil
			ds.mu.Unlock()
			status, body := get(h, prefix+c.path, c.form)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			if got := ds.last(); got != c.asked {
				t.Errorf("asked the downsampler for %q, want %q", got, c.asked)
			}
			if status != http.StatusOK {
				if r := decode(t, body); r.ErrorType != "bad_data" {
					t.Errorf("errorType %q, want bad_data: %s", r.ErrorType, body)
				}
				return
			}
			var data struct {
				Result []json.RawMessage `json:"result"`
			}
			if err := json.Unmarshal(decode(t, body).Data, &data); err != nil {
				t.Fatal(err)
			}
			if len(data.Result) != c.series {
				t.Errorf("%d series, want %d: %s", len(data.Result), c.series, body)
			}
		})
	}

	// Without a Downsampler the parameter is read and checked, and the raw storage serves.
	h = newHandler(t, db, nil)
	if status, body := get(h, prefix+"/query", url.Values{"query": {"node_memory_working_set_bytes"}, "time": {late}, sourceParamName: {"1h"}}); status != 200 || len(decode(t, body).Data) == 0 {
		t.Errorf("no downsampler: status %d: %s", status, body)
	}
	if status, _ := get(h, prefix+"/query", url.Values{"query": {"up"}, sourceParamName: {"fine"}}); status != 400 {
		t.Errorf("no downsampler, a bad value: status %d, want 400", status)
	}
}
