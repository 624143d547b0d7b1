package tsdb

import (
	"context"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// Queries and Close.
//
// History queries (Range and the Queryable that the PromQL engine reads) may still be
// running when the process shuts down: the API server drains requests for up to a minute,
// while the storage closes at most 20s after the shutdown began. Close therefore ends
// them: it marks the DB closing, which makes every open querier's series sets stop with
// ErrClosed at their next series, and then waits until the open queriers are closed (one
// series' samples at most) before it closes the TSDB. A querier is never used on a closed
// TSDB, and a query started after Close fails with ErrClosed.

// queryGate counts open queriers and tells them when the DB closes.
type queryGate struct {
	mu      sync.RWMutex // read-held by every open querier; Close takes it for writing
	closing chan struct{}
	once    sync.Once
}

func newQueryGate() *queryGate { return &queryGate{closing: make(chan struct{})} }

// enter returns a release function, or ErrClosed once shut has begun.
func (g *queryGate) enter() (release func(), err error) {
	select {
	case <-g.closing:
		return nil, ErrClosed
	default:
	}
	g.mu.RLock()
	select {
	case <-g.closing:
		g.mu.RUnlock()
		return nil, ErrClosed
	default:
	}
	return sync.OnceFunc(g.mu.RUnlock), nil
}

// shut stops open queries at their next series and waits until their queriers are closed.
func (g *queryGate) shut() {
	g.once.Do(func() { close(g.closing) })
	g.mu.Lock()
	g.mu.Unlock() //nolint:staticcheck // an empty critical section: waiting for readers is the point
}

func (g *queryGate) closed() bool {
	select {
	case <-g.closing:
		return true
	default:
		return false
	}
}

// Queryable returns the TSDB's raw series as a storage.Queryable, for the PromQL engine.
// Its queriers fail with ErrClosed after Close has begun, and Close waits until the open
// ones are closed.
func (db *DB) Queryable() storage.Queryable { return gatedQueryable{db} }

type gatedQueryable struct{ db *DB }

func (q gatedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return q.db.querier(mint, maxt)
}

func (db *DB) querier(mint, maxt int64) (storage.Querier, error) {
	release, err := db.queries.enter()
	if err != nil {
		return nil, err
	}
	q, err := db.tsdb.Querier(mint, maxt)
	if err != nil {
		release()
		return nil, err
	}
	return &gatedQuerier{Querier: q, gate: db.queries, release: release}, nil
}

type gatedQuerier struct {
	storage.Querier
	gate    *queryGate
	release func()
}

func (q *gatedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return &gatedSeriesSet{SeriesSet: q.Querier.Select(ctx, sortSeries, hints, ms...), gate: q.gate}
}

func (q *gatedQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if q.gate.closed() {
		return nil, nil, ErrClosed
	}
	return q.Querier.LabelValues(ctx, name, hints, ms...)
}

func (q *gatedQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if q.gate.closed() {
		return nil, nil, ErrClosed
	}
	return q.Querier.LabelNames(ctx, hints, ms...)
}

func (q *gatedQuerier) Close() error {
	err := q.Querier.Close()
	q.release()
	return err
}

type gatedSeriesSet struct {
	storage.SeriesSet
	gate   *queryGate
	closed bool
}

func (s *gatedSeriesSet) Next() bool {
	if s.gate.closed() {
		s.closed = true
		return false
	}
	return s.SeriesSet.Next()
}

func (s *gatedSeriesSet) Err() error {
	if s.closed {
		return ErrClosed
	}
	return s.SeriesSet.Err()
}
