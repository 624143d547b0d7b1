package tsdb

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func collect(t *testing.T, db *DB, sel Selector, q RangeQuery) []RangeSeries {
	t.Helper()
	var out []RangeSeries
	err := db.Range(context.Background(), sel, q, func(s *RangeSeries) error {
		c := *s
		c.Values = append([]float64(nil), s.Values...)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("Range: %v", err)
	}
	return out
}

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

func TestRangeCPU(t *testing.T) {
	db := newTestDB(t, Config{})
	// 40 rounds: 0.25 cores for rounds 1-19, 0.5 for 20-39; round 10 and 11 missed
	// (a gap of 45s, more than 2.5 resolutions), the counter reset at round 30.
	rate := func(i int) float64 {
		if i < 20 {
			return 0.25
		}
		return 0.5
	}
	cpu := 100.0
	for i := range 40 {
		if i > 0 {
			cpu += rate(i) * 15
		}
		if i == 30 {
			cpu = 1 // restarted: the counter starts again
		}
		if i == 10 || i == 11 {
			continue
		}
		write(t, db, batch(node("n1", at(time.Duration(i)*15*time.Second), cpu, float64(1000+i))))
	}
	sel := Selector{Object: ObjectNode, Node: "n1"}

	tests := []struct {
		name string
		q    RangeQuery
		want []float64
	}{
		{
			name: "one step per round",
			q:    RangeQuery{Start: at(0), End: at(14 * 15 * time.Second), Step: 15 * time.Second, Resource: ResourceCPU},
			// round 0 has no previous sample; 10 and 11 are missing; 12 follows a 45s gap.
			want: []float64{nan, .25, .25, .25, .25, .25, .25, .25, .25, .25, nan, nan, nan, .25, .25},
		},
		{
			name: "one minute steps, time-weighted average",
			q:    RangeQuery{Start: at(time.Minute), End: at(9 * time.Minute), Step: time.Minute, Resource: ResourceCPU},
			// step k covers rounds 4k-3 .. 4k; minute 5 covers 17-20: three at .25, one at .5;
			// minute 3 covers 9-12, of which only 9 has a rate; minute 8 covers 29-32, of
			// which 30 is the reset.
			want: []float64{.25, .25, .25, .25, (3*.25 + .5) / 4, .5, .5, .5, .5},
		},
		{
			name: "max per step",
			q:    RangeQuery{Start: at(5 * time.Minute), End: at(5 * time.Minute), Step: time.Minute, Resource: ResourceCPU, Agg: AggMax},
			want: []float64{.5},
		},
		{
			name: "count per step",
			q:    RangeQuery{Start: at(3 * time.Minute), End: at(3 * time.Minute), Step: time.Minute, Resource: ResourceCPU, Agg: AggCount},
			want: []float64{1}, // rounds 9-12: 10, 11 missing, 12 after a gap
		},
		{
			name: "memory: last working set of each step",
			q:    RangeQuery{Start: at(0), End: at(30 * time.Second), Step: 15 * time.Second, Resource: ResourceMemory, Agg: AggMax},
			want: []float64{1000, 1001, 1002},
		},
		{
			name: "before any sample",
			q:    RangeQuery{Start: at(-time.Hour), End: at(-time.Hour + time.Minute), Step: time.Minute, Resource: ResourceCPU},
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := collect(t, db, sel, tc.q)
			if tc.want == nil {
				if len(got) != 0 {
					t.Fatalf("got %d series, want none", len(got))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %d series, want 1", len(got))
			}
			if got[0].ID.Node != "n1" {
				t.Errorf("ID = %+v", got[0].ID)
			}
			if len(got[0].Values) != len(tc.want) {
				t.Fatalf("values = %v, want %v", got[0].Values, tc.want)
			}
			for i := range tc.want {
				if !near(got[0].Values[i], tc.want[i]) {
					t.Errorf("step %d (%s): %v, want %v", i, tc.q.At(i).Sub(t0), got[0].Values[i], tc.want[i])
				}
				if got[0].Values[i] < 0 {
					t.Errorf("step %d: negative CPU %v", i, got[0].Values[i])
				}
			}
		})
	}

	t.Run("summary over raw points", func(t *testing.T) {
		q := RangeQuery{Start: at(0), End: at(10 * time.Minute), Step: 5 * time.Minute, Resource: ResourceCPU, Summary: defaultAggs}
		got := collect(t, db, sel, q)
		if len(got) != 1 {
			t.Fatalf("got %d series", len(got))
		}
		s := got[0].Summary
		// raw points: rounds 1-9 and 13-19 at .25 (16), 20-29 and 31-39 at .5 (19).
		if s.Count != 35 {
			t.Errorf("count = %d, want 35", s.Count)
		}
		if !near(s.Get(AggAvg), (16*.25+19*.5)/35) || s.Get(AggMin) != .25 || s.Get(AggMax) != .5 {
			t.Errorf("avg/min/max = %v/%v/%v", s.Get(AggAvg), s.Get(AggMin), s.Get(AggMax))
		}
		// sorted: 16 × .25 then 19 × .5; p50 rank 17 → .5; p90 → .5.
		if s.Get(AggP50) != .5 || s.Get(AggP99) != .5 {
			t.Errorf("p50 = %v, p99 = %v", s.Get(AggP50), s.Get(AggP99))
		}
		q.Step = 15 * time.Second
		if s2 := collect(t, db, sel, q)[0].Summary; s2.Count != s.Count || !slices.Equal(s2.Values, s.Values) {
			t.Errorf("summary depends on the step: %+v vs %+v", s2, s)
		}
		// Asking for fewer aggregations computes the same ones, and leaves the rest NaN.
		p999, err := ParseAgg("p99.9")
		if err != nil {
			t.Fatal(err)
		}
		q.Summary = []Agg{AggP95, AggMax, p999}
		s3 := collect(t, db, sel, q)[0].Summary
		if s3.Get(AggP95) != s.Get(AggP95) || s3.Get(AggMax) != s.Get(AggMax) || s3.Count != s.Count ||
			s3.Get(p999) != .5 || !math.IsNaN(s3.Get(AggAvg)) || !math.IsNaN(s3.Get(AggP50)) {
			t.Errorf("summary of p95,max,p99.9 = %+v, want p95 %v, max %v, p99.9 .5, count %d, the rest NaN", s3, s.Get(AggP95), s.Get(AggMax), s.Count)
		}
	})
}

var nan = math.NaN()

// TestRangeOverlap: a CPU point counts in every step its interval overlaps, weighed by
// the overlap; a step without a memory sample takes the last one when the next follows
// within 2.5 resolutions. Samples at irregular times, as kubelets' jittered stats times
// are, leave no step without a value, but a gap of more than 2.5 resolutions does.
func TestRangeOverlap(t *testing.T) {
	db := newTestDB(t, Config{})
	// seconds, counter, memory: rates .5 over (0,10], .1 over (10,32], .3 over (32,45],
	// a gap of 55s, .1 over (100,110].
	for _, s := range []struct{ sec, cpu, mem float64 }{
		{0, 0, 100}, {10, 5, 200}, {32, 7.2, 300}, {45, 11.1, 400}, {100, 20, 500}, {110, 21, 600},
	} {
		write(t, db, batch(node("n1", at(time.Duration(s.sec*float64(time.Second))), s.cpu, s.mem)))
	}
	sel := Selector{Object: ObjectNode, Node: "n1"}
	grid := func(from, to time.Duration, res Resource, agg Agg) RangeQuery {
		return RangeQuery{Start: at(from), End: at(to), Step: 15 * time.Second, Resource: res, Agg: agg, Summary: []Agg{AggAvg}}
	}
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	tests := []struct {
		name string
		q    RangeQuery
		want []float64
	}{
		{
			name: "cpu avg: steps 0, 15, ... 135",
			q:    grid(0, sec(135), ResourceCPU, AggAvg),
			// (0,15]: 10s at .5 and 5s at .1; (30,45]: 2s at .1 and 13s at .3; (45,100] is
			// a gap; (105,120] is covered 5s at .1; nothing after 110.
			want: []float64{nan, 5.5 / 15, .1, 4.1 / 15, nan, nan, nan, .1, .1, nan},
		},
		{
			name: "cpu count: points overlapping each step",
			q:    grid(0, sec(135), ResourceCPU, AggCount),
			want: []float64{nan, 2, 1, 2, nan, nan, nan, 1, 1, nan},
		},
		{
			name: "cpu max",
			q:    grid(0, sec(135), ResourceCPU, AggMax),
			want: []float64{nan, .5, .1, .3, nan, nan, nan, .1, .1, nan},
		},
		{
			name: "memory avg: the last value between samples, not over a gap nor after the last",
			q:    grid(0, sec(135), ResourceMemory, AggAvg),
			want: []float64{100, 200, 200, 350, nan, nan, nan, 500, 600, nan},
		},
		{
			name: "memory count",
			q:    grid(0, sec(135), ResourceMemory, AggCount),
			want: []float64{1, 1, 1, 2, nan, nan, nan, 1, 1, nan},
		},
		{
			name: "one step inside an interval: samples from after the grid",
			q:    grid(sec(30), sec(30), ResourceCPU, AggAvg),
			want: []float64{.1},
		},
		{
			name: "one memory step inside an interval",
			q:    grid(sec(30), sec(30), ResourceMemory, AggAvg),
			want: []float64{200},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := collect(t, db, sel, tc.q)
			if len(got) != 1 || len(got[0].Values) != len(tc.want) {
				t.Fatalf("got %+v, want one series of %v", got, tc.want)
			}
			for i := range tc.want {
				if !near(got[0].Values[i], tc.want[i]) {
					t.Errorf("step %d (%s): %v, want %v", i, tc.q.At(i).Sub(t0), got[0].Values[i], tc.want[i])
				}
			}
		})
	}
	// The summary is over raw points at their later sample, whatever the step: CPU's at
	// 10, 32, 45 and 110 s, time-weighted.
	for _, step := range []time.Duration{sec(15), sec(7), sec(60)} {
		q := RangeQuery{Start: at(0), End: at(sec(120)), Step: step, Resource: ResourceCPU, Summary: []Agg{AggAvg, AggMax}}
		s := collect(t, db, sel, q)[0].Summary
		if s.Count != 4 || !near(s.Get(AggAvg), 12.1/55) || s.Get(AggMax) != .5 {
			t.Errorf("step %s: summary count %d, avg %v, max %v; want 4, %v, .5", step, s.Count, s.Get(AggAvg), s.Get(AggMax), 12.1/55)
		}
	}
}

// quantileSelect agrees with sorting, whatever the data: ties, sorted and reversed input,
// one value.
func TestQuantileSelect(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := [][]float64{{5}, {1, 1, 1, 1}, {3, 1, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {10, 9, 8, 7, 6, 5, 4, 3, 2, 1}}
	for range 200 {
		n := 1 + rng.IntN(500)
		vs := make([]float64, n)
		for i := range vs {
			vs[i] = float64(rng.IntN(20)) / 4 // many ties
		}
		inputs = append(inputs, vs)
	}
	for _, in := range inputs {
		sorted := slices.Clone(in)
		slices.Sort(sorted)
		for _, q := range []float64{0, 0.5, 0.9, 0.95, 0.99, 1} {
			want := quantileSorted(sorted, q)
			if got := quantileSelect(slices.Clone(in), q); !near(got, want) {
				t.Fatalf("quantile %v of %v: select %v, sort %v", q, in, got, want)
			}
		}
	}
}

// defaultAggs are the history API's default summary.
var defaultAggs = []Agg{AggAvg, AggMin, AggMax, AggP50, AggP90, AggP95, AggP99, AggCount}

func TestSummarizeQuantiles(t *testing.T) {
	want := map[Agg]float64{AggCount: 4, AggAvg: 2.5, AggMin: 1, AggMax: 4, AggP50: 2.5, AggP90: 3.7, AggP95: 3.85, AggP99: 3.97}
	// Four percentiles are read after a sort, two by selection: the same values.
	for _, aggs := range [][]Agg{defaultAggs, {AggP90, AggP99}, {AggP50}} {
		s := Summarize([]float64{4, nan, 1, 3, 2}, aggs)
		for _, a := range aggs {
			if !near(s.Get(a), want[a]) {
				t.Errorf("%v: %s = %v, want %v", aggs, a, s.Get(a), want[a])
			}
		}
	}
	if e := Summarize(nil, defaultAggs); e.Count != 0 || !math.IsNaN(e.Get(AggP95)) || e.Get(AggCount) != 0 {
		t.Errorf("empty summary = %+v", e)
	}
}

func TestRangeContainersAndPods(t *testing.T) {
	db := newTestDB(t, Config{})
	start := at(-time.Hour)
	for i := range 5 {
		ts := at(time.Duration(i) * 15 * time.Second)
		n := pods("n1",
			ctr("a/web", "app", ts, start, float64(i)*15*0.1, 100),
			ctr("a/web", "side", ts, start, float64(i)*15*0.2, 200),
			ctr("b/db", "app", ts, start, float64(i)*15*0.3, 300),
		)
		n.Pods = []PodSample{
			{Namespace: "a", Pod: "web", UID: "uid-web", Sample: cpuMem(ts, float64(i)*15*0.3, 300)},
		}
		write(t, db, batch(n))
	}
	q := RangeQuery{Start: at(15 * time.Second), End: at(time.Minute), Step: 15 * time.Second, Resource: ResourceCPU, Summary: []Agg{AggAvg}}
	got := collect(t, db, Selector{Object: ObjectContainer, Namespace: "a", Pod: "web"}, q)
	if len(got) != 2 || got[0].ID.Container != "app" || got[1].ID.Container != "side" {
		t.Fatalf("containers of a/web: %+v", got)
	}
	if !near(got[0].Summary.Get(AggAvg), 0.1) || !near(got[1].Summary.Get(AggAvg), 0.2) || got[0].ID.UID != "uid-web" {
		t.Errorf("averages %v, %v; id %+v", got[0].Summary.Get(AggAvg), got[1].Summary.Get(AggAvg), got[0].ID)
	}
	pod := collect(t, db, Selector{Object: ObjectPod, UID: "uid-web"}, q)
	if len(pod) != 1 || !near(pod[0].Summary.Get(AggAvg), 0.3) {
		t.Errorf("pod uid-web: %+v", pod)
	}
	some := collect(t, db, Selector{Object: ObjectContainer, UIDs: []string{"uid-db", "uid-nope", "x|.*"}}, q)
	if len(some) != 1 || some[0].ID.Pod != "db" {
		t.Errorf("containers of uid-db: %+v", some)
	}
	all := collect(t, db, Selector{Object: ObjectContainer}, q)
	if len(all) != 3 {
		t.Errorf("all containers: %d series, want 3", len(all))
	}
	q.MaxSeries = 2
	err := db.Range(context.Background(), Selector{Object: ObjectContainer}, q, func(*RangeSeries) error { return nil })
	if !errors.Is(err, ErrTooManySeries) {
		t.Errorf("MaxSeries 2 of 3: err = %v, want ErrTooManySeries", err)
	}
}

func TestRangeInvalid(t *testing.T) {
	db := newTestDB(t, Config{})
	for _, q := range []RangeQuery{
		{Start: at(0), End: at(time.Minute), Resource: ResourceCPU},
		{Start: at(time.Minute), End: at(0), Step: time.Second, Resource: ResourceCPU},
		{Start: at(0), End: at(time.Minute), Step: time.Second, Resource: NumResources},
		{Start: at(0), End: at(time.Minute), Step: time.Second, Resource: ResourceStartTime}, // stored, not served
		{Start: at(0), End: at(time.Minute), Step: time.Second, Resource: ResourceCPU, Agg: Agg{op: aggPercentile}},
		{Start: at(0), End: at(time.Minute), Step: time.Second, Resource: ResourceCPU, Summary: []Agg{{}}},
	} {
		if err := db.Range(context.Background(), Selector{Object: ObjectNode}, q, func(*RangeSeries) error { return nil }); err == nil {
			t.Errorf("Range(%+v) = nil, want an error", q)
		}
	}
}

// Close ends a query in progress at its next series, and waits for it.
func TestRangeEndsOnClose(t *testing.T) {
	db := newTestDB(t, Config{})
	for i := range 3 {
		ts := at(time.Duration(i) * 15 * time.Second)
		write(t, db, batch(node("n1", ts, float64(i), 1), node("n2", ts, float64(i), 1)))
	}
	q := RangeQuery{Start: at(0), End: at(time.Minute), Step: 15 * time.Second, Resource: ResourceCPU}
	closed := make(chan error, 1)
	seen := 0
	err := db.Range(context.Background(), Selector{Object: ObjectNode}, q, func(*RangeSeries) error {
		seen++
		go func() { closed <- db.Close() }()
		<-db.queries.ctx.Done() // Close has begun and waits for this query
		return nil
	})
	if !errors.Is(err, ErrClosed) || seen != 1 {
		t.Errorf("Range during Close: err = %v after %d series, want ErrClosed after 1", err, seen)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := db.Range(context.Background(), Selector{Object: ObjectNode}, q, func(*RangeSeries) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Range after Close: %v, want ErrClosed", err)
	}
}
