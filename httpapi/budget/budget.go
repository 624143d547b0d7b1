// Package budget bounds the queries that read the storage at once. One Budget guards one
// TSDB: cmd constructs it and hands it to every API that reads the TSDB (the history API
// and the Prometheus-compatible API), so that together they never run more queries at
// once than it allows.
package budget

import (
	"context"
	"fmt"
	"sync"
)

// DefaultSize is the number of queries a Budget runs at once by default.
const DefaultSize = 4

// Budget is a number of query slots. It is safe for concurrent use.
type Budget struct {
	slots chan struct{} // a token per running query
}

// New returns a Budget of size slots; size must be positive.
func New(size int) (*Budget, error) {
	if size <= 0 {
		return nil, fmt.Errorf("query budget: size must be positive, got %d", size)
	}
	return &Budget{slots: make(chan struct{}, size)}, nil
}

// Size is the number of queries b runs at once.
func (b *Budget) Size() int { return cap(b.slots) }

// Acquire waits for a slot while ctx lasts and returns its release, which may be called
// more than once. It fails with ctx's error when ctx ends first, or has ended already
// (even if a slot is free).
func (b *Budget) Acquire(ctx context.Context) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case b.slots <- struct{}{}:
		return sync.OnceFunc(func() { <-b.slots }), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
