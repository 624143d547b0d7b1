package httpapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// TestRollout: the Deployment's total follows its pods through a rollout.
func TestRollout(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	g := minuteGrid(0, 20)
	r := decode(t, get(t, h, "admin", "/history/v1/namespaces/shop/deployments/web?"+g.String()))
	if len(r.Series) != 1 {
		t.Fatalf("%d series, want the Deployment's total", len(r.Series))
	}
	s := r.Series[0]
	if s.Object.Kind != "Deployment" || s.Object.Namespace != "shop" || s.Object.Name != "web" {
		t.Errorf("object %+v, want Deployment shop/web", s.Object)
	}
	if s.Object.Members == nil || *s.Object.Members != 2 {
		t.Errorf("members %v, want 2 (web-a and web-b)", s.Object.Members)
	}
	cpu := s.Resources["cpu"]
	if cpu == nil || cpu.Unit != "cores" || len(cpu.Values) != g.n() || len(cpu.Requests) != g.n() {
		t.Fatalf("cpu %+v: want %d values and requests in cores", cpu, g.n())
	}
	boundary := 10 // the step (9m, 10m] in which web-a is deleted and web-b created
	for i, v := range values(cpu.Values) {
		want := 0.2
		switch {
		case i == 0:
			want = math.NaN() // the first samples: no rate yet
		case i == boundary:
			continue
		case i > boundary:
			want = 0.4
		}
		if !closeTo(v, want) {
			t.Errorf("cpu at %s: %v, want %v", g.at(i).Format("15:04"), v, want)
		}
	}
	for i, v := range values(cpu.Requests) {
		if i != boundary && !closeTo(v, 0.1) {
			t.Errorf("cpu requests at %s: %v, want 0.1 (one pod of 100m)", g.at(i).Format("15:04"), v)
		}
	}
	if v := values(cpu.Requests)[boundary]; !closeTo(v, 0.2) {
		t.Errorf("cpu requests at the boundary: %v, want 0.2 (both pods lived in the step)", v)
	}
	for i, v := range values(cpu.Limits) {
		if i != boundary && !closeTo(v, 0.2) {
			t.Errorf("cpu limits at %s: %v, want 0.2", g.at(i).Format("15:04"), v)
		}
	}
	mem := s.Resources["memory"]
	if mem == nil || mem.Unit != "bytes" {
		t.Fatalf("memory %+v", mem)
	}
	for i, v := range values(mem.Limits) {
		if !math.IsNaN(v) {
			t.Errorf("memory limits at step %d: %v, want null (no container limits memory)", i, v)
		}
	}
	if l := mem.Latest["requests"]; l == nil || *l != 128*mi {
		t.Errorf("latest memory requests %v, want %d", l, 128*mi)
	}
}

// TestValuesMatchModel compares every kind of series with the model's values computed
// from the samples the fixture wrote.
func TestValuesMatchModel(t *testing.T) {
	f := defaultFixture()
	e := newEnv(t, f)
	h := e.handler(t)
	samples := f.samples()
	byKind := func(obj tsdb.Object, match func(seriesKey) bool) [][]tsdb.Sample {
		var keys []seriesKey
		for k := range samples {
			if k.object == obj && match(k) {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(a, b seriesKey) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		var out [][]tsdb.Sample
		for _, k := range keys {
			out = append(out, samples[k])
		}
		return out
	}
	pod := func(uid string) func(seriesKey) bool { return func(k seriesKey) bool { return k.uid == uid } }
	podsOf := func(uids ...string) func(seriesKey) bool {
		return func(k seriesKey) bool { return slices.Contains(uids, k.uid) }
	}
	all := func(seriesKey) bool { return true }
	type want struct {
		kind, key string
		obj       tsdb.Object
		match     func(seriesKey) bool
	}
	// Steps of whole rounds, and steps across rounds (20s) and shorter than one (7s).
	for _, g := range []grid{minuteGrid(0, 20), {at(0), at(20 * time.Minute), 5 * time.Minute}, {at(30 * time.Second), at(17 * time.Minute), 45 * time.Second},
		{at(0), at(20 * time.Minute), 20 * time.Second}, {at(4 * time.Minute), at(15*time.Minute + 30*time.Second), 7 * time.Second}} {
		for _, tc := range []struct {
			path   string
			series []want
		}{
			{"/cluster", []want{{"Cluster", "", tsdb.ObjectNode, all}}},
			{"/nodes", []want{
				{"Node", "node-uid-n1", tsdb.ObjectNode, func(k seriesKey) bool { return k.node == "n1" }},
				{"Node", "node-uid-n2", tsdb.ObjectNode, func(k seriesKey) bool { return k.node == "n2" }},
			}},
			{"/namespaces", []want{
				{"Namespace", "other", tsdb.ObjectPod, pod("u-x")},
				{"Namespace", "shop", tsdb.ObjectPod, podsOf("u-web-a", "u-web-b", "u-db-0-1", "u-db-0-2")},
			}},
			{"/namespaces/shop?labelSelector=app=db", []want{{"Namespace", "shop", tsdb.ObjectPod, podsOf("u-db-0-1", "u-db-0-2")}}},
			{"/namespaces/shop/pods", []want{
				{"Pod", "u-db-0-1", tsdb.ObjectPod, pod("u-db-0-1")},
				{"Pod", "u-db-0-2", tsdb.ObjectPod, pod("u-db-0-2")},
				{"Pod", "u-web-a", tsdb.ObjectPod, pod("u-web-a")},
				{"Pod", "u-web-b", tsdb.ObjectPod, pod("u-web-b")},
			}},
			{"/namespaces/other/pods/x", []want{{"Pod", "u-x", tsdb.ObjectPod, pod("u-x")}}},
			{"/pods/u-web-b/containers", []want{{"Container", "u-web-b", tsdb.ObjectContainer, pod("u-web-b")}}},
			{"/namespaces/shop/statefulsets/db", []want{{"StatefulSet", "db", tsdb.ObjectPod, podsOf("u-db-0-1", "u-db-0-2")}}},
			{"/namespaces/shop/replicasets/web-2", []want{{"ReplicaSet", "web-2", tsdb.ObjectPod, pod("u-web-b")}}},
		} {
			sep := "?"
			if strings.Contains(tc.path, "?") {
				sep = "&"
			}
			path := "/history/v1" + tc.path + sep + g.String()
			t.Run(path, func(t *testing.T) {
				r := decode(t, get(t, h, "admin", path))
				g := g.aligned()
				if r.Query.Start != g.start.Format(time.RFC3339) || r.Query.End != g.end.Format(time.RFC3339) || r.Query.Points != g.n() {
					t.Errorf("grid %s to %s, %d points; want %s", r.Query.Start, r.Query.End, r.Query.Points, g)
				}
				if len(r.Series) != len(tc.series) {
					t.Fatalf("%d series, want %d", len(r.Series), len(tc.series))
				}
				for i, w := range tc.series {
					s := r.Series[i]
					if s.Object.Kind != w.kind || (s.Object.UID != w.key && s.Object.Name != w.key) {
						t.Fatalf("series %d is %s %s/%s %s, want %s %s", i, s.Object.Kind, s.Object.Namespace, s.Object.Name, s.Object.UID, w.kind, w.key)
					}
					members := byKind(w.obj, w.match)
					if len(members) == 0 {
						t.Fatal("the model has no samples")
					}
					for _, res := range []tsdb.Resource{tsdb.ResourceCPU, tsdb.ResourceMemory} {
						var steps [][]float64
						for _, m := range members {
							steps = append(steps, expectAvg(m, res, g))
						}
						checkValues(t, fmt.Sprintf("series %d %s", i, res), s.Resources[res.String()].Values, sumSteps(g.n(), steps...))
					}
				}
			})
		}
	}
}

// TestDeletedPod: a deleted pod is answered by name and by UID, and says it is gone.
func TestDeletedPod(t *testing.T) {
	f := defaultFixture()
	e := newEnv(t, f)
	h := e.handler(t)
	g := minuteGrid(0, 20)
	for _, path := range []string{"/history/v1/namespaces/shop/pods/web-a", "/history/v1/pods/u-web-a"} {
		r := decode(t, get(t, h, "admin", path+"?"+g.String()))
		if len(r.Series) != 1 {
			t.Fatalf("%s: %d series, want 1", path, len(r.Series))
		}
		o := r.Series[0].Object
		if o.Kind != "Pod" || o.UID != "u-web-a" || o.Name != "web-a" || o.Node != "n1" {
			t.Errorf("%s: object %+v", path, o)
		}
		if !o.Deleted || o.DeletedAt == nil || !o.DeletedAt.Equal(at(f.pod("u-web-a").to)) {
			t.Errorf("%s: deleted %v at %v, want deleted at %s", path, o.Deleted, o.DeletedAt, at(f.pod("u-web-a").to))
		}
		if o.Owner == nil || o.Owner.Kind != "Deployment" || o.Controller == nil || o.Controller.Name != "web-1" {
			t.Errorf("%s: owner %v, controller %v", path, o.Owner, o.Controller)
		}
		cpu := values(r.Series[0].Resources["cpu"].Values)
		for i, v := range cpu {
			want := math.NaN()
			if i >= 1 && i <= 10 {
				want = 0.2
			}
			if !closeTo(v, want) {
				t.Errorf("%s: cpu at %s is %v, want %v", path, g.at(i).Format("15:04"), v, want)
			}
		}
	}
	// db-0 had two incarnations: both are answered, oldest first, the first deleted.
	r := decode(t, get(t, h, "admin", "/history/v1/namespaces/shop/pods/db-0?"+g.String()))
	var got []string
	for _, s := range r.Series {
		got = append(got, fmt.Sprintf("%s deleted=%v", s.Object.UID, s.Object.Deleted))
	}
	if want := []string{"u-db-0-1 deleted=true", "u-db-0-2 deleted=false"}; !slices.Equal(got, want) {
		t.Errorf("db-0: %q, want %q", got, want)
	}
	// A range after the first incarnation's life answers the second only.
	r = decode(t, get(t, h, "admin", "/history/v1/namespaces/shop/pods/db-0?"+minuteGrid(10, 20).String()))
	if len(r.Series) != 1 || r.Series[0].Object.UID != "u-db-0-2" {
		t.Errorf("db-0 from 10 min: %d series, want u-db-0-2 only", len(r.Series))
	}
}

// TestSummary: a pod's summary aggregates its raw points (one per scrape) of
// (start-step, end], whatever the step; a total's its step values.
func TestSummary(t *testing.T) {
	// A pod whose usage changes every round, so that each percentile is another value.
	usage := func(k int) float64 { return 0.05 * float64(1+(k*7)%20) }
	f := &fixture{
		rounds: 80, now: at(time.Hour),
		nodes: []nodeSpec{{name: "n1", baseCores: 0.5, baseMem: gi}},
		pods: []podSpec{{uid: "u-v", ns: "shop", name: "v", node: "n1", owner: deploy("v"),
			containers: []ctrSpec{{name: "app", cores: usage, mem: 10 * mi}}}},
	}
	e := newEnv(t, f)
	h := e.handler(t)
	for _, g := range []grid{
		{at(5 * time.Minute), at(15 * time.Minute), time.Minute},
		{at(5 * time.Minute), at(15 * time.Minute), 5 * time.Minute},
		{at(0), at(20 * time.Minute), 15 * time.Second},
	} {
		// The raw points: the usage of each round whose interval ends in (start-step, end].
		var pts []float64
		for k := 1; k <= f.rounds; k++ {
			if ts := at(time.Duration(k) * res); ts.After(g.start.Add(-g.step)) && !ts.After(g.end) {
				pts = append(pts, usage(k))
			}
		}
		slices.Sort(pts)
		quantile := func(q float64) float64 {
			rank := q * float64(len(pts)-1)
			lo := int(math.Floor(rank))
			hi := min(lo+1, len(pts)-1)
			return pts[lo] + (pts[hi]-pts[lo])*(rank-float64(lo))
		}
		sum := 0.0
		for _, p := range pts {
			sum += p
		}
		want := map[string]float64{
			"p50": quantile(0.5), "p90": quantile(0.9), "p95": quantile(0.95), "p99": quantile(0.99),
			"min": pts[0], "max": pts[len(pts)-1], "avg": sum / float64(len(pts)), "count": float64(len(pts)),
		}
		if want["p95"] == want["p90"] || want["p95"] == want["max"] {
			t.Fatalf("the fixture does not tell p95 from p90 or max: %v", want)
		}
		for _, path := range []string{"/history/v1/namespaces/shop/pods/v", "/history/v1/pods/u-v", "/history/v1/namespaces/shop/pods/v/containers"} {
			for _, view := range []string{"series", "summary"} {
				r := decode(t, get(t, h, "admin", path+"?resource=cpu&view="+view+"&"+g.String()))
				if len(r.Series) != 1 {
					t.Fatalf("%s: %d series", path, len(r.Series))
				}
				summary := r.Series[0].Resources["cpu"].Summary
				for name, w := range want {
					if v := summary[name]; v == nil || !closeTo(*v, w) {
						t.Errorf("%s %s view=%s: %s = %v, want %v", path, g, view, name, ptrString(v), w)
					}
				}
			}
		}
		// The Deployment's total summarizes its step values.
		r := decode(t, get(t, h, "admin", "/history/v1/namespaces/shop/deployments/v?resource=cpu&summary=max,count&"+g.String()))
		steps := values(r.Series[0].Resources["cpu"].Values)
		steps = slices.DeleteFunc(steps, math.IsNaN)
		summary := r.Series[0].Resources["cpu"].Summary
		if v := summary["count"]; v == nil || *v != float64(len(steps)) {
			t.Errorf("deployment %s: count %v, want %d steps", g, ptrString(v), len(steps))
		}
		if v := summary["max"]; v == nil || !closeTo(*v, slices.Max(steps)) {
			t.Errorf("deployment %s: max %v, want %v", g, ptrString(v), slices.Max(steps))
		}
	}
}

func ptrString(v *float64) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprint(*v)
}

// TestGaps: steps without samples are null in JSON and empty in CSV, never zero.
func TestGaps(t *testing.T) {
	f := defaultFixture()
	e := newEnv(t, f)
	h := e.handler(t)
	g := minuteGrid(0, 20)
	x := f.pod("u-x")
	// The model's gaps: the steps without a raw point.
	samples := f.samples()[seriesKey{object: tsdb.ObjectPod, node: "n2", uid: "u-x"}]
	want := map[tsdb.Resource][]float64{}
	for _, res := range []tsdb.Resource{tsdb.ResourceCPU, tsdb.ResourceMemory} {
		want[res] = expectAvg(samples, res, g)
	}
	var gaps []int
	for i, v := range want[tsdb.ResourceMemory] {
		if math.IsNaN(v) {
			gaps = append(gaps, i)
		}
	}
	if len(gaps) == 0 || !x.skip(53) {
		t.Fatal("the fixture has no gap")
	}

	r := decode(t, get(t, h, "admin", "/history/v1/namespaces/other/pods/x?"+g.String()))
	for res, w := range want {
		checkValues(t, res.String(), r.Series[0].Resources[res.String()].Values, w)
	}
	// Raw JSON: a gap is the literal null.
	w := get(t, h, "admin", "/history/v1/namespaces/other/pods/x?resource=memory&summary=none&"+g.String())
	var vals []string
	for _, v := range want[tsdb.ResourceMemory] {
		if math.IsNaN(v) {
			vals = append(vals, "null")
		} else {
			vals = append(vals, fmt.Sprintf("%.0f", v))
		}
	}
	if s := `"values":[` + strings.Join(vals, ",") + `]`; !strings.Contains(w.Body.String(), s) {
		t.Errorf("memory values: want %s in\n%s", s, w.Body)
	}

	// CSV: a gap is an empty cell.
	rows := parseCSV(t, get(t, h, "admin", "/history/v1/namespaces/other/pods/x?format=csv&"+g.String()))
	recs := csvRecords(t, rows)
	if len(recs) != 2*g.n() {
		t.Fatalf("%d CSV rows, want %d", len(recs), 2*g.n())
	}
	for _, rec := range recs {
		ts, err := time.Parse(time.RFC3339, rec["timestamp"])
		if err != nil {
			t.Fatal(err)
		}
		i := int(ts.Sub(g.start) / g.step)
		res, ok := tsdb.ParseResource(rec["resource"])
		if !ok {
			t.Fatalf("CSV resource %q", rec["resource"])
		}
		wv := want[res][i]
		if math.IsNaN(wv) {
			if rec["value"] != "" {
				t.Errorf("CSV %s %s: %q, want an empty cell", rec["resource"], rec["timestamp"], rec["value"])
			}
			continue
		}
		var got float64
		if _, err := fmt.Sscan(rec["value"], &got); err != nil || !closeTo(got, wv) {
			t.Errorf("CSV %s %s: %q, want %v", rec["resource"], rec["timestamp"], rec["value"], wv)
		}
	}
}

// TestCounterReset: a counter that drops (a restarted container) never makes a
// negative rate; the usage around it is still right.
func TestCounterReset(t *testing.T) {
	f := defaultFixture()
	e := newEnv(t, f)
	h := e.handler(t)
	p := f.pod("u-web-b")
	if p.reset == 0 {
		t.Fatal("no reset in the fixture")
	}
	ctrs := p.counters(f.rounds)["app"]
	if !(ctrs[p.reset] < ctrs[p.reset-1]) {
		t.Fatalf("the counter does not drop at round %d: %v then %v", p.reset, ctrs[p.reset-1], ctrs[p.reset])
	}
	resetAt := at(time.Duration(p.reset) * res)
	g := grid{at(11 * time.Minute), at(20 * time.Minute), time.Minute}
	for _, path := range []string{"/history/v1/pods/u-web-b", "/history/v1/pods/u-web-b/containers", "/history/v1/namespaces/shop/deployments/web"} {
		for _, agg := range []string{"avg", "min", "max"} {
			r := decode(t, get(t, h, "admin", path+"?resource=cpu&agg="+agg+"&"+g.String()))
			cpu := r.Series[len(r.Series)-1].Resources["cpu"]
			for i, v := range values(cpu.Values) {
				if !closeTo(v, 0.4) {
					t.Errorf("%s agg=%s: cpu at %s (reset at %s) is %v, want 0.4", path, agg, g.at(i).Format("15:04"), resetAt.Format("15:04"), v)
				}
			}
			if m := cpu.Summary["min"]; m == nil || *m < 0 {
				t.Errorf("%s agg=%s: summary min %v", path, agg, ptrString(m))
			}
		}
	}
}

// TestTotalsAreSums: a total is, step by step, the sum of its members.
func TestTotalsAreSums(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	g := minuteGrid(0, 20)
	for _, tc := range []struct {
		total, members string
		lines          bool // the total's requests and limits (or capacity) are its members' sums
	}{
		{"/cluster", "/nodes", true},
		{"/cluster?labelSelector=pool=b", "/nodes/n2", true},
		{"/namespaces/shop", "/namespaces/shop/pods", true},
		{"/namespaces/shop?labelSelector=app=web", "/namespaces/shop?by=pod&labelSelector=app=web", true},
		{"/namespaces/shop/deployments/web", "/namespaces/shop/deployments/web?by=pod", true},
		// A pod's usage is its containers' (its CPU limit is not: the sidecar has none).
		{"/namespaces/shop/pods/db-0?resource=cpu", "/namespaces/shop/pods/db-0/containers?resource=cpu", false},
	} {
		q := func(p string) string {
			if strings.Contains(p, "?") {
				return "/history/v1" + p + "&" + g.String()
			}
			return "/history/v1" + p + "?" + g.String()
		}
		total := decode(t, get(t, h, "admin", q(tc.total)))
		members := decode(t, get(t, h, "admin", q(tc.members)))
		if len(members.Series) < 2 && !strings.Contains(tc.total, "pool=b") {
			t.Errorf("%s: %d members", tc.members, len(members.Series))
		}
		for _, res := range total.Query.Resources {
			// db-0's total is per incarnation; the others have one total series.
			var want [][]float64
			for _, s := range members.Series {
				want = append(want, values(s.Resources[res].Values))
			}
			sum := sumSteps(g.n(), want...)
			var got [][]float64
			for _, s := range total.Series {
				got = append(got, values(s.Resources[res].Values))
			}
			checkValues(t, tc.total+" "+res, ptrs(sumSteps(g.n(), got...)), sum)
			for _, line := range []string{"requests", "limits", "capacity", "allocatable"} {
				var want, got [][]float64
				for _, s := range members.Series {
					want = append(want, values(lineOf(s.Resources[res], line)))
				}
				for _, s := range total.Series {
					got = append(got, values(lineOf(s.Resources[res], line)))
				}
				if tc.lines && len(lineOf(members.Series[0].Resources[res], line)) > 0 {
					checkValues(t, tc.total+" "+res+" "+line, ptrs(sumSteps(g.n(), got...)), sumSteps(g.n(), want...))
				}
			}
		}
	}
}

func lineOf(r *resourceResp, name string) []*float64 {
	switch name {
	case "requests":
		return r.Requests
	case "limits":
		return r.Limits
	case "capacity":
		return r.Capacity
	case "allocatable":
		return r.Allocatable
	}
	return nil
}

func ptrs(vs []float64) []*float64 {
	out := make([]*float64, len(vs))
	for i, v := range vs {
		if !math.IsNaN(v) {
			out[i] = &v
		}
	}
	return out
}

// TestLines: requests and limits (pods) and capacity and allocatable (nodes) come from
// the catalog, in cores and bytes, for the steps during which the object existed. A
// single object's are exactly the catalog's quantities (3800m is 3.8 cores, not
// 3.8000000000000003).
func TestLines(t *testing.T) {
	f := defaultFixture()
	e := newEnv(t, f)
	h := e.handler(t)
	g := minuteGrid(0, 20)
	// cores returns millicores in cores as a client would compute it.
	cores := func(m int64) float64 { return float64(m) / 1000 }
	r := decode(t, get(t, h, "admin", "/history/v1/nodes/n1?"+g.String()))
	n1 := f.nodes[0]
	for res, conv := range map[string]func(int64) float64{"cpu": cores, "memory": func(b int64) float64 { return float64(b) }} {
		rr := r.Series[0].Resources[res]
		wantCap, wantAlloc := conv(n1.capacity[res]), conv(n1.allocatable[res])
		for i := range g.n() {
			if v := values(rr.Capacity)[i]; v != wantCap {
				t.Errorf("n1 %s capacity at step %d: %v, want %v", res, i, v, wantCap)
			}
			if v := values(rr.Allocatable)[i]; v != wantAlloc {
				t.Errorf("n1 %s allocatable at step %d: %v, want %v", res, i, v, wantAlloc)
			}
		}
		if l := rr.Latest["allocatable"]; l == nil || *l != wantAlloc {
			t.Errorf("n1 %s latest allocatable %v, want %v", res, ptrString(l), wantAlloc)
		}
	}
	// db-0: the init container's request does not count; the sidecar's unlimited CPU
	// leaves the pod without a CPU limit.
	r = decode(t, get(t, h, "admin", "/history/v1/namespaces/shop/pods/db-0?"+g.String()))
	if len(r.Series) != 2 {
		t.Fatalf("%d series, want 2", len(r.Series))
	}
	for _, s := range r.Series {
		p := f.pod(s.Object.UID)
		var reqCPU, reqMem int64
		for _, c := range p.containers {
			if !c.init {
				reqCPU += c.req["cpu"]
				reqMem += c.req["memory"]
			}
		}
		cpu, mem := s.Resources["cpu"], s.Resources["memory"]
		for i := range g.n() {
			ts := g.at(i)
			alive := !ts.Before(at(p.from)) && (p.to == 0 || at(p.to).After(ts.Add(-g.step)))
			wantCPU, wantMem := math.NaN(), math.NaN()
			if alive {
				wantCPU, wantMem = cores(reqCPU), float64(reqMem)
			}
			if v := values(cpu.Requests)[i]; v != wantCPU && !(math.IsNaN(v) && math.IsNaN(wantCPU)) {
				t.Errorf("%s cpu requests at %s: %v, want %v", p.uid, ts.Format("15:04"), v, wantCPU)
			}
			if v := values(cpu.Limits)[i]; !math.IsNaN(v) {
				t.Errorf("%s cpu limits at %s: %v, want null", p.uid, ts.Format("15:04"), v)
			}
			if v := values(mem.Requests)[i]; v != wantMem && !(math.IsNaN(v) && math.IsNaN(wantMem)) {
				t.Errorf("%s memory requests at %s: %v, want %v", p.uid, ts.Format("15:04"), v, wantMem)
			}
		}
	}
	// Containers have their own.
	r = decode(t, get(t, h, "admin", "/history/v1/pods/u-db-0-2/containers?"+g.String()))
	for _, s := range r.Series {
		var spec *ctrSpec
		for i, c := range f.pod("u-db-0-2").containers {
			if c.name == s.Object.Container {
				spec = &f.pod("u-db-0-2").containers[i]
			}
		}
		if spec == nil || spec.init {
			t.Fatalf("container %q", s.Object.Container)
		}
		last := values(s.Resources["cpu"].Limits)[g.n()-1]
		if lim, ok := spec.lim["cpu"]; ok && last != cores(lim) || !ok && !math.IsNaN(last) {
			t.Errorf("container %s: cpu limit %v, want %dm", spec.name, last, lim)
		}
	}
}

// TestIndex: the index and the OpenAPI document are served, and every endpoint the
// index lists is routed.
func TestIndex(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	for _, path := range []string{"/history/v1", "/history/v1/", "/history/v1/openapi.json"} {
		w := get(t, h, "admin", path)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s", path, w.Code, w.Header().Get("Content-Type"))
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Errorf("%s: invalid JSON %s", path, w.Body)
		}
	}
	var index struct {
		Endpoints []string `json:"endpoints"`
		OpenAPI   string   `json:"openapi"`
	}
	if err := json.Unmarshal(get(t, h, "admin", "/history/v1/").Body.Bytes(), &index); err != nil || len(index.Endpoints) < 10 {
		t.Fatalf("index: %v %v", index, err)
	}

	// The routes, the index and the OpenAPI document name the same paths: a route missing
	// from either, or a path of either that is not routed, fails.
	bare, err := New(e.config())
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	if err := chi.Walk(bare.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if method == http.MethodGet {
			routes = append(routes, route)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(routes)
	kinds := regexp.MustCompile(`\{[a-z]+(\|[a-z]+)+\}`) // {deployments|statefulsets|…} is {workloads}
	indexed := []string{Prefix, index.OpenAPI}
	for _, ep := range index.Endpoints {
		indexed = append(indexed, kinds.ReplaceAllString(ep, "{workloads}"))
	}
	slices.Sort(indexed)
	if diff := cmp.Diff(routes, indexed); diff != "" {
		t.Errorf("routes (-) and the index (+) differ:\n%s", diff)
	}
	var doc struct {
		Paths map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIJSON, &doc); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(routes, slices.Sorted(maps.Keys(doc.Paths))); diff != "" {
		t.Errorf("routes (-) and the OpenAPI document's paths (+) differ:\n%s", diff)
	}

	fill := strings.NewReplacer("{node}", "n1", "{namespace}", "shop", "{pod}", "web-a", "{uid}", "u-web-a", "{name}", "web")
	alternatives := regexp.MustCompile(`\{([a-z]+(\|[a-z]+)+)\}`)
	for _, ep := range index.Endpoints {
		paths := []string{ep}
		if m := alternatives.FindStringSubmatch(ep); m != nil {
			paths = nil
			for _, kind := range strings.Split(m[1], "|") {
				paths = append(paths, strings.Replace(ep, m[0], kind, 1))
			}
		}
		for _, p := range paths {
			p = fill.Replace(p)
			w := get(t, h, "admin", p+"?"+goldenRange)
			if w.Code == http.StatusOK {
				continue
			}
			// A workload kind without pods is a 404 of its own, not of the router's.
			if body := decodeError(t, w); w.Code != http.StatusNotFound || !strings.HasPrefix(body.Message, "no pod of ") {
				t.Errorf("%s (from %s): %d %s", p, ep, w.Code, body.Message)
			}
		}
	}
}

// TestSummaryViewAgrees: view=summary answers the same objects and summaries as
// view=series, also for objects without samples in the range (null, not zero).
func TestSummaryViewAgrees(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	for _, g := range []grid{minuteGrid(0, 20), minuteGrid(15, 20), {at(0), at(20 * time.Minute), 5 * time.Minute}} {
		for _, path := range []string{"/cluster", "/nodes", "/namespaces", "/namespaces/shop", "/namespaces/shop/pods",
			"/namespaces/shop/pods/db-0/containers", "/namespaces/shop/deployments/web", "/namespaces/shop/deployments/web?by=pod",
			"/pods/u-web-a", "/pods/u-web-a/containers", "/pods/u-db-0-1"} {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			p := "/history/v1" + path + sep + g.String()
			series := decode(t, get(t, h, "admin", p))
			summary := decode(t, get(t, h, "admin", p+"&view=summary"))
			if len(series.Series) != len(summary.Series) {
				t.Fatalf("%s: %d series, view=summary %d", p, len(series.Series), len(summary.Series))
			}
			for i, s := range series.Series {
				o := summary.Series[i]
				if o.Object.Kind != s.Object.Kind || o.Object.UID != s.Object.UID || o.Object.Name != s.Object.Name || o.Object.Container != s.Object.Container {
					t.Fatalf("%s: series %d is %+v, view=summary %+v", p, i, s.Object, o.Object)
				}
				for res, rr := range s.Resources {
					or := o.Resources[res]
					if or == nil || or.Values != nil {
						t.Fatalf("%s: view=summary %s: %+v", p, res, or)
					}
					for agg, v := range rr.Summary {
						if w := or.Summary[agg]; (v == nil) != (w == nil) || v != nil && !closeTo(*v, *w) {
							t.Errorf("%s %s %s %s: %s is %s, view=summary %s", p, s.Object.Kind, s.Object.Name+s.Object.Container, res, agg, ptrString(v), ptrString(w))
						}
					}
					for l, v := range rr.Latest {
						if w := or.Latest[l]; (v == nil) != (w == nil) || v != nil && *v != *w {
							t.Errorf("%s %s %s: latest %s is %s, view=summary %s", p, s.Object.Name, res, l, ptrString(v), ptrString(w))
						}
					}
				}
			}
		}
	}
}

// TestManyPods: more pods than one TSDB query names by UID (maxUIDMatch) are read from
// their namespace's series and filtered, and a namespace holding many more series than
// are asked for is no reason to refuse.
func TestManyPods(t *testing.T) {
	const selected = maxUIDMatch + 30
	const pods = 2*selected + 20 // more than twice the series asked for
	f := &fixture{rounds: 8, now: at(time.Hour), nodes: []nodeSpec{{name: "n1", baseCores: 0.5, baseMem: gi}}}
	for i := range pods {
		sel := "no"
		if i < selected {
			sel = "yes"
		}
		f.pods = append(f.pods, podSpec{
			uid: fmt.Sprintf("u-%04d", i), ns: "big", name: fmt.Sprintf("p-%04d", i), node: "n1",
			labels: map[string]string{"sel": sel}, owner: deploy("d"),
			containers: []ctrSpec{{name: "app", cores: constant(float64(i%7+1) / 16), mem: float64(i+1) * mi,
				req: map[string]int64{"cpu": int64(i%3+1) * 10}}},
		})
	}
	e := newEnv(t, f)
	cfg := e.config()
	cfg.MaxSeries = selected
	h := newTestHandler(t, cfg)
	g := grid{at(0), at(2 * time.Minute), 30 * time.Second}
	samples := f.samples()
	want := func(uid string, res tsdb.Resource) []float64 {
		return expectAvg(samples[seriesKey{object: tsdb.ObjectPod, node: "n1", uid: uid}], res, g)
	}

	r := decode(t, get(t, h, "admin", "/history/v1/namespaces/big/pods?labelSelector=sel%3Dyes&"+g.String()))
	if len(r.Series) != selected {
		t.Fatalf("%d series, want %d", len(r.Series), selected)
	}
	var cpu [][]float64
	for i, s := range r.Series {
		if uid := fmt.Sprintf("u-%04d", i); s.Object.UID != uid {
			t.Fatalf("series %d is %s, want %s", i, s.Object.UID, uid)
		}
		for _, res := range []tsdb.Resource{tsdb.ResourceCPU, tsdb.ResourceMemory} {
			checkValues(t, s.Object.UID+" "+res.String(), s.Resources[res.String()].Values, want(s.Object.UID, res))
		}
		cpu = append(cpu, want(s.Object.UID, tsdb.ResourceCPU))
	}
	// The selected pods' total, from the namespace's series too.
	for _, path := range []string{"/namespaces/big?labelSelector=sel%3Dyes", "/namespaces/big/deployments/d?labelSelector=sel%3Dyes"} {
		r = decode(t, get(t, h, "admin", "/history/v1"+path+"&"+g.String()))
		if len(r.Series) != 1 || r.Series[0].Object.Members == nil || *r.Series[0].Object.Members != selected {
			t.Fatalf("%s: %d series, members %v; want one total of %d", path, len(r.Series), r.Series[0].Object.Members, selected)
		}
		checkValues(t, path, r.Series[0].Resources["cpu"].Values, sumSteps(g.n(), cpu...))
	}
	// One more than the limit is refused.
	cfg.MaxSeries = selected - 1
	h = newTestHandler(t, cfg)
	if w := get(t, h, "admin", "/history/v1/namespaces/big/pods?labelSelector=sel%3Dyes&"+g.String()); w.Code != http.StatusUnprocessableEntity {
		t.Errorf("with MaxSeries %d: status %d, want 422", cfg.MaxSeries, w.Code)
	}
}

// TestTotalRequestsExact: a total's requests are summed in millicores and converted once,
// so three pods of 100m request 0.3 cores, not 0.1+0.1+0.1 = 0.30000000000000004.
func TestTotalRequestsExact(t *testing.T) {
	f := defaultFixture()
	for i, name := range []string{"w-1", "w-2", "w-3"} {
		f.pods = append(f.pods, podSpec{
			uid: "u-" + name, ns: "team", name: name, node: "n1", owner: deploy("w"),
			containers: []ctrSpec{{name: "app", cores: constant(0.1 * float64(i+1)), mem: 10 * mi,
				req: map[string]int64{"cpu": 100, "memory": 64 * mi}, lim: map[string]int64{"cpu": 100}}},
		})
	}
	h := newEnv(t, f).handler(t)
	for _, path := range []string{"/namespaces/team", "/namespaces/team/deployments/w"} {
		r := decode(t, get(t, h, "admin", "/history/v1"+path+"?"+goldenRange))
		cpu := r.Series[0].Resources["cpu"]
		for _, line := range map[string][]*float64{"requests": cpu.Requests, "limits": cpu.Limits} {
			for i, v := range line {
				if v == nil || *v != 0.3 {
					t.Fatalf("%s: step %d: %v, want exactly 0.3", path, i, v)
				}
			}
		}
		if got := cpu.Latest["requests"]; got == nil || *got != 0.3 {
			t.Errorf("%s: latest requests %v, want 0.3", path, got)
		}
	}
}
