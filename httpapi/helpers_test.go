package httpapi

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/hindsight-metrics/hindsight/httpapi/budget"
	"github.com/hindsight-metrics/hindsight/internal/testlog"
	"github.com/hindsight-metrics/hindsight/tsdb"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// t0 is the first scrape round of every fixture.
var t0 = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

// res is the fixtures' scrape interval.
const res = 15 * time.Second

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// rfc returns t0 plus d in RFC 3339, as a query parameter.
func rfc(d time.Duration) string { return at(d).Format(time.RFC3339) }

const (
	mi = 1 << 20
	gi = 1 << 30
)

// Fixture specifications: what each pod and node uses, from which the scrape rounds and
// the catalog are built, and from which tests compute what the API must answer.

// ctrSpec is one container of a pod: its usage in each round and its requests and limits
// (catalog canonical units: millicores, bytes).
type ctrSpec struct {
	name  string
	init  bool                // an init container: in the catalog, never scraped
	cores func(k int) float64 // usage during the interval that ends at round k
	mem   float64
	req   map[string]int64
	lim   map[string]int64
}

// podSpec is one pod incarnation.
type podSpec struct {
	uid, ns, name, node string
	labels              map[string]string
	owner, controller   catalog.Owner
	qos                 string
	// from and to bound its life: rounds at from <= t < to are scraped; to 0 means it is
	// alive at the end, else it is deleted at to.
	from, to   time.Duration
	containers []ctrSpec
	// skip lists rounds without a sample of the pod (a gap); its counters keep counting.
	skip func(k int) bool
	// reset is the round at which its counters restart from zero; 0 means none.
	reset int
	// jitter is how far the kubelet's stats time of round k is from the round's time
	// (nil: none), as a kubelet's timestamps jitter around the resolution grid.
	jitter func(k int) time.Duration
}

// sampleTime returns the time of the pod's samples of round k.
func (p *podSpec) sampleTime(k int) time.Time { return roundTime(k, p.jitter) }

// roundTime returns the time of round k moved by jitter, to the millisecond the TSDB
// stores.
func roundTime(k int, jitter func(int) time.Duration) time.Time {
	ts := at(time.Duration(k) * res)
	if jitter != nil {
		ts = ts.Add(jitter(k)).Truncate(time.Millisecond)
	}
	return ts
}

// nodeSpec is one node; its usage is its pods' plus baseCores and baseMem.
type nodeSpec struct {
	name                  string
	labels                map[string]string
	capacity, allocatable map[string]int64
	baseCores, baseMem    float64
	// jitter moves the node's samples as podSpec.jitter does a pod's.
	jitter func(k int) time.Duration
}

type fixture struct {
	rounds int // rounds 0..rounds, every res from t0
	nodes  []nodeSpec
	pods   []podSpec
	// now is the handler's clock.
	now time.Time
}

func deploy(name string) catalog.Owner { return catalog.Owner{Kind: "Deployment", Name: name} }

func constant(c float64) func(int) float64 { return func(int) float64 { return c } }

// alive reports whether p is scraped (skips aside) in round k.
func (p *podSpec) alive(k int) bool {
	t := time.Duration(k) * res
	return t >= p.from && (p.to == 0 || t < p.to)
}

func (p *podSpec) sampled(k int) bool { return p.alive(k) && (p.skip == nil || !p.skip(k)) }

// podCores is what the pod uses in the interval that ends at round k.
func (p *podSpec) podCores(k int) float64 {
	sum := 0.0
	for _, c := range p.containers {
		if !c.init {
			sum += c.cores(k)
		}
	}
	return sum
}

func (p *podSpec) podMem() float64 {
	sum := 0.0
	for _, c := range p.containers {
		if !c.init {
			sum += c.mem
		}
	}
	return sum
}

// counters returns each app container's CPU counter (core-seconds) in every round up to
// rounds that the pod is alive: it grows by the container's usage × the time since the
// previous round's sample (res without jitter) each round, and restarts at the reset round.
func (p *podSpec) counters(rounds int) map[string]map[int]float64 {
	out := map[string]map[int]float64{}
	for _, c := range p.containers {
		if c.init {
			continue
		}
		m := map[int]float64{}
		v := 0.0
		first := true
		var prev time.Time
		for k := 0; k <= rounds; k++ {
			if !p.alive(k) {
				continue
			}
			ts := p.sampleTime(k)
			dt := ts.Sub(prev).Seconds()
			switch {
			case first:
				v, first = 0, false
			case k == p.reset:
				v = c.cores(k) * dt / 2 // restarted in the middle of the interval
			default:
				v += c.cores(k) * dt
			}
			m[k] = v
			prev = ts
		}
		out[c.name] = m
	}
	return out
}

// defaultFixture is the cluster most tests query: see the brief in each value test.
//
//	n1: shop/web-a (0.2 cores, 0–10 min, deleted), shop/db-0 (0.1 cores; u-db-0-1 0–5 min
//	    deleted, u-db-0-2 from 6 min)
//	n2: shop/web-b (0.4 cores from 10 min: the rollout; its counter resets at 15 min),
//	    other/x (1.0 cores; no samples in rounds 53-56, 13:15-14:00)
//
// Each node uses its pods' sum plus 0.5 cores and 1 GiB.
func defaultFixture() *fixture {
	web := func(uid, name, rs, node string, cores float64, from, to time.Duration) podSpec {
		return podSpec{
			uid: uid, ns: "shop", name: name, node: node,
			labels: map[string]string{"app": "web", "pod-template-hash": rs},
			owner:  catalog.Owner{Kind: "Deployment", Name: "web"}, controller: catalog.Owner{Kind: "ReplicaSet", Name: "web-" + rs},
			qos: "Burstable", from: from, to: to,
			containers: []ctrSpec{{name: "app", cores: constant(cores), mem: 100 * mi,
				req: map[string]int64{"cpu": 100, "memory": 128 * mi}, lim: map[string]int64{"cpu": 200}}},
		}
	}
	db := func(uid string, from, to time.Duration) podSpec {
		return podSpec{
			uid: uid, ns: "shop", name: "db-0", node: "n1",
			labels: map[string]string{"app": "db"},
			owner:  catalog.Owner{Kind: "StatefulSet", Name: "db"}, controller: catalog.Owner{Kind: "StatefulSet", Name: "db"},
			qos: "Burstable", from: from, to: to,
			containers: []ctrSpec{
				{name: "init-schema", init: true, req: map[string]int64{"cpu": 500}},
				{name: "db", cores: constant(0.1 * 2 / 3), mem: 200 * mi,
					req: map[string]int64{"cpu": 50, "memory": 256 * mi}, lim: map[string]int64{"cpu": 100, "memory": 512 * mi}},
				{name: "sidecar", cores: constant(0.1 / 3), mem: 20 * mi, req: map[string]int64{"cpu": 10}},
			},
		}
	}
	webB := web("u-web-b", "web-b", "2", "n2", 0.4, 10*time.Minute, 0)
	webB.reset = 60
	return &fixture{
		rounds: 80,
		now:    at(30 * time.Minute),
		nodes: []nodeSpec{
			{name: "n1", labels: map[string]string{"pool": "a"},
				capacity:    map[string]int64{"cpu": 4000, "memory": 16 * gi, "pods": 110},
				allocatable: map[string]int64{"cpu": 3800, "memory": 15 * gi, "pods": 110},
				baseCores:   0.5, baseMem: gi},
			{name: "n2", labels: map[string]string{"pool": "b"},
				capacity:    map[string]int64{"cpu": 8000, "memory": 32 * gi},
				allocatable: map[string]int64{"cpu": 7800, "memory": 31 * gi},
				baseCores:   0.5, baseMem: gi},
		},
		pods: []podSpec{
			web("u-web-a", "web-a", "1", "n1", 0.2, 0, 10*time.Minute),
			webB,
			db("u-db-0-1", 0, 5*time.Minute),
			db("u-db-0-2", 6*time.Minute, 0),
			{uid: "u-x", ns: "other", name: "x", node: "n2", labels: map[string]string{"app": "x"}, qos: "BestEffort",
				containers: []ctrSpec{{name: "main", cores: constant(1.0), mem: 300 * mi}},
				skip:       func(k int) bool { return k >= 53 && k <= 56 }},
		},
	}
}

func (f *fixture) pod(uid string) *podSpec {
	for i := range f.pods {
		if f.pods[i].uid == uid {
			return &f.pods[i]
		}
	}
	panic("no pod " + uid)
}

// batches returns the scrape rounds of f.
func (f *fixture) batches() []tsdb.Batch {
	ctrs := make([]map[string]map[int]float64, len(f.pods))
	for i := range f.pods {
		ctrs[i] = f.pods[i].counters(f.rounds)
	}
	nodeCPU := make([]float64, len(f.nodes))
	for i := range nodeCPU {
		nodeCPU[i] = 1000
	}
	var out []tsdb.Batch
	nodeTime := make([]time.Time, len(f.nodes))
	for k := 0; k <= f.rounds; k++ {
		var b tsdb.Batch
		for ni, n := range f.nodes {
			ts := roundTime(k, n.jitter)
			mem := n.baseMem
			inc := n.baseCores
			ns := tsdb.NodeScrape{Node: n.name, ScrapeTime: ts, HasNode: true}
			for pi := range f.pods {
				p := &f.pods[pi]
				if p.node != n.name || !p.alive(k) {
					continue
				}
				inc += p.podCores(k)
				mem += p.podMem()
				if !p.sampled(k) {
					continue
				}
				pt := p.sampleTime(k)
				ps := tsdb.PodSample{Namespace: p.ns, Pod: p.name, UID: p.uid, Sample: cpuMem(pt, 0, p.podMem())}
				for _, c := range p.containers {
					if c.init {
						continue
					}
					ps.Values[tsdb.ResourceCPU] += ctrs[pi][c.name][k]
					ns.Containers = append(ns.Containers, tsdb.ContainerSample{
						Namespace: p.ns, Pod: p.name, Container: c.name, UID: p.uid, StartTime: at(p.from),
						Sample: cpuMem(pt, ctrs[pi][c.name][k], c.mem),
					})
				}
				ns.Pods = append(ns.Pods, ps)
			}
			if k > 0 {
				nodeCPU[ni] += inc * ts.Sub(nodeTime[ni]).Seconds()
			}
			nodeTime[ni] = ts
			ns.NodeSample = cpuMem(ts, nodeCPU[ni], mem)
			b.Nodes = append(b.Nodes, ns)
		}
		out = append(out, b)
	}
	return out
}

// env is a fixture stored in a real TSDB and catalog.
type env struct {
	f     *fixture
	db    *tsdb.DB
	cat   *catalog.Catalog
	authz *fakeAuthz
}

// newEnv stores f in a TSDB and a catalog that live until the test ends.
func newEnv(t testing.TB, f *fixture) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := slogt(t)
	db, err := tsdb.Open(tsdb.Config{Dir: dir, Resolution: res}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close tsdb: %v", err)
		}
	})
	end := at(time.Duration(f.rounds) * res)
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"), catalog.Options{Now: func() time.Time { return end }, CompactEvery: -1}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cat.Close(); err != nil {
			t.Errorf("close catalog: %v", err)
		}
	})
	for _, n := range f.nodes {
		rec := catalog.NodeRecord{Name: n.name, UID: "node-uid-" + n.name, Labels: n.labels, Capacity: n.capacity,
			Allocatable: n.allocatable, FirstSeen: t0, LastSeen: end}
		if err := cat.UpsertNode(rec); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range f.pods {
		rec := catalog.PodRecord{UID: p.uid, Namespace: p.ns, Name: p.name, Node: p.node, Labels: p.labels,
			Owner: p.owner, Controller: p.controller, QoSClass: p.qos, FirstSeen: at(p.from), LastSeen: at(p.from)}
		for _, c := range p.containers {
			rec.Containers = append(rec.Containers, catalog.ContainerSpec{Name: c.name, Init: c.init, Requests: c.req, Limits: c.lim})
		}
		if err := cat.UpsertPod(rec); err != nil {
			t.Fatal(err)
		}
		if p.to > 0 {
			err = cat.MarkPodDeleted(p.uid, at(p.to))
		} else {
			rec.LastSeen = end
			err = cat.UpsertPod(rec)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := cat.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i, b := range f.batches() {
		if err := db.Write(ctx, b); err != nil {
			t.Fatalf("write round %d: %v", i, err)
		}
	}
	return &env{f: f, db: db, cat: cat, authz: &fakeAuthz{}}
}

// config returns a handler configuration over e, which mod may change.
func (e *env) config() Config {
	now := e.f.now
	return Config{Samples: e.db, Catalog: e.cat, Authorizer: e.authz, Resolution: res, Now: func() time.Time { return now }}
}

// handler returns the history handler of cfg behind the test authentication.
func newTestHandler(t testing.TB, cfg Config) http.Handler {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = slogt(t)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return withTestUser(h)
}

func (e *env) handler(t testing.TB) http.Handler { return newTestHandler(t, e.config()) }

// userHeader names the authenticated user; no header means no user.
const userHeader = "X-Test-User"

// withTestUser stands for the API server's authentication filter.
func withTestUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := r.Header.Get(userHeader); name != "" {
			r = r.WithContext(request.WithUser(r.Context(), &user.DefaultInfo{Name: name, Groups: []string{"system:authenticated"}}))
		}
		next.ServeHTTP(w, r)
	})
}

// fakeAuthz is the delegated authorizer: admin may do everything, alice may get
// pods.metrics.k8s.io in the namespace shop, nodereader nodes.metrics.k8s.io, anyone
// else nothing; the authorizer fails for "broken". It records every call.
type fakeAuthz struct {
	mu    sync.Mutex
	calls []authorizer.Attributes
}

func (a *fakeAuthz) Authorize(_ context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	a.mu.Lock()
	a.calls = append(a.calls, attrs)
	a.mu.Unlock()
	switch attrs.GetUser().GetName() {
	case "admin":
		return authorizer.DecisionAllow, "", nil
	case "alice":
		if attrs.IsResourceRequest() && attrs.GetVerb() == "get" && attrs.GetAPIGroup() == "metrics.k8s.io" &&
			attrs.GetResource() == "pods" && attrs.GetNamespace() == "shop" && attrs.GetSubresource() == "" {
			return authorizer.DecisionAllow, "", nil
		}
	case "nodereader":
		if attrs.IsResourceRequest() && attrs.GetVerb() == "get" && attrs.GetAPIGroup() == "metrics.k8s.io" &&
			attrs.GetResource() == "nodes" && attrs.GetNamespace() == "" && attrs.GetSubresource() == "" {
			return authorizer.DecisionAllow, "", nil
		}
	case "broken":
		return authorizer.DecisionNoOpinion, "", errTestAuthz
	}
	return authorizer.DecisionNoOpinion, "no RBAC policy matched", nil
}

func (a *fakeAuthz) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

var errTestAuthz = errors.New("webhook unreachable")

// get sends GET path (with its query) as user ("" for none), with optional headers as
// name, value pairs.
func get(t testing.TB, h http.Handler, user, path string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, h, httptest.NewRequest(http.MethodGet, path, nil), user, headers...)
}

func do(t testing.TB, h http.Handler, r *http.Request, user string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	if user != "" {
		r.Header.Set(userHeader, user)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// Decoded responses. Pointers tell a null (a gap) from a value.

type respJSON struct {
	Query struct {
		Start, End, Step string
		StepSeconds      float64
		Points           int
		Resources        []string
		Agg              string
		Summary          []string
		View             string
		Resolution       string
		Sources          []struct{ Source, From, To string }
	} `json:"query"`
	Timestamps []string     `json:"timestamps"`
	Series     []seriesResp `json:"series"`
}

type seriesResp struct {
	Object struct {
		Kind, Namespace, Name, UID, Node, Container string
		QoSClass                                    string `json:"qosClass"`
		Owner, Controller                           *catalog.Owner
		Labels                                      map[string]string
		FirstSeen, LastSeen, DeletedAt              *time.Time
		Deleted                                     bool
		Members                                     *int
	} `json:"object"`
	Resources map[string]*resourceResp `json:"resources"`
}

type resourceResp struct {
	Unit        string
	Values      []*float64
	Requests    []*float64
	Limits      []*float64
	Capacity    []*float64
	Allocatable []*float64
	Summary     map[string]*float64
	Latest      map[string]*float64
}

type errorResp struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Status     string `json:"status"`
	Code       int    `json:"code"`
	Reason     string `json:"reason"`
	Parameter  string `json:"parameter"`
	Message    string `json:"message"`
}

// decode checks that w is a 200 JSON response and decodes it strictly.
func decode(t testing.TB, w *httptest.ResponseRecorder) *respJSON {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", w.Code, trim(w.Body.String()))
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var out respJSON
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode %s: %v", trim(w.Body.String()), err)
	}
	return &out
}

func decodeError(t testing.TB, w *httptest.ResponseRecorder) errorResp {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	var out errorResp
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode error body %q: %v", w.Body, err)
	}
	if out.Kind != "Status" || out.APIVersion != "v1" || out.Status != "Failure" || out.Code != w.Code {
		t.Errorf("error body %+v, want a v1 Status, Failure, code %d", out, w.Code)
	}
	return out
}

// parseCSV checks that w is a 200 CSV response and returns its rows, header first.
func parseCSV(t testing.TB, w *httptest.ResponseRecorder) [][]string {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("Content-Type %q, want text/csv", ct)
	}
	rows, err := csv.NewReader(bytes.NewReader(w.Body.Bytes())).ReadAll()
	if err != nil {
		t.Fatalf("parse CSV: %v\n%s", err, w.Body)
	}
	if len(rows) == 0 {
		t.Fatal("empty CSV")
	}
	return rows
}

// csvRecords returns the rows of a CSV response as maps from the header's names.
func csvRecords(t testing.TB, rows [][]string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, r := range rows[1:] {
		m := make(map[string]string, len(r))
		for i, name := range rows[0] {
			m[name] = r[i]
		}
		out = append(out, m)
	}
	return out
}

// seriesOf returns the one series of r whose object has the given kind and uid (or
// name, for an object without a uid).
func seriesOf(t testing.TB, r *respJSON, kind, key string) *seriesResp {
	t.Helper()
	var found *seriesResp
	for i := range r.Series {
		s := &r.Series[i]
		if s.Object.Kind == kind && (s.Object.UID == key || s.Object.UID == "" && s.Object.Name == key) {
			if found != nil {
				t.Fatalf("two %s series %q", kind, key)
			}
			found = s
		}
	}
	if found == nil {
		t.Fatalf("no %s series %q in %d series", kind, key, len(r.Series))
	}
	return found
}

// trim shortens a response body for a failure message.
func trim(s string) string {
	if len(s) > 500 {
		return s[:500] + "…"
	}
	return s
}

// Logging.

func slogt(t testing.TB) *slog.Logger {
	if testing.Short() || os.Getenv("HTTPAPI_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return testlog.New(t)
}

// The model: what the API documents a series' values to be, computed from the samples
// the fixture writes, independently of the TSDB's code. A CPU raw point is the rate
// between two consecutive samples, over the interval between them, unless the counter
// decreased or the samples are more than 2.5 resolutions apart; a memory raw point is a
// sample. A step t covers (t-step, t]: it holds the CPU points whose interval overlaps
// it, weighed by the overlap in the average, and the memory samples in it; a step
// without a memory sample that lies between two samples at most 2.5 resolutions apart
// takes the earlier one.

// seriesKey names one stored series of the fixture.
type seriesKey struct {
	object         tsdb.Object
	node, uid, ctr string
}

// samples returns every stored sample of f, by series, oldest first.
func (f *fixture) samples() map[seriesKey][]tsdb.Sample {
	out := map[seriesKey][]tsdb.Sample{}
	for _, b := range f.batches() {
		for _, n := range b.Nodes {
			k := seriesKey{object: tsdb.ObjectNode, node: n.Node}
			out[k] = append(out[k], n.NodeSample)
			for _, p := range n.Pods {
				k := seriesKey{object: tsdb.ObjectPod, node: n.Node, uid: p.UID}
				out[k] = append(out[k], p.Sample)
			}
			for _, c := range n.Containers {
				k := seriesKey{object: tsdb.ObjectContainer, node: n.Node, uid: c.UID, ctr: c.Container}
				out[k] = append(out[k], c.Sample)
			}
		}
	}
	return out
}

// rawPoint is one raw point of the model.
type rawPoint struct {
	from, t time.Time // the interval a CPU point covers; a memory point's from is t
	v, w    float64   // value and weight in the summary's average
}

// cpuMem returns a reading of CPU and memory.
func cpuMem(ts time.Time, cpuSeconds, memBytes float64) tsdb.Sample {
	s := tsdb.Sample{Time: ts}
	s.Set(tsdb.ResourceCPU, cpuSeconds)
	s.Set(tsdb.ResourceMemory, memBytes)
	return s
}

// rawPoints returns the raw points of one series' samples.
func rawPoints(samples []tsdb.Sample, r tsdb.Resource) []rawPoint {
	var out []rawPoint
	for i, s := range samples {
		switch r {
		case tsdb.ResourceMemory:
			out = append(out, rawPoint{from: s.Time, t: s.Time, v: s.Values[tsdb.ResourceMemory], w: 1})
		case tsdb.ResourceCPU:
			if i == 0 {
				continue
			}
			prev := samples[i-1]
			dt := s.Time.Sub(prev.Time)
			if dt > res*5/2 || s.Values[tsdb.ResourceCPU] < prev.Values[tsdb.ResourceCPU] {
				continue
			}
			out = append(out, rawPoint{from: prev.Time, t: s.Time, v: (s.Values[tsdb.ResourceCPU] - prev.Values[tsdb.ResourceCPU]) / dt.Seconds(), w: dt.Seconds()})
		}
	}
	return out
}

// grid is a query's steps.
type grid struct {
	start, end time.Time
	step       time.Duration
}

// aligned returns the grid the API answers g with: its ends moved out to whole
// multiples of the step since the Unix epoch.
func (g grid) aligned() grid {
	down := func(t time.Time) time.Time { return time.Unix(0, t.UnixNano()/int64(g.step)*int64(g.step)).UTC() }
	a := grid{start: down(g.start), end: down(g.end), step: g.step}
	if a.end.Before(g.end) {
		a.end = a.end.Add(g.step)
	}
	return a
}

func (g grid) n() int             { return int(g.end.Sub(g.start)/g.step) + 1 }
func (g grid) at(i int) time.Time { return g.start.Add(time.Duration(i) * g.step) }
func (g grid) String() string {
	return fmt.Sprintf("start=%s&end=%s&step=%s", g.start.Format(time.RFC3339), g.end.Format(time.RFC3339), g.step)
}
func minuteGrid(from, to int) grid {
	return grid{at(time.Duration(from) * time.Minute), at(time.Duration(to) * time.Minute), time.Minute}
}
func (g grid) in(t time.Time, i int) bool { return t.After(g.at(i).Add(-g.step)) && !t.After(g.at(i)) }

// expectAvg returns the model's avg step values of one series; NaN is a gap.
func expectAvg(samples []tsdb.Sample, r tsdb.Resource, g grid) []float64 {
	pts := rawPoints(samples, r)
	out := make([]float64, g.n())
	for i := range out {
		lo, hi := g.at(i).Add(-g.step), g.at(i)
		sum, w := 0.0, 0.0
		for _, p := range pts {
			switch r {
			case tsdb.ResourceCPU:
				// The part of (p.from, p.t] inside (lo, hi].
				from, to := p.from, p.t
				if from.Before(lo) {
					from = lo
				}
				if to.After(hi) {
					to = hi
				}
				if d := to.Sub(from); d > 0 {
					sum += p.v * d.Seconds()
					w += d.Seconds()
				}
			default:
				if g.in(p.t, i) {
					sum += p.v
					w++
				}
			}
		}
		if w == 0 && r != tsdb.ResourceCPU {
			// No sample in the step: the last one before it, if the next one is after it
			// and within 2.5 resolutions.
			for j := 1; j < len(pts); j++ {
				a, b := pts[j-1], pts[j]
				if !a.t.After(lo) && b.t.After(hi) && b.t.Sub(a.t) <= res*5/2 {
					sum, w = a.v, 1
				}
			}
		}
		out[i] = math.NaN()
		if w > 0 {
			out[i] = sum / w
		}
	}
	return out
}

// sumSteps adds step values as totals do: a gap adds nothing, all gaps make a gap.
func sumSteps(n int, members ...[]float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.NaN()
		for _, m := range members {
			if !math.IsNaN(m[i]) {
				if math.IsNaN(out[i]) {
					out[i] = 0
				}
				out[i] += m[i]
			}
		}
	}
	return out
}

// values returns a response's values with NaN for null.
func values(vs []*float64) []float64 {
	out := make([]float64, len(vs))
	for i, v := range vs {
		out[i] = math.NaN()
		if v != nil {
			out[i] = *v
		}
	}
	return out
}

// close reports whether a and b agree within 1e-9 (relative for large values), both
// NaN included.
func closeTo(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

// checkValues compares got with want step by step.
func checkValues(t testing.TB, what string, got []*float64, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	for i, g := range values(got) {
		if !closeTo(g, want[i]) {
			t.Errorf("%s: step %d is %v, want %v", what, i, g, want[i])
		}
	}
}

// newBudget returns a query budget of size slots.
func newBudget(t testing.TB, size int) *budget.Budget {
	t.Helper()
	b, err := budget.New(size)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newQueuedBudget returns a query budget of size slots and a queue of queue callers
// waiting at most wait.
func newQueuedBudget(t testing.TB, size, queue int, wait time.Duration) *budget.Budget {
	t.Helper()
	b, err := budget.NewQueued(size, queue, wait)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
