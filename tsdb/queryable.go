package tsdb

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
)

// Queries and Close.
//
// History queries (Range and the Queryable that the PromQL engine reads) may still be
// running when the process shuts down: the API server drains requests for up to a minute,
// while the storage closes at most 20s after the shutdown began. Close therefore ends
// them. It cancels the DB's query context, which every querier's Select passes to the
// TSDB along with the caller's, and sets a flag that the series sets check at every
// series and the sample iterators every checkEvery samples (Next): PromQL expands all series
// before it reads a sample, so the series alone would not stop it. Close then waits until
// the open queriers are closed, and only then closes the TSDB, so no TSDB read happens on
// a closed TSDB. A querier opened after Close has begun fails with ErrClosed at once.

// checkEvery is how many samples an iterator reads between two looks at the closing
// flag: a countdown per sample, an atomic load per checkEvery samples (some microseconds
// of decoding, so a query ends within microseconds of Close).
const checkEvery = 1024

// queryGate counts open queriers and tells them when the DB closes.
type queryGate struct {
	// ctx is the DB's query context, canceled with cause ErrClosed when Close begins.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// closing is set when Close begins; what queriers hand out reads it.
	closing atomic.Bool
	// mu guards shut and the Add of open, so that no querier is counted once Close waits.
	mu   sync.Mutex
	shut bool
	open sync.WaitGroup
	// checkHook, when set (by tests only, before any query), runs at every look at the
	// closing flag by an iterator.
	checkHook func()
}

func newQueryGate() *queryGate {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &queryGate{ctx: ctx, cancel: cancel}
}

// enter counts a querier in and returns its release function, or ErrClosed once Close
// has begun. It never waits for Close.
func (g *queryGate) enter() (release func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return nil, ErrClosed
	}
	g.open.Add(1)
	return sync.OnceFunc(g.open.Done), nil
}

// close ends the open queries and waits until their queriers are closed.
func (g *queryGate) close() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
	g.closing.Store(true)
	g.cancel(ErrClosed)
	g.open.Wait()
}

// Queryable returns the TSDB's raw series and the downsampled tiers' rollup series
// (tier.go; their names differ, so no series is in two) as a storage.Queryable, for the
// PromQL engine. Its queriers fail with ErrClosed after Close has begun, the series sets
// and sample iterators of the open ones end with ErrClosed, and Close waits until they are
// closed.
func (db *DB) Queryable() storage.Queryable { return gatedQueryable{db} }

type gatedQueryable struct{ db *DB }

func (q gatedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return q.db.gatedQuerier(mint, maxt, true)
}

// querier returns a gated querier of the raw series.
func (db *DB) querier(mint, maxt int64) (storage.Querier, error) {
	return db.gatedQuerier(mint, maxt, false)
}

// tierQuerier returns a gated querier of tier s.
func (db *DB) tierQuerier(s *tierStore, mint, maxt int64) (storage.Querier, error) {
	release, err := db.queries.enter()
	if err != nil {
		return nil, err
	}
	q, err := s.db.Querier(mint, maxt)
	if err != nil {
		release()
		return nil, err
	}
	return &gatedQuerier{Querier: q, gate: db.queries, release: release}, nil
}

// gatedQuerier returns a querier of the raw series and, withTiers, of the tiers'.
func (db *DB) gatedQuerier(mint, maxt int64, withTiers bool) (_ storage.Querier, err error) {
	release, err := db.queries.enter()
	if err != nil {
		return nil, err
	}
	var qs []storage.Querier
	defer func() {
		if err != nil {
			for _, q := range qs {
				_ = q.Close()
			}
			release()
		}
	}()
	q, err := db.tsdb.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	qs = append(qs, q)
	if withTiers {
		for _, s := range db.tiers {
			if s == nil {
				continue
			}
			tq, err := s.db.Querier(mint, maxt)
			if err != nil {
				return nil, fmt.Errorf("tier %s: %w", s.tier, err)
			}
			qs = append(qs, tq)
		}
	}
	if len(qs) > 1 {
		q = storage.NewMergeQuerier(qs, nil, storage.ChainedSeriesMerge)
	}
	return &gatedQuerier{Querier: q, gate: db.queries, release: release}, nil
}

type gatedQuerier struct {
	storage.Querier
	gate    *queryGate
	release func()

	mu    sync.Mutex // guards stops
	stops []func()   // unlink each Select's context from the DB's, at Close
}

// selectContext returns ctx, also canceled with ErrClosed when the DB closes.
func (q *gatedQuerier) selectContext(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(q.gate.ctx, func() { cancel(ErrClosed) })
	q.mu.Lock()
	q.stops = append(q.stops, func() { stop(); cancel(nil) })
	q.mu.Unlock()
	return ctx
}

func (q *gatedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if q.gate.closing.Load() {
		return storage.ErrSeriesSet(ErrClosed)
	}
	set := q.Querier.Select(q.selectContext(ctx), sortSeries, hints, ms...)
	return &gatedSeriesSet{SeriesSet: set, gate: q.gate}
}

func (q *gatedQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if q.gate.closing.Load() {
		return nil, nil, ErrClosed
	}
	return q.Querier.LabelValues(q.selectContext(ctx), name, hints, ms...)
}

func (q *gatedQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if q.gate.closing.Load() {
		return nil, nil, ErrClosed
	}
	return q.Querier.LabelNames(q.selectContext(ctx), hints, ms...)
}

func (q *gatedQuerier) Close() error {
	err := q.Querier.Close()
	q.mu.Lock()
	for _, stop := range q.stops {
		stop()
	}
	q.stops = nil
	q.mu.Unlock()
	q.release()
	return err
}

type gatedSeriesSet struct {
	storage.SeriesSet
	gate   *queryGate
	closed bool
}

func (s *gatedSeriesSet) Next() bool {
	if s.gate.closing.Load() {
		s.closed = true
		return false
	}
	return s.SeriesSet.Next()
}

func (s *gatedSeriesSet) At() storage.Series {
	return &gatedSeries{Series: s.SeriesSet.At(), gate: s.gate}
}

func (s *gatedSeriesSet) Err() error {
	if s.closed {
		return ErrClosed
	}
	return s.SeriesSet.Err()
}

type gatedSeries struct {
	storage.Series
	gate *queryGate
}

// Iterator returns the series' samples, ending with ErrClosed once the DB closes. It
// reuses it, and the iterator it wraps, when it is one of ours.
func (s *gatedSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	g, ok := it.(*gatedIterator)
	if !ok {
		g = &gatedIterator{gate: s.gate}
	}
	g.Iterator = s.Series.Iterator(g.Iterator)
	g.left, g.err = checkEvery, nil
	return g
}

// gatedIterator ends with ErrClosed at its first look at the closing flag after Close
// has begun. It looks in Next only: go vet wants io.Seeker's signature of any method named
// Seek, so Seek is the wrapped iterator's. That leaves little unchecked: Range only calls
// Next, and PromQL follows every Seek with Nexts, over the range of a range selector or
// until the step's time for an instant selector (the lookback window), so a Seek skips at
// most a few times the samples that the Nexts after it count.
type gatedIterator struct {
	chunkenc.Iterator
	gate *queryGate
	left int   // samples until the next look
	err  error // ErrClosed once seen
}

func (it *gatedIterator) Next() chunkenc.ValueType {
	if it.left--; it.left <= 0 && it.stopped() {
		return chunkenc.ValNone
	}
	return it.Iterator.Next()
}

// stopped looks at the closing flag. Once it is set, left stays at zero, so that every
// later call looks again and ends too.
func (it *gatedIterator) stopped() bool {
	if it.gate.checkHook != nil {
		it.gate.checkHook()
	}
	if it.gate.closing.Load() {
		it.left, it.err = 0, ErrClosed
		return true
	}
	it.left = checkEvery
	return false
}

func (it *gatedIterator) Err() error {
	if it.err != nil {
		return it.err
	}
	return it.Iterator.Err()
}
