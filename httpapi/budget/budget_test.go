package budget

import (
	"context"
	"errors"
	"testing"
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
