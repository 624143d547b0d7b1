// Package budget bounds the queries that read the storage at once. One Budget guards one
// TSDB: cmd constructs it and hands it to every API that reads the TSDB (the history API
// and the Prometheus-compatible API), so that together they never run more queries at
// once than it allows.
//
// A query that finds every slot taken waits in a short, bounded queue: at most Queue
// waiters, each for at most MaxWait. When the queue is full, or the wait runs out, Acquire
// fails at once with ErrBusy, which the APIs answer with 429 Too Many Requests and a
// Retry-After of RetryAfter seconds. A greedy client therefore never holds a caller for
// long, and a full server says so immediately instead of queueing until a deadline.
//
// The same type, built with no queue (NewQueued(n, 0, 0)), is the in-flight limit of
// whole history and Prometheus requests: a request beyond n is refused at once.
package budget

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of New.
const (
	// MaxDefaultSize bounds DefaultSize: the read APIs' memory limits (a PromQL query's
	// samples, a response's bytes) are sized for that many queries at once.
	MaxDefaultSize = 4
	// DefaultQueue is the number of queries that may wait for a slot by default.
	DefaultQueue = 8
	// DefaultMaxWait is the longest a query waits for a slot by default.
	DefaultMaxWait = time.Second
	// DefaultInFlight is the default in-flight limit of history and Prometheus requests
	// together (their own, apart from the metrics.k8s.io one).
	DefaultInFlight = 32
)

// What one response of either read API may cost once it is computed, by default.
const (
	// DefaultMaxResponseBytes bounds one encoded response (before gzip): the largest
	// history response allowed encodes to some 40-60 MB of JSON.
	DefaultMaxResponseBytes = 64 << 20
	// DefaultWriteTimeout bounds the writing of one response to the client: a client
	// that reads slower is cut off. The query slot is released before writing starts.
	DefaultWriteTimeout = 30 * time.Second
)

// DefaultSize is the number of queries a Budget runs at once by default: half the CPUs
// the Go runtime runs on (GOMAXPROCS, which follows the container's CPU limit), at least
// 1 and at most MaxDefaultSize. A query is CPU-bound from its first read to its last
// encoded byte; with half the CPUs at most busy with queries, a metrics.k8s.io request
// (the HPA's, kubectl top's) finds one free at once rather than waiting behind a query's
// time slice (docs/reliability.md, greedy clients).
func DefaultSize() int { return min(MaxDefaultSize, max(1, runtime.GOMAXPROCS(0)/2)) }

// RetryAfter is the Retry-After (in seconds) of a request refused with ErrBusy.
const RetryAfter = "1"

// ErrBusy is Acquire's error when every slot is taken and the queue is full, or when a
// queued caller waited MaxWait without getting a slot.
var ErrBusy = errors.New("every query slot is taken")

// Budget is a number of query slots with a bounded queue. It is safe for concurrent use.
type Budget struct {
	slots   chan struct{} // a token per running query
	queue   int64         // most callers waiting at once
	maxWait time.Duration
	waiting atomic.Int64
}

// New returns a Budget of size slots, with DefaultQueue waiters of at most DefaultMaxWait;
// size must be positive.
func New(size int) (*Budget, error) { return NewQueued(size, DefaultQueue, DefaultMaxWait) }

// NewQueued returns a Budget of size slots where at most queue callers wait, each at most
// maxWait, for a slot. size must be positive, queue and maxWait not negative; a queue of
// 0 (or a maxWait of 0) refuses at once whoever finds every slot taken.
func NewQueued(size, queue int, maxWait time.Duration) (*Budget, error) {
	if size <= 0 {
		return nil, fmt.Errorf("query budget: size must be positive, got %d", size)
	}
	if queue < 0 || maxWait < 0 {
		return nil, fmt.Errorf("query budget: queue and wait must not be negative, got %d and %s", queue, maxWait)
	}
	if maxWait == 0 {
		queue = 0
	}
	return &Budget{slots: make(chan struct{}, size), queue: int64(queue), maxWait: maxWait}, nil
}

// Size is the number of queries b runs at once.
func (b *Budget) Size() int { return cap(b.slots) }

// Queue is the number of callers that may wait for a slot at once.
func (b *Budget) Queue() int { return int(b.queue) }

// MaxWait is the longest a caller waits for a slot.
func (b *Budget) MaxWait() time.Duration { return b.maxWait }

// Acquire takes a slot and returns its release, which may be called more than once. When
// every slot is taken it waits in the queue, at most MaxWait and while ctx lasts; it fails
// with ErrBusy at once when the queue is full or when MaxWait runs out, and with ctx's
// error when ctx ends first or has ended already (even if a slot is free).
func (b *Budget) Acquire(ctx context.Context) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case b.slots <- struct{}{}:
		return b.release(), nil
	default:
	}
	if b.waiting.Add(1) > b.queue {
		b.waiting.Add(-1)
		return nil, ErrBusy
	}
	defer b.waiting.Add(-1)
	timer := time.NewTimer(b.maxWait)
	defer timer.Stop()
	select {
	case b.slots <- struct{}{}:
		return b.release(), nil
	case <-timer.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *Budget) release() func() { return sync.OnceFunc(func() { <-b.slots }) }
