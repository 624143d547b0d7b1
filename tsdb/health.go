package tsdb

import (
	"fmt"
	"sync"
	"time"
)

// Storage health.
//
// A commit to the TSDB fails when its WAL cannot be written: a full or read-only volume, an
// I/O error. Write keeps the current window in memory regardless, so metrics.k8s.io goes on
// being served; only history is lost until a commit succeeds again, which the next Write
// tries by itself. StorageHealth reports the state, hindsight_storage_writable exports it,
// and the log gets one line per change.

// storageHealth is the outcome of the last commit. Its own mutex, not DB.writeMu, guards
// it, so that a health check never waits for a Write.
type storageHealth struct {
	mu sync.Mutex
	// err is the last commit's error, nil when it succeeded (or before the first).
	err error
	// since is when the first of the failed commits in a row failed; failures counts them.
	since    time.Time
	failures int
}

// commitFailed records a failed commit at now and reports whether the storage was
// writable before.
func (h *storageHealth) commitFailed(err error, now time.Time) (wasWritable bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	wasWritable = h.err == nil
	if wasWritable {
		h.since = now
	}
	h.err = err
	h.failures++
	return wasWritable
}

// commitSucceeded records a successful commit. When the storage was not writable before,
// it returns when that started and how many commits failed.
func (h *storageHealth) commitSucceeded() (wasWritable bool, since time.Time, failures int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	wasWritable, since, failures = h.err == nil, h.since, h.failures
	h.err, h.since, h.failures = nil, time.Time{}, 0
	return wasWritable, since, failures
}

func (h *storageHealth) state() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		return nil
	}
	return &unwritableError{since: h.since, failures: h.failures, err: h.err}
}

// unwritableError is StorageHealth's error: the reason, and since when.
type unwritableError struct {
	since    time.Time
	failures int
	err      error // the last commit's
}

func (e *unwritableError) Error() string {
	return fmt.Sprintf("storage not writable since %s (%d failed writes in a row; the current window is served from memory): %v",
		e.since.UTC().Format(time.RFC3339), e.failures, e.err)
}

func (e *unwritableError) Unwrap() error { return e.err }

// StorageHealth returns nil when the last commit to the TSDB succeeded (or none was tried
// yet), and otherwise an error that says since when commits fail, how many did, and the
// last one's reason (errors.Is finds it, such as syscall.ENOSPC). The next successful
// Write makes it nil again. It never waits for a Write in progress.
func (db *DB) StorageHealth() error {
	return db.health.state()
}

// recordCommit updates the storage health after a Write's commit: err is the commit's
// error, nil when it succeeded. Call it with writeMu held, so that transitions are logged
// in order.
func (db *DB) recordCommit(err error) {
	if err != nil {
		if db.health.commitFailed(err, db.now()) {
			db.m.writable.Set(0)
			db.log.Warn("Storage is not writable: history is not kept until a write succeeds; the current window is still served from memory",
				"dir", db.cfg.tsdbDir(), "err", err)
		}
		return
	}
	if wasWritable, since, failures := db.health.commitSucceeded(); !wasWritable {
		db.m.writable.Set(1)
		db.log.Info("Storage is writable again", "dir", db.cfg.tsdbDir(),
			"unwritableFor", db.now().Sub(since).Round(time.Second), "failedWrites", failures)
	}
}
