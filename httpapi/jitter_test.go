package httpapi

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// jitterFixture is a steady workload scraped with kubelet timestamp jitter: each pod's
// and node's samples are at the round's time ± up to 40 % of the resolution (seeded), as
// a kubelet's stats times are. Namespace "steady" holds Deployment "steady" of three
// pods at 0.25 cores and 100 MiB each, and Deployment "flaky" of one pod at 0.1 cores and
// 50 MiB whose kubelet reports nothing for five rounds (flakySilent).
func jitterFixture(seed uint64) *fixture {
	const rounds = 120 // 30 minutes
	rng := rand.New(rand.NewPCG(seed, 0x6a697474))
	jitter := func() func(int) time.Duration {
		d := make([]time.Duration, rounds+1)
		for k := range d {
			d[k] = time.Duration((rng.Float64()*2 - 1) * 0.4 * float64(res))
		}
		return func(k int) time.Duration { return d[k] }
	}
	pod := func(name, owner, node string, cores, mem float64) podSpec {
		return podSpec{
			uid: "u-" + name, ns: "steady", name: name, node: node,
			labels: map[string]string{"app": owner}, owner: deploy(owner), qos: "Burstable",
			containers: []ctrSpec{{name: "app", cores: constant(cores), mem: mem}},
			jitter:     jitter(),
		}
	}
	flaky := pod("flaky-0", "flaky", "n2", 0.1, 50*mi)
	flaky.skip = func(k int) bool { return k >= flakySilent[0] && k <= flakySilent[1] }
	return &fixture{
		rounds: rounds,
		now:    at(time.Hour),
		nodes: []nodeSpec{
			{name: "n1", baseCores: 0.5, baseMem: gi, jitter: jitter()},
			{name: "n2", baseCores: 0.5, baseMem: gi, jitter: jitter()},
		},
		pods: []podSpec{
			pod("steady-0", "steady", "n1", 0.25, 100*mi),
			pod("steady-1", "steady", "n2", 0.25, 100*mi),
			pod("steady-2", "steady", "n1", 0.25, 100*mi),
			flaky,
		},
	}
}

// flakySilent are the first and last rounds without a sample of flaky-0: five
// resolutions of silence, twice the gap bound.
var flakySilent = [2]int{40, 44}

// TestJitterDefaultStep: at the default step (the resolution), a steady workload whose
// samples jitter around the resolution grid has no gap and no dip: every step of a pod,
// of its Deployment's total, its namespace's and the cluster's is within 1 % of the
// configured usage. A pod silent for five resolutions is still a gap, and adds nothing
// to its totals there.
func TestJitterDefaultStep(t *testing.T) {
	f := jitterFixture(7)
	h := newEnv(t, f).handler(t)
	steady := []*podSpec{f.pod("u-steady-0"), f.pod("u-steady-1"), f.pod("u-steady-2")}
	flaky := f.pod("u-flaky-0")
	// The range every pod lived in: from the last of their first samples to the first of
	// their last ones. Only steps wholly inside it are checked.
	var lived [2]time.Time
	for i, p := range append(steady, flaky) {
		first, last := p.sampleTime(0), p.sampleTime(f.rounds)
		if i == 0 || first.After(lived[0]) {
			lived[0] = first
		}
		if i == 0 || last.Before(lived[1]) {
			lived[1] = last
		}
	}
	// flaky-0 has no sample between these two: a step wholly between them is a gap.
	silence := [2]time.Time{flaky.sampleTime(flakySilent[0] - 1), flaky.sampleTime(flakySilent[1] + 1)}
	silent := func(ts time.Time, step time.Duration) bool {
		return !ts.Add(-step).Before(silence[0]) && ts.Before(silence[1])
	}

	type usage struct{ cores, mem float64 }
	flakyAt := func(ts time.Time, step time.Duration) usage {
		if silent(ts, step) {
			return usage{}
		}
		return usage{0.1, 50 * mi}
	}
	tests := []struct {
		name, path string
		want       func(ts time.Time, step time.Duration) usage
		// gaps: the series must be a gap at these steps, and has a value at the others.
		gaps func(ts time.Time, step time.Duration) bool
	}{
		{"pod steady-0", "/namespaces/steady/pods/steady-0", func(time.Time, time.Duration) usage { return usage{0.25, 100 * mi} }, nil},
		{"pod steady-1", "/pods/u-steady-1", func(time.Time, time.Duration) usage { return usage{0.25, 100 * mi} }, nil},
		{"pod steady-2", "/namespaces/steady/pods/steady-2", func(time.Time, time.Duration) usage { return usage{0.25, 100 * mi} }, nil},
		{"Deployment steady", "/namespaces/steady/deployments/steady", func(time.Time, time.Duration) usage { return usage{0.75, 300 * mi} }, nil},
		{"namespace steady", "/namespaces/steady", func(ts time.Time, step time.Duration) usage {
			fl := flakyAt(ts, step)
			return usage{0.75 + fl.cores, 300*mi + fl.mem}
		}, nil},
		{"cluster", "/cluster", func(time.Time, time.Duration) usage {
			// Nodes count flaky-0's usage while its pod series is silent.
			return usage{0.5 + 0.5 + 0.5 + 0.25 + 0.1, 2*gi + 350*mi}
		}, nil},
		{"pod flaky-0", "/namespaces/steady/pods/flaky-0", flakyAt, silent},
	}
	q := url.Values{"start": {rfc(0)}, "end": {rfc(time.Duration(f.rounds) * res)}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := decode(t, get(t, h, "admin", "/history/v1"+tc.path+"?"+q.Encode()))
			step, err := time.ParseDuration(r.Query.Step)
			if err != nil || step != res {
				t.Fatalf("default step %q, want the resolution %s", r.Query.Step, res)
			}
			if len(r.Series) != 1 {
				t.Fatalf("%d series, want 1", len(r.Series))
			}
			for _, resource := range []string{"cpu", "memory"} {
				vals := values(r.Series[0].Resources[resource].Values)
				checked, nulls, gaps, dip, worst := 0, 0, 0, 1.0, ""
				for i, v := range vals {
					ts, err := time.Parse(time.RFC3339, r.Timestamps[i])
					if err != nil {
						t.Fatal(err)
					}
					if ts.Add(-step).Before(lived[0]) || ts.After(lived[1]) {
						continue
					}
					checked++
					if tc.gaps != nil && tc.gaps(ts, step) {
						gaps++
						if !math.IsNaN(v) {
							t.Errorf("%s at %s: %v, want a gap (no sample from %s to %s)", resource, ts.Format(time.TimeOnly), v,
								silence[0].Format("15:04:05.000"), silence[1].Format("15:04:05.000"))
						}
						continue
					}
					u := tc.want(ts, step)
					want := u.cores
					if resource == "memory" {
						want = u.mem
					}
					if math.IsNaN(v) {
						nulls++
						t.Errorf("%s at %s: a gap, want %v", resource, ts.Format(time.TimeOnly), want)
						continue
					}
					if v/want < dip {
						dip, worst = v/want, ts.Format(time.TimeOnly)
					}
					if math.Abs(v-want) > 0.01*want {
						t.Errorf("%s at %s: %v, want %v within 1%%", resource, ts.Format(time.TimeOnly), v, want)
					}
				}
				if checked < 100 {
					t.Errorf("%s: only %d steps checked", resource, checked)
				}
				if tc.gaps != nil && gaps < 3 {
					t.Errorf("%s: %d steps inside the silence, want at least 3", resource, gaps)
				}
				t.Logf("%s: %d steps checked, %d null, deepest dip %s; %d gaps in the silence", resource, checked, nulls, dipString(dip, worst), gaps)
			}
		})
	}
}

// dipString describes the lowest value of a series relative to the configured usage.
func dipString(ratio float64, at string) string {
	if ratio >= 1-1e-9 {
		return "none"
	}
	return fmt.Sprintf("to %.1f%% of the configured usage at %s", 100*ratio, at)
}

// TestJitterMatchesModel: with jittered timestamps, pods, a namespace's total and the
// cluster's agree with the model at steps of one resolution, across resolutions (20s),
// shorter than one (7s) and of many (1m).
func TestJitterMatchesModel(t *testing.T) {
	f := jitterFixture(11)
	h := newEnv(t, f).handler(t)
	samples := f.samples()
	of := func(match func(seriesKey) bool) [][]tsdb.Sample {
		var keys []seriesKey
		for k := range samples {
			if match(k) {
				keys = append(keys, k)
			}
		}
		// In the API's order: pods by name (their UIDs' order here), nodes by name.
		slices.SortFunc(keys, func(a, b seriesKey) int { return strings.Compare(a.uid+"/"+a.node, b.uid+"/"+b.node) })
		var out [][]tsdb.Sample
		for _, k := range keys {
			out = append(out, samples[k])
		}
		return out
	}
	pods := func(k seriesKey) bool { return k.object == tsdb.ObjectPod }
	nodes := func(k seriesKey) bool { return k.object == tsdb.ObjectNode }
	for _, g := range []grid{
		{at(0), at(30 * time.Minute), res},
		{at(0), at(30 * time.Minute), 20 * time.Second},
		{at(8 * time.Minute), at(14 * time.Minute), 7 * time.Second}, // flaky-0's silence
		{at(0), at(30 * time.Minute), time.Minute},
	} {
		for _, tc := range []struct {
			path  string
			total bool
			match func(seriesKey) bool
		}{
			{"/namespaces/steady/pods", false, pods},
			{"/namespaces/steady", true, pods},
			{"/nodes", false, nodes},
			{"/cluster", true, nodes},
		} {
			path := "/history/v1" + tc.path + "?" + g.String()
			t.Run(path, func(t *testing.T) {
				r := decode(t, get(t, h, "admin", path))
				g := g.aligned()
				members := of(tc.match)
				for _, res := range []tsdb.Resource{tsdb.ResourceCPU, tsdb.ResourceMemory} {
					var want [][]float64
					for _, m := range members {
						want = append(want, expectAvg(m, res, g))
					}
					if tc.total {
						want = [][]float64{sumSteps(g.n(), want...)}
					}
					if len(r.Series) != len(want) {
						t.Fatalf("%d series, want %d", len(r.Series), len(want))
					}
					for i, s := range r.Series {
						checkValues(t, fmt.Sprintf("series %d %s", i, res), s.Resources[res.String()].Values, want[i])
					}
				}
			})
		}
	}
}
