package testhttp

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

// TestSlowWriter: a Write waits for the client to read, and fails once the handler's
// write deadline passes; what was read is kept.
func TestSlowWriter(t *testing.T) {
	errs := make(chan error, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, err := w.Write([]byte("first"))
		errs <- err
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Millisecond)); err != nil {
			errs <- err
			return
		}
		_, err = w.Write([]byte("second"))
		errs <- err
	})
	w, done := Serve(h, httptest.NewRequest(http.MethodGet, "/", nil))
	<-w.Started
	select {
	case err := <-errs:
		t.Fatalf("Write returned (%v) before the client read", err)
	default:
	}
	close(w.Read)
	<-done
	if err := <-errs; err != nil {
		t.Fatalf("first Write: %v", err)
	}
	// Read is closed, so the second Write reads at once: the deadline only bounds a
	// client that does not read.
	if err := <-errs; err != nil {
		t.Fatalf("second Write after the client read: %v", err)
	}
	if w.Code() != http.StatusOK || w.Body() != "firstsecond" {
		t.Fatalf("got %d %q, want 200 \"firstsecond\"", w.Code(), w.Body())
	}
}

// TestSlowWriterDeadline: a client that never reads makes a Write fail at the deadline.
func TestSlowWriterDeadline(t *testing.T) {
	w := NewSlowWriter()
	if err := w.SetWriteDeadline(time.Now().Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a client that never reads: %v, want %v", err, os.ErrDeadlineExceeded)
	}
	if w.Body() != "" {
		t.Fatalf("the client that never read got %q", w.Body())
	}
}
