package promapi

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hindsight-metrics/hindsight/httpapi/budget"
)

func TestNewRefuses(t *testing.T) {
	q := failingQueryable{errClosed}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no prefix", Config{Queryable: q, Authorize: allow}, "prefix is required"},
		{"root prefix", Config{Prefix: "/", Queryable: q, Authorize: allow}, "prefix is required"},
		{"relative prefix", Config{Prefix: "api/v1", Queryable: q, Authorize: allow}, `prefix "api/v1" does not start with /`},
		{"pattern prefix", Config{Prefix: "/{x}/api/v1", Queryable: q, Authorize: allow}, `prefix "/{x}/api/v1" holds one of {}*`},
		{"no queryable", Config{Prefix: prefix, Authorize: allow}, "queryable is required"},
		{"no authorization", Config{Prefix: prefix, Queryable: q}, "authorize is required: the api is never served without authorization"},
		{"negative timeout", Config{Prefix: prefix, Queryable: q, Authorize: allow, Timeout: -time.Second}, "timeout is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, %v; want an error with %q", h, err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	h, err := New(Config{Prefix: prefix + "/", Queryable: failingQueryable{errClosed}, Authorize: allow}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := h.cfg
	if c.Prefix != prefix || c.MaxSamples != DefaultMaxSamples || c.Timeout != DefaultTimeout ||
		c.LookbackDelta != DefaultLookbackDelta || c.Budget == nil || h.budget.Size() != budget.DefaultSize() {
		t.Errorf("defaults: %+v", c)
	}
	if c.Version != EngineVersion() {
		t.Errorf("version %q, want %q", c.Version, EngineVersion())
	}
}

func TestEngineVersion(t *testing.T) {
	goMod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	inGoMod := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(prometheusModule) + ` (v\S+)`).FindSubmatch(goMod)
	if inGoMod == nil {
		t.Fatalf("no %s in go.mod", prometheusModule)
	}
	if want, _ := releaseOf(string(inGoMod[1])); EngineVersion() != want || engineRelease != want {
		t.Errorf("EngineVersion() = %q, engineRelease = %q; want %q, the release of go.mod's %s", EngineVersion(), engineRelease, want, inGoMod[1])
	}
	for module, want := range map[string]string{
		"v0.315.0": "3.15.0", "v0.300.1": "3.0.1", "v0.1000.2": "10.0.2", "v0.315.0-rc.1": "3.15.0",
		"v0.55.0": "", "v1.2.3": "", "v0.315": "", "v0.x.0": "", "(devel)": "",
	} {
		if got, ok := releaseOf(module); got != want || ok != (want != "") {
			t.Errorf("releaseOf(%q) = %q, %v; want %q", module, got, ok, want)
		}
	}
}

func TestMounting(t *testing.T) {
	h := newHandler(t, openDB(t), nil)
	chiParent := chi.NewRouter()
	chiParent.Mount(prefix, h)
	muxParent := http.NewServeMux()
	muxParent.Handle(prefix+"/", h)
	for name, parent := range map[string]http.Handler{"chi Mount": chiParent, "ServeMux": muxParent, "alone": h} {
		t.Run(name, func(t *testing.T) {
			if code, body := get(parent, prefix+"/status/buildinfo", nil); code != http.StatusOK {
				t.Errorf("buildinfo: %d %s", code, body)
			}
			if code, body := get(parent, prefix+"/label/node/values", nil); code != http.StatusOK || !strings.Contains(string(body), `["node-a","node-b"]`) {
				t.Errorf("label values: %d %s", code, body)
			}
		})
	}
	stripped := http.StripPrefix(prefix, h)
	if code, _ := get(stripped, prefix+"/status/buildinfo", nil); code != http.StatusNotFound {
		t.Errorf("behind StripPrefix: %d, want 404 (the handler wants full paths)", code)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	db := openDB(t)
	h := newHandler(t, db, func(c *Config) { c.Registerer = reg })
	get(h, prefix+"/query", nil)
	get(h, prefix+"/query", map[string][]string{"query": {"1"}})
	get(h, prefix+"/nowhere", nil)
	for _, c := range []struct {
		handler, code string
		want          float64
	}{{"/query", "400", 1}, {"/query", "200", 1}, {"other", "404", 1}} {
		if got := testutil.ToFloat64(h.metrics.requests.WithLabelValues(c.handler, c.code)); got != c.want { // promhttp's code label
			t.Errorf("requests{%s,%s} = %v, want %v", c.handler, c.code, got, c.want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "prometheus_engine_queries"); err != nil || n != 1 {
		t.Errorf("engine metrics: %d, %v", n, err)
	}

	// A second handler on the same registry is refused, without a panic, and leaves the
	// registry as it was.
	before, _ := reg.Gather()
	if _, err := New(Config{Prefix: prefix, Queryable: db, Authorize: allow, Registerer: reg}, nil); err == nil {
		t.Error("a second handler on the same registry was accepted")
	}
	after, _ := reg.Gather()
	if len(after) != len(before) {
		t.Errorf("families %d before, %d after the refused New", len(before), len(after))
	}
}
