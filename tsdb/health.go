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
//
// A commit can also succeed while the TSDB refuses samples for their time: out of bounds
// (older than the head's newest sample minus one hour, or than the last block) or out of
// order (older than their series' last sample). A few are normal (a kubelet's clock
// stepping back once); many mean history is being lost, typically because a sample far in
// the future moved the head. A round is lossy when more than lossyPercent (1 %) of its
// samples are refused so; after lossyRounds (3) lossy rounds in a row, 45 s at the default
// resolution, StorageHealth fails with the counts, until the first round that is not
// lossy. Three rounds keep a single restart replay or clock step from flipping the check;
// 1 % is one node in a hundred losing everything, or every node losing a series in ten.

const (
	lossyPercent = 1
	lossyRounds  = 3
)

// roundLoss counts what one committed round lost to the TSDB's time constraints.
type roundLoss struct {
	outOfBounds int // out of bounds or too old
	outOfOrder  int
	samples     int // every sample of the round, appended or not
}

func (l roundLoss) lost() int { return l.outOfBounds + l.outOfOrder }

func (l roundLoss) lossy() bool { return l.samples > 0 && l.lost()*100 > l.samples*lossyPercent }

// storageHealth is the outcome of the last commit. Its own mutex, not DB.writeMu, guards
// it, so that a health check never waits for a Write.
type storageHealth struct {
	mu sync.Mutex
	// err is the last commit's error, nil when it succeeded (or before the first).
	err error
	// since is when the first of the failed commits in a row failed; failures counts them.
	since    time.Time
	failures int

	// lossyRounds counts the lossy rounds in a row, the first of them written at
	// lossSince; loss is the last one's.
	lossyRounds int
	lossSince   time.Time
	loss        roundLoss

	// low is set while appends are paused for disk space (diskspace.go).
	low *lowSpaceError
}

// spaceChecked records a free space check at now: s.low() means appends are paused, and
// that the round, when round is set (not at Open), is not stored. It reports whether appends were paused before and, if so, since when and for
// how many rounds.
func (h *storageHealth) spaceChecked(s spaceState, round bool, now time.Time, dir string) (was bool, since time.Time, rounds int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.low != nil {
		was, since, rounds = true, h.low.since, h.low.rounds
	}
	if !s.low() {
		h.low = nil
		return was, since, rounds
	}
	if h.low == nil {
		h.low = &lowSpaceError{dir: dir, since: now}
	}
	if round {
		h.low.rounds++
	}
	h.low.free, h.low.reserve = s.free, s.reserve
	return was, since, rounds
}

// roundRecorded records a committed round written at now and its loss. It reports whether
// the storage was lossy (lossyRounds lossy rounds in a row) before and is now, and, when
// it is no longer, since when it was and for how many rounds.
func (h *storageHealth) roundRecorded(l roundLoss, now time.Time) (was, is bool, since time.Time, rounds int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	was, since, rounds = h.lossyRounds >= lossyRounds, h.lossSince, h.lossyRounds
	if !l.lossy() {
		h.lossyRounds, h.lossSince, h.loss = 0, time.Time{}, roundLoss{}
		return was, false, since, rounds
	}
	if h.lossyRounds == 0 {
		h.lossSince = now
	}
	h.lossyRounds++
	h.loss = l
	return was, h.lossyRounds >= lossyRounds, h.lossSince, h.lossyRounds
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
	switch {
	case h.low != nil:
		e := *h.low
		return &e
	case h.err != nil:
		return &unwritableError{since: h.since, failures: h.failures, err: h.err}
	case h.lossyRounds >= lossyRounds:
		return &lossyError{since: h.lossSince, rounds: h.lossyRounds, loss: h.loss}
	}
	return nil
}

// lossyError is StorageHealth's error while the TSDB refuses many samples for their time.
type lossyError struct {
	since  time.Time
	rounds int
	loss   roundLoss // the last round's
}

func (e *lossyError) Error() string {
	return fmt.Sprintf("storage refuses samples for their time since %s (%d rounds in a row with more than %d%%; the current window is served from memory): "+
		"last round %d of %d samples refused, %d out of bounds, %d out of order (is a kubelet's clock ahead? see /readyz/kubelet-clocks)",
		e.since.UTC().Format(time.RFC3339), e.rounds, lossyPercent, e.loss.lost(), e.loss.samples, e.loss.outOfBounds, e.loss.outOfOrder)
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

// StorageHealth returns nil when the storage keeps history. When the last commit to the
// TSDB failed, it returns an error that says since when commits fail, how many did, and the
// last one's reason (errors.Is finds it, such as syscall.ENOSPC); the next successful
// Write makes it nil again. While appends are paused because the free disk space is below
// the reserve (diskspace.go), it returns an error that wraps ErrLowDiskSpace with the free
// bytes and the reserve, until a round finds the reserve free again. When the TSDB refused more than 1 % of each of the last three
// rounds' samples as out of bounds or out of order, it returns an error with the last
// round's counts; the next round below 1 % makes it nil again. It never waits for a Write
// in progress.
func (db *DB) StorageHealth() error {
	return db.health.state()
}

// recordCommit updates the storage health after a Write's commit: err is the commit's
// error, nil when it succeeded. Call it with writeMu held, so that transitions are logged
// in order.
func (db *DB) recordCommit(err error) {
	defer db.publishHealth()
	if err != nil {
		if db.health.commitFailed(err, db.now()) {
			db.log.Warn("Storage is not writable: history is not kept until a write succeeds; the current window is still served from memory",
				"dir", db.cfg.tsdbDir(), "err", err)
		}
		return
	}
	if wasWritable, since, failures := db.health.commitSucceeded(); !wasWritable {
		db.log.Info("Storage is writable again", "dir", db.cfg.tsdbDir(),
			"unwritableFor", db.now().Sub(since).Round(time.Second), "failedWrites", failures)
	}
}

// recordRound updates the storage health after a committed Write with what the TSDB
// refused of it. Call it with writeMu held, so that transitions are logged in order.
func (db *DB) recordRound(l roundLoss) {
	defer db.publishHealth()
	was, is, since, rounds := db.health.roundRecorded(l, db.now())
	switch {
	case is && !was:
		db.log.Warn("The TSDB refuses many samples for their time: history is incomplete; the current window is still served from memory",
			"dir", db.cfg.tsdbDir(), "rounds", rounds, "refused", l.lost(), "samples", l.samples,
			"outOfBounds", l.outOfBounds, "outOfOrder", l.outOfOrder)
	case was && !is:
		db.log.Info("The TSDB takes the rounds' samples again", "dir", db.cfg.tsdbDir(),
			"lossyFor", db.now().Sub(since).Round(time.Second), "lossyRounds", rounds)
	}
}

// publishHealth sets hindsight_storage_writable from StorageHealth.
func (db *DB) publishHealth() {
	if db.health.state() == nil {
		db.m.writable.Set(1)
	} else {
		db.m.writable.Set(0)
	}
}
