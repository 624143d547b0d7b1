package budget

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

func TestNew(t *testing.T) {
	for _, size := range []int{0, -1} {
		if b, err := New(size); err == nil {
			t.Errorf("New(%d) = %v, want an error", size, b)
		}
	}
	b, err := New(3)
	if err != nil || b.Size() != 3 {
		t.Fatalf("New(3) = %v, %v", b, err)
	}
}

func TestDefaultSize(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct{ procs, want int }{{1, 1}, {2, 1}, {3, 1}, {4, 2}, {7, 3}, {8, 4}, {64, MaxDefaultSize}} {
		runtime.GOMAXPROCS(tc.procs)
		if got := DefaultSize(); got != tc.want {
			t.Errorf("DefaultSize() with GOMAXPROCS %d = %d, want %d", tc.procs, got, tc.want)
		}
	}
}

func TestAcquire(t *testing.T) {
	b, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	release, err := b.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The only slot is taken: a second caller waits until its context ends.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with the slot taken and a cancelled context: %v, want context.Canceled", err)
	}
	waited := make(chan error, 1)
	go func() {
		r, err := b.Acquire(t.Context())
		if err == nil {
			r()
		}
		waited <- err
	}()
	release()
	release() // a second release frees nothing more
	if err := <-waited; err != nil {
		t.Fatalf("Acquire after a release: %v", err)
	}
	// An ended context gets no slot, even a free one.
	if _, err := b.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a free slot and a cancelled context: %v, want context.Canceled", err)
	}
	r1, err := b.Acquire(t.Context())
	if err != nil {
		t.Fatalf("Acquire with the slot free: %v", err)
	}
	r1()
}

func TestNewQueued(t *testing.T) {
	for _, c := range []struct {
		size, queue int
		wait        time.Duration
		ok          bool
	}{
		{1, 0, 0, true}, {2, 3, time.Second, true},
		{0, 1, time.Second, false}, {1, -1, time.Second, false}, {1, 1, -time.Second, false},
	} {
		b, err := NewQueued(c.size, c.queue, c.wait)
		if (err == nil) != c.ok {
			t.Errorf("NewQueued(%d, %d, %s) = %v, %v; want ok %t", c.size, c.queue, c.wait, b, err, c.ok)
		}
	}
	if b, _ := NewQueued(1, 5, 0); b.Queue() != 0 {
		t.Errorf("a zero wait keeps a queue of %d, want 0", b.Queue())
	}
}

// TestBusy: with the slots taken, a caller waits in the queue at most MaxWait; a caller
// beyond the queue, or of a budget without one, is refused at once.
func TestBusy(t *testing.T) {
	for _, c := range []struct {
		name     string
		queue    int
		wait     time.Duration
		freeAt   time.Duration // when the running query ends; 0: never
		wantErr  error
		wantTook time.Duration
	}{
		{"no queue refuses at once", 0, 0, 0, ErrBusy, 0},
		{"the wait runs out", 1, 2 * time.Second, 0, ErrBusy, 2 * time.Second},
		{"a slot frees within the wait", 1, 2 * time.Second, 500 * time.Millisecond, nil, 500 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, err := NewQueued(1, c.queue, c.wait)
				if err != nil {
					t.Fatal(err)
				}
				running, _ := b.Acquire(t.Context())
				if c.freeAt > 0 {
					time.AfterFunc(c.freeAt, running)
				}
				start := time.Now()
				r, err := b.Acquire(t.Context())
				if took := time.Since(start); !errors.Is(err, c.wantErr) || took != c.wantTook {
					t.Fatalf("Acquire = %v after %s; want %v after %s", err, took, c.wantErr, c.wantTook)
				}
				if r != nil {
					r()
				}
				running()
			})
		})
	}
}

// TestQueueFull: once Queue callers wait, the next one is refused at once, and the queue
// takes callers again when they leave.
func TestQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := NewQueued(1, 2, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		running, _ := b.Acquire(t.Context())
		ctx, cancel := context.WithCancel(t.Context())
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := b.Acquire(ctx)
				errs <- err
			}()
		}
		synctest.Wait() // both wait in the queue
		start := time.Now()
		if _, err := b.Acquire(t.Context()); !errors.Is(err, ErrBusy) || time.Since(start) != 0 {
			t.Fatalf("Acquire with a full queue = %v after %s, want ErrBusy at once", err, time.Since(start))
		}
		cancel()
		for range 2 {
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Fatalf("a queued caller whose context ended: %v", err)
			}
		}
		got := make(chan error, 1)
		go func() {
			r, err := b.Acquire(t.Context())
			if err == nil {
				r()
			}
			got <- err
		}()
		synctest.Wait()
		running()
		if err := <-got; err != nil {
			t.Fatalf("Acquire once the queue emptied: %v", err)
		}
	})
}
