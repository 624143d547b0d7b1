package tsdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// Disk space.
//
// The Prometheus TSDB survives a failed WAL write (the commit fails and is rolled back), a
// failed compaction (the half-written block is removed and the compaction retried) and a
// failed memory snapshot (Close returns the error; Open replays the WAL instead), but not a
// failed head chunk write: the head writes a full chunk to chunks_head/ through
// ChunkDiskMapper.WriteChunk, from its periodic m-map pass (every minute), on Close and
// during WAL replay in Open, with a callback that panics on any error but "closed"
// (head_append.go, handleChunkWriteError). A head chunk file is also preallocated
// (chunks.HeadChunkFilePreallocationSize) when the first chunk after Open or after a head
// compaction is written. On a full disk the process dies, and dies again at each restart
// once replay writes a chunk.
//
// So Write checks the free space of the TSDB's file system (statfs, the space available to
// an unprivileged user) before each round's append, and appends nothing while it is below
// the reserve: the chunks already cut are then the only ones the head can still write, and
// the reserve holds them. The current window is still served from memory (Write updates
// the index first); the round's samples are counted as dropped (reason low_disk_space);
// StorageHealth and hindsight_storage_writable report it; appends resume by themselves at
// the first round that finds the reserve free again. Compactions, which write a whole new
// block before the old data goes, are disabled while the free space is below the reserve
// plus an estimate of the largest compaction (compactionSpace), and enabled again above
// it; meanwhile rounds are appended through the head's appender, so that the TSDB's
// minutely pass still runs (appenderV2). Open checks the same before the first Write, so a
// restart on a volume still short of space starts paused and serves the restored window.
//
// The reserve (diskReserve), for s series (the head's, at least Config.ExpectedSeries):
//
//	reserveFixed = 4 MiB   chunks.DefaultWriteBufferSize: the chunk bytes ChunkDiskMapper
//	                       buffers in memory and writes out when the buffer fills, at a
//	                       file cut and on Close
//	             + 128 KiB chunks.HeadChunkFilePreallocationSize: a new head chunk file
//	             + 1 MiB   the WAL: 32 KiB pages, the record of a round in flight, a new
//	                       segment (not preallocated on Linux) and a checkpoint's records
//	             + 2 MiB   slack: the lock files, the catalog's next small write, rounding
//	                       to the file system's blocks
//	reservePerSeries = 4 KiB: the one full chunk per series that was cut before the pause
//	                       and that the next m-map pass or Close writes (at most 120
//	                       samples; ≤ 1.5 KiB with a kubelet's noisy values), and the open
//	                       head chunk, labels and series record of the chunk snapshot
//	                       written on Close (≤ 2 KiB), rounded up
//
//	diskReserve(s) = reserveFixed + s × reservePerSeries   (11 MiB for 1,000 series,
//	                                                        about 400 MiB for 100,000)
//
// compactionSpace is the head as a block (series × its span / resolution samples ×
// DiskBytesPerSample) plus the persisted blocks of the newest MaxBlockDuration, which is
// the most a compaction can merge at once, plus chunks.DefaultChunkSegmentSize (512 MiB):
// the block writer preallocates each chunk segment file to that size (fallocate) and
// truncates it when done, so a compaction fails on a volume with less free than that.
//
// The check is a statfs call per round (microseconds). A file system that statfs cannot
// read (or a platform without it) never pauses appends; the error is logged once.

const (
	reserveFixed     = chunks.DefaultWriteBufferSize + chunks.MinWriteBufferSize*2 + 1<<20 + 2<<20
	reservePerSeries = 4 << 10
)

// ErrLowDiskSpace is wrapped by Write's error and by StorageHealth while the free space of
// the storage's file system is below the reserve, so that nothing is appended to the TSDB.
var ErrLowDiskSpace = errors.New("free disk space below the reserve")

// diskReserve returns the bytes that must stay free for the TSDB with series series to
// write what it must (see above).
func diskReserve(series int) uint64 {
	return reserveFixed + uint64(max(series, 0))*reservePerSeries
}

// spaceState is the outcome of one free space check.
type spaceState struct {
	free, reserve, compaction uint64 // bytes
	err                       error  // statfs failed: free is unknown and nothing pauses
}

// low reports whether appends must stop.
func (s spaceState) low() bool { return s.err == nil && s.free < s.reserve }

// compactable reports whether compactions may run.
func (s spaceState) compactable() bool { return s.err != nil || s.free >= s.reserve+s.compaction }

// lowSpaceError is StorageHealth's error while appends are paused for disk space.
type lowSpaceError struct {
	dir           string
	since         time.Time
	rounds        int // rounds not stored
	free, reserve uint64
}

func (e *lowSpaceError) Error() string {
	return fmt.Sprintf("storage paused since %s (%d rounds not stored; the current window is served from memory): %s has %d bytes free, below the reserve of %d bytes (%v)",
		e.since.UTC().Format(time.RFC3339), e.rounds, e.dir, e.free, e.reserve, ErrLowDiskSpace)
}

func (e *lowSpaceError) Unwrap() error { return ErrLowDiskSpace }

// checkSpace checks the free space of the TSDB's file system and enables or disables
// compactions accordingly. Call it with writeMu held (or before the DB is shared).
func (db *DB) checkSpace() spaceState {
	series := max(db.cfg.ExpectedSeries, int(db.tsdb.Head().NumSeries()))
	s := spaceState{reserve: diskReserve(series), compaction: db.compactionSpace()}
	s.free, s.err = db.freeBytes(db.cfg.tsdbDir())
	if s.err != nil {
		if !db.space.statfsFailed {
			db.log.Warn("Cannot read the free space of the storage; appends will not pause for lack of space", "dir", db.cfg.tsdbDir(), "err", s.err)
			db.space.statfsFailed = true
		}
	} else {
		db.space.statfsFailed = false
		db.m.freeBytes.Set(float64(s.free))
	}
	db.m.reserveBytes.Set(float64(s.reserve))
	switch c := s.compactable(); {
	case c && db.space.compactionsOff:
		db.tsdb.EnableCompactions()
		db.tierCompactionsOff.Store(false)
		db.space.compactionsOff = false
		db.log.Info("Compactions resumed: the disk has room for one", "free", s.free, "needed", s.reserve+s.compaction)
	case !c && !db.space.compactionsOff:
		db.tsdb.DisableCompactions()
		db.tierCompactionsOff.Store(true)
		db.space.compactionsOff = true
		db.log.Warn("Compactions paused until the disk has room for one", "free", s.free, "needed", s.reserve+s.compaction)
	}
	return s
}

// compactionSpace estimates the bytes the largest compaction could write: a preallocated
// chunk segment file, the head as a block, plus the persisted blocks of the newest
// MaxBlockDuration.
func (db *DB) compactionSpace() uint64 {
	h := db.tsdb.Head()
	n := uint64(chunks.DefaultChunkSegmentSize)
	if span := h.MaxTime() - h.MinTime(); h.NumSeries() > 0 && span >= 0 {
		samples := uint64(span/db.cfg.Resolution.Milliseconds()) + 1
		n += h.NumSeries() * samples * DiskBytesPerSample
	}
	blocks := db.tsdb.Blocks()
	if len(blocks) == 0 {
		return n
	}
	from := blocks[len(blocks)-1].Meta().MaxTime - db.cfg.promOptions().MaxBlockDuration
	for _, b := range blocks {
		if b.Meta().MaxTime > from {
			n += uint64(max(b.Size(), 0))
		}
	}
	return n
}

// spaceGate is the DB's state of the disk space checks, guarded by writeMu.
type spaceGate struct {
	compactionsOff bool
	statfsFailed   bool
}

// appenderV2 returns the appender for a round. Call it with writeMu held.
//
// While compactions are off it is the TSDB head's own rather than the DB's. The DB's
// appender wakes the TSDB's run loop on every commit of a compactable head, to try a
// compaction; the loop re-arms its minutely timer on every wake-up, and that timer is what
// runs the TSDB's minutely pass: reload the blocks (which applies retention) and m-map the
// head's full chunks. With compactions off the head stays compactable, so with rounds
// every resolution the timer never fired: retention stopped, and the cut chunks stayed on
// the heap and in no file until the first pass that did run (once appends paused and the
// commits stopped, or on Close) wrote them all at once, more than the reserve holds (one
// chunk a series): the head chunk write that panics the process on a full disk. The
// head's appender is the same appender without the wake-up; compactions need none.
func (db *DB) appenderV2(ctx context.Context) storage.AppenderV2 {
	if db.space.compactionsOff && db.appendable == storage.AppendableV2(db.tsdb) {
		return db.tsdb.Head().AppenderV2(ctx)
	}
	return db.appendable.AppenderV2(ctx)
}

// recordSpace updates the storage health with a space check: s low means appends are
// paused and, when round is set (a Write, not Open), that the round is not stored. Call it with writeMu held, so that transitions are logged in order.
func (db *DB) recordSpace(s spaceState, round bool) {
	defer db.publishHealth()
	was, since, rounds := db.health.spaceChecked(s, round, db.now(), db.cfg.tsdbDir())
	switch {
	case s.low() && !was:
		db.log.Warn("Free disk space is below the reserve: appends to the TSDB are paused; the current window is still served from memory",
			"dir", db.cfg.tsdbDir(), "free", s.free, "reserve", s.reserve)
	case !s.low() && was:
		db.log.Info("Free disk space is above the reserve again: appends to the TSDB resume", "dir", db.cfg.tsdbDir(),
			"free", s.free, "reserve", s.reserve, "pausedFor", db.now().Sub(since).Round(time.Second), "roundsNotStored", rounds)
	}
}
