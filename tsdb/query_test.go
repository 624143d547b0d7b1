package tsdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// appendNodeCPU appends samples CPU samples, one per resolution from t0, to the CPU
// series of each of nodes nodes, straight to the TSDB (Write would index them too).
func appendNodeCPU(t testing.TB, db *DB, nodes, samples int) {
	t.Helper()
	app := db.tsdb.Appender(context.Background())
	for n := range nodes {
		lset := labels.FromStrings(metricNameLabel, MetricNodeCPU, LabelNode, fmt.Sprintf("node-%04d", n))
		for i := range samples {
			if _, err := app.Append(0, lset, at(time.Duration(i)*db.cfg.Resolution).UnixMilli(), float64(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRangeSamples reads 10 nodes' CPU over 10000 samples each with Range.
func BenchmarkRangeSamples(b *testing.B) {
	const nodes, samples = 10, 10000
	db := newTestDB(b, Config{})
	appendNodeCPU(b, db, nodes, samples)
	q := RangeQuery{Start: t0, End: at(samples * 15 * time.Second), Step: time.Hour, Resource: ResourceCPU}
	b.ReportAllocs()
	for b.Loop() {
		if err := db.Range(b.Context(), Selector{Object: ObjectNode}, q, func(*RangeSeries) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nodes*samples), "ns/sample")
}

// BenchmarkPromQLSamples sums the CPU rate of 10 nodes over 10000 samples each with PromQL.
func BenchmarkPromQLSamples(b *testing.B) {
	const nodes, samples = 10, 10000
	db := newTestDB(b, Config{})
	appendNodeCPU(b, db, nodes, samples)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e8, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	end := at(samples * 15 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		qry, err := eng.NewInstantQuery(b.Context(), db.Queryable(), nil, fmt.Sprintf("sum(count_over_time(%s[%ds]))", MetricNodeCPU, samples*15), end)
		if err != nil {
			b.Fatal(err)
		}
		if res := qry.Exec(b.Context()); res.Err != nil {
			b.Fatal(res.Err)
		}
		qry.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nodes*samples), "ns/sample")
}

// hangGuard bounds a wait that only a hang would reach; it is no figure of speed.
const hangGuard = 30 * time.Second

// TestCloseEndsQueries checks that Close ends a PromQL query and a Range query while they
// iterate the samples of one series (past the series set's Next, which PromQL has
// finished before it reads a sample), that they fail with ErrClosed, and that Close
// returns once they have closed their queriers. How promptly is shown by where the query
// ends, not by a clock: at the very look at the closing flag that waited for Close
// (looks == 1), with thousands of samples still unread. The times are logged.
func TestCloseEndsQueries(t *testing.T) {
	const samples = 5 * checkEvery // one series, more samples than one look at the flag
	end := at(samples * 15 * time.Second)
	for _, tc := range []struct {
		name  string
		query func(ctx context.Context, db *DB) error
	}{
		{name: "promql", query: func(ctx context.Context, db *DB) error {
			eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e8, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
			qry, err := eng.NewInstantQuery(ctx, db.Queryable(), nil, fmt.Sprintf("count_over_time(%s[%ds])", MetricNodeCPU, samples*15), end)
			if err != nil {
				return err
			}
			defer qry.Close()
			return qry.Exec(ctx).Err
		}},
		{name: "range", query: func(ctx context.Context, db *DB) error {
			q := RangeQuery{Start: t0, End: end, Step: time.Hour, Resource: ResourceCPU}
			return db.Range(ctx, Selector{Object: ObjectNode}, q, func(*RangeSeries) error { return nil })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := newTestDB(t, Config{})
			appendNodeCPU(t, db, 1, samples)
			// The iterator's first look at the flag blocks until Close has begun: the query
			// is then mid-series, deterministically.
			iterating := make(chan struct{})
			var once sync.Once
			looks := 0
			db.queries.checkHook = func() {
				looks++
				once.Do(func() {
					close(iterating)
					<-db.queries.ctx.Done()
				})
			}
			queried := make(chan error, 1)
			go func() { queried <- tc.query(context.Background(), db) }()
			select {
			case <-iterating:
			case err := <-queried:
				t.Fatalf("the query ended (%v) without reading the samples through the closing check", err)
			}

			start := time.Now()
			closed := make(chan error, 1)
			go func() { closed <- db.Close() }()
			var took [2]time.Duration
			for i, c := range []struct {
				what string
				ch   chan error
				want error
			}{{"query", queried, ErrClosed}, {"Close", closed, nil}} {
				select {
				case err := <-c.ch:
					took[i] = time.Since(start)
					if !errors.Is(err, c.want) {
						t.Errorf("%s = %v, want %v", c.what, err, c.want)
					}
				case <-time.After(hangGuard):
					t.Fatalf("%s did not return within %s of Close: it hangs", c.what, hangGuard)
				}
			}
			t.Logf("%s query ended %v after Close began; Close returned after %v", tc.name, took[0], took[1])
			if looks != 1 {
				t.Errorf("the iterator looked at the closing flag %d times, want 1 (the query ends at the look that waited for Close)", looks)
			}
		})
	}
}

// TestQuerierDuringClose checks that a querier opened while Close waits for an open one,
// on the goroutine that holds it, fails with ErrClosed instead of deadlocking, that the
// open one's reads fail, and that Close returns once the open one is closed.
func TestQuerierDuringClose(t *testing.T) {
	db := newTestDB(t, Config{})
	appendNodeCPU(t, db, 2, 10)
	q1, err := db.Queryable().Querier(t0.UnixMilli(), at(time.Hour).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	<-db.queries.ctx.Done() // Close has begun and waits for q1

	if _, err := db.Queryable().Querier(t0.UnixMilli(), at(time.Hour).UnixMilli()); !errors.Is(err, ErrClosed) {
		t.Errorf("Querier during Close: %v, want ErrClosed", err)
	}
	name := labels.MustNewMatcher(labels.MatchEqual, metricNameLabel, MetricNodeCPU)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		read func() error
	}{
		{"Select", func() error { return q1.Select(ctx, false, nil, name).Err() }},
		{"LabelValues", func() error { _, _, err := q1.LabelValues(ctx, LabelNode, nil); return err }},
		{"LabelNames", func() error { _, _, err := q1.LabelNames(ctx, nil); return err }},
	} {
		if err := tc.read(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s on an open querier during Close: %v, want ErrClosed", tc.name, err)
		}
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a querier was open", err)
	default:
	}
	if err := q1.Close(); err != nil {
		t.Errorf("Close the querier: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

// BenchmarkIteratorCheck reads an XOR chunk of 120 samples, bare and through the closing
// check, to isolate the check's cost per sample.
func BenchmarkIteratorCheck(b *testing.B) {
	c := chunkenc.NewXORChunk()
	app, err := c.Appender()
	if err != nil {
		b.Fatal(err)
	}
	for i := range 120 {
		app.Append(0, int64(i)*15000, float64(i))
	}
	gate := newQueryGate()
	for _, tc := range []struct {
		name string
		iter func(chunkenc.Iterator) chunkenc.Iterator
	}{
		{"bare", func(it chunkenc.Iterator) chunkenc.Iterator { return c.Iterator(it) }},
		{"checked", func(it chunkenc.Iterator) chunkenc.Iterator {
			g, ok := it.(*gatedIterator)
			if !ok {
				g = &gatedIterator{gate: gate}
			}
			g.Iterator, g.left, g.err = c.Iterator(g.Iterator), checkEvery, nil
			return g
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var it chunkenc.Iterator
			n := 0
			for b.Loop() {
				it = tc.iter(it)
				for it.Next() != chunkenc.ValNone {
					n++
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/sample")
		})
	}
}
