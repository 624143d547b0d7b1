// Package testhttp gives handler tests a client that reads its response slowly. Test
// files import it; no product code does.
package testhttp

import (
	"bytes"
	"net/http"
	"os"
	"sync"
	"time"
)

// SlowWriter is an http.ResponseWriter for a client that reads slowly: each Write blocks
// until the test closes Read, or until the write deadline the handler set through
// http.ResponseController passes (then it fails with os.ErrDeadlineExceeded, as a
// net.Conn does).
type SlowWriter struct {
	// Started is closed at the first Write: the response is being written.
	Started chan struct{}
	// Read is closed by the test: the client reads from then on.
	Read chan struct{}

	header http.Header
	once   sync.Once

	mu       sync.Mutex
	code     int
	deadline time.Time
	body     bytes.Buffer
}

// NewSlowWriter returns a SlowWriter whose client has not read yet.
func NewSlowWriter() *SlowWriter {
	return &SlowWriter{Started: make(chan struct{}), Read: make(chan struct{}), header: http.Header{}}
}

// Serve serves r through h to a new SlowWriter in the background; done is closed when
// the handler returns.
func Serve(h http.Handler, r *http.Request) (w *SlowWriter, done chan struct{}) {
	w = NewSlowWriter()
	done = make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(w, r)
	}()
	return w, done
}

// Header implements http.ResponseWriter.
func (w *SlowWriter) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter; the first code counts.
func (w *SlowWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.code == 0 {
		w.code = code
	}
}

// Write implements http.ResponseWriter, blocking as the type's comment says.
func (w *SlowWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.once.Do(func() { close(w.Started) })
	w.mu.Lock()
	deadline := w.deadline
	w.mu.Unlock()
	var expired <-chan time.Time
	if !deadline.IsZero() {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case <-w.Read:
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.body.Write(p)
}

// SetWriteDeadline is what http.ResponseController calls.
func (w *SlowWriter) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = t
	return nil
}

// Deadline is the write deadline the handler set last (zero before any).
func (w *SlowWriter) Deadline() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.deadline
}

// Code is the status written (0 before any).
func (w *SlowWriter) Code() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.code
}

// Body is what the client has read so far.
func (w *SlowWriter) Body() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.body.String()
}
