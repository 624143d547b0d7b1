package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	// ErrLocked is returned by Open when another process (or another Catalog in this
	// one) holds the file; the error names the path and, when known, the holder.
	ErrLocked = errors.New("catalog: locked by another process")
	// ErrCorrupt is returned by Open when the file is not a readable catalog: not a bbolt
	// file, truncated, failing bbolt's consistency check, or of another schema version.
	// OpenOrRebuild moves such a file aside and starts afresh.
	ErrCorrupt = errors.New("catalog: corrupt file")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("catalog: closed")
	// ErrNotFound is returned by Pod and Node for an object the catalog does not hold.
	ErrNotFound = errors.New("catalog: not found")
	// ErrTooMany is returned by a lookup that matches more than Options.MaxResults
	// records; the caller should narrow the time range or the selection.
	ErrTooMany = errors.New("catalog: too many results")
)

// Options tunes a Catalog. The zero value is ready to use.
type Options struct {
	// Timeout bounds the wait for the file lock held by another process; Open then fails
	// with ErrLocked. 0 means 2s. It is never infinite: a second Hindsight on the same
	// volume must fail, not hang.
	Timeout time.Duration
	// BatchInterval is how often Run writes queued records. 0 means 1s.
	BatchInterval time.Duration
	// BatchSize is the number of queued records that makes Run write before the
	// interval. 0 means 500. With 8×BatchSize records queued (Run too slow or not
	// running), the caller that queues writes them itself.
	BatchSize int
	// CompactEvery is how often Run compacts the file (bbolt files never shrink by
	// themselves). 0 means 24h; a negative value disables it.
	CompactEvery time.Duration
	// Retention is how long a deleted pod or node is kept after it was last seen; use
	// the TSDB's retention. Live objects are never pruned. 0 keeps everything. Run
	// prunes hourly.
	Retention time.Duration
	// MaxResults bounds the records one lookup returns; more matches give ErrTooMany.
	// 0 means 10,000.
	MaxResults int
	// Now is the clock that stamps observations and deletions. nil means time.Now.
	Now func() time.Time
}

// Validate reports every invalid field.
func (o Options) Validate() error {
	var errs []error
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("option Timeout %s is negative", o.Timeout))
	}
	if o.BatchInterval < 0 {
		errs = append(errs, fmt.Errorf("BatchInterval %s is negative", o.BatchInterval))
	}
	if o.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("BatchSize %d is negative", o.BatchSize))
	}
	if o.Retention < 0 {
		errs = append(errs, fmt.Errorf("option Retention %s is negative", o.Retention))
	}
	if o.MaxResults < 0 {
		errs = append(errs, fmt.Errorf("MaxResults %d is negative", o.MaxResults))
	}
	return errors.Join(errs...)
}

func (o Options) complete() Options {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.BatchInterval == 0 {
		o.BatchInterval = time.Second
	}
	if o.BatchSize == 0 {
		o.BatchSize = 500
	}
	if o.CompactEvery == 0 {
		o.CompactEvery = 24 * time.Hour
	}
	if o.MaxResults == 0 {
		o.MaxResults = 10_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// pruneEvery is how often Run prunes when Options.Retention is set. Pruning scans index
// keys only, so it is cheap; compaction, which rewrites the file, is rarer.
const pruneEvery = time.Hour

// compactTxMaxSize bounds each transaction of a compaction, so that copying a large file
// does not hold it all in memory.
const compactTxMaxSize = 64 << 20

// Catalog is the bbolt-backed record of pods and nodes over time. All methods are safe
// for concurrent use.
type Catalog struct {
	path  string
	opts  Options // completed
	log   *slog.Logger
	owner string // content of the .owner file we wrote

	// flushSem (capacity 1) serializes writers of the file: Flush, Prune, Compact and
	// Close. It is a channel so that waiting honours a context.
	flushSem chan struct{}

	// mu guards db: readers and writers hold it shared, Compact holds it exclusively
	// while it swaps the file, Close while it closes it (then db is nil).
	mu sync.RWMutex
	db *bolt.DB

	// qmu guards queue and closed.
	qmu    sync.Mutex
	queue  []op
	closed bool // no more records are queued

	kick     chan struct{} // capacity 1: the queue reached BatchSize
	closing  chan struct{} // closed by Close, ends Run
	closeOne sync.Once

	// failWrite, when set by a test, fails every write transaction of Flush, as a full
	// disk would.
	failWrite atomic.Pointer[error]

	writeTxs atomic.Uint64 // committed write transactions
	dropped  atomic.Uint64 // records dropped after a failed write with a full queue
	// failing is the error of the last write and when the writes began to fail; nil
	// while writes succeed.
	failing atomic.Pointer[writeFailure]
}

// writeFailure is what Health reports while writes fail.
type writeFailure struct {
	err   error
	since time.Time
}

// Stats describes a Catalog's activity, for self-metrics and tests.
type Stats struct {
	Queued   int    // records waiting for the next write
	WriteTxs uint64 // write transactions committed since Open by Flush, Run, Close and Prune
	Dropped  uint64 // records lost because a write failed while the queue was full
	Bytes    int64  // size of the file
}

// Open opens the catalog at path (conventionally <storage-path>/catalog.db), creating it
// and its directory when missing. It fails with an error wrapping ErrLocked, after at most
// Options.Timeout, when another process holds the file, and with one wrapping ErrCorrupt
// when the file is not a readable catalog. Every page and record is checked, so Open
// reads the whole file: about 10µs per pod record. log may be nil.
func Open(path string, opts Options, log *slog.Logger) (*Catalog, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("invalid catalog options: %w", err)
	}
	opts = opts.complete()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create catalog directory: %w", err)
	}
	db, err := openBolt(path, opts.Timeout)
	if err != nil {
		return nil, err
	}
	c := &Catalog{
		path:     path,
		opts:     opts,
		log:      log,
		flushSem: make(chan struct{}, 1),
		db:       db,
		kick:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
	}
	c.owner = c.writeOwner()
	// A compaction interrupted by a crash leaves its copy; only the lock holder compacts.
	if err := os.Remove(path + ".compact"); err == nil {
		log.Info("Removed the copy of an interrupted compaction", "path", path+".compact")
	}
	pods, nodes, err := check(db)
	if err != nil {
		c.removeOwner()
		return nil, errors.Join(fmt.Errorf("open catalog %s: %w", path, err), db.Close())
	}
	log.Info("Opened catalog", "path", path, "pods", pods, "nodes", nodes, "bytes", fileSize(path))
	return c, nil
}

// OpenOrRebuild is Open, except that a corrupt file is renamed to
// <path>.corrupt-<unix seconds> (kept for inspection, never deleted) with a warning and a
// fresh catalog is created in its place. The caller refills it from its informers.
func OpenOrRebuild(path string, opts Options, log *slog.Logger) (*Catalog, error) {
	c, err := Open(path, opts, log)
	if err == nil || !errors.Is(err, ErrCorrupt) {
		return c, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	aside := fmt.Sprintf("%s.corrupt-%d", path, now().Unix())
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, errors.Join(err, fmt.Errorf("move corrupt catalog aside: %w", rerr))
	}
	log.Warn("Catalog is corrupt; moved it aside and starting an empty one, which the informers refill (history of objects deleted before now is in the old file only)",
		"path", path, "movedTo", aside, "err", err)
	return Open(path, opts, log)
}

// openBolt opens path with bbolt after checking that its meta pages are sound, so that
// bbolt never maps pages beyond the end of a truncated file.
func openBolt(path string, timeout time.Duration) (db *bolt.DB, err error) {
	if err := checkHeader(path); err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	// bbolt can panic on a corrupt page while opening (checkHeader rules out the known
	// case, a garbage freelist). Keep its file to close it then. bbolt's lost mapping of
	// the file may still hold the lock on it, which does not stop OpenOrRebuild: it moves
	// the file aside and creates a new one.
	var file *os.File
	opts := &bolt.Options{Timeout: timeout, OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("open catalog %s: %w: bbolt panicked: %v", path, ErrCorrupt, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, opts)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open catalog %s: held by %s (waited %s): %w", path, readOwner(path), timeout, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("open catalog %s: %w: %w", path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	return db, nil
}

// Close writes the queued records, ends Run and closes the file. Call it after Run has
// returned, or concurrently to stop Run. It is idempotent.
func (c *Catalog) Close() error {
	var err error
	c.closeOne.Do(func() {
		c.qmu.Lock()
		c.closed = true
		c.qmu.Unlock()
		close(c.closing)
		_ = c.lockWriters(context.Background())
		defer c.unlockWriters()
		err = c.flushLocked()
		c.mu.Lock()
		defer c.mu.Unlock()
		err = errors.Join(err, c.db.Close())
		c.db = nil
		c.removeOwner()
		c.log.Info("Closed catalog", "path", c.path)
	})
	return err
}

// Run writes queued records every BatchInterval or when BatchSize are queued, prunes
// hourly when Retention is set and compacts every CompactEvery. It blocks until ctx is
// done or Close is called, writes what is queued, and returns nil. A failed write (disk
// full) is logged once and retried every tick with its records kept queued; once
// 8×BatchSize are queued, the Upsert that fills the queue returns the write error and
// the oldest records are dropped (counted in Stats.Dropped; the informers' next resync or
// a Reconcile repairs the catalog).
func (c *Catalog) Run(ctx context.Context) error {
	flush := time.NewTicker(c.opts.BatchInterval)
	defer flush.Stop()
	var pruneC, compactC <-chan time.Time
	if c.opts.Retention > 0 {
		t := time.NewTicker(pruneEvery)
		defer t.Stop()
		pruneC = t.C
	}
	if c.opts.CompactEvery > 0 {
		t := time.NewTicker(c.opts.CompactEvery)
		defer t.Stop()
		compactC = t.C
	}
	failing := false // the last write failed: log the next failures at Debug only
	for {
		select {
		case <-ctx.Done():
			if err := c.Flush(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, ErrClosed) {
				return fmt.Errorf("flush catalog on stop: %w", err)
			}
			return nil
		case <-c.closing:
			return nil
		case <-flush.C:
		case <-c.kick:
		case <-pruneC:
			if n, err := c.Prune(ctx); err != nil {
				c.logBackground("Pruning the catalog failed", err)
			} else if n > 0 {
				c.log.Info("Pruned catalog", "records", n)
			}
		case <-compactC:
			if err := c.Compact(ctx); err != nil {
				c.logBackground("Compacting the catalog failed", err)
			}
		}
		switch err := c.Flush(ctx); {
		case err != nil && !failing:
			c.logBackground("Writing the catalog failed; retrying every tick", err)
			failing = true
		case err != nil:
			c.log.Debug("Writing the catalog failed again", "path", c.path, "err", err)
		case failing:
			c.log.Info("Writing the catalog works again", "path", c.path)
			failing = false
		}
	}
}

// logBackground logs a failure of Run's work, unless Run is stopping.
func (c *Catalog) logBackground(msg string, err error) {
	if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) {
		return
	}
	c.log.Warn(msg, "path", c.path, "err", err)
}

// Flush writes every queued record in one transaction.
func (c *Catalog) Flush(ctx context.Context) error {
	if err := c.lockWriters(ctx); err != nil {
		return err
	}
	defer c.unlockWriters()
	return c.flushLocked()
}

// flushLocked writes the queue. The caller holds flushSem. On failure the records go back
// to the head of the queue; the oldest beyond 8×BatchSize are dropped.
func (c *Catalog) flushLocked() error {
	c.qmu.Lock()
	ops := c.queue
	c.queue = nil
	c.qmu.Unlock()
	if len(ops) == 0 {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return ErrClosed
	}
	start := time.Now()
	err := c.db.Update(func(tx *bolt.Tx) error {
		if err := c.failWrite.Load(); err != nil {
			return *err
		}
		for i := range ops {
			if err := c.apply(tx, &ops[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		c.qmu.Lock()
		q := append(ops, c.queue...)
		if over := len(q) - c.maxQueue(); over > 0 {
			q = q[over:]
			c.dropped.Add(uint64(over))
		}
		c.queue = q
		c.qmu.Unlock()
		err = fmt.Errorf("write %d catalog records: %w", len(ops), err)
		since := c.opts.Now()
		if prev := c.failing.Load(); prev != nil {
			since = prev.since
		}
		c.failing.Store(&writeFailure{err: err, since: since})
		return err
	}
	c.failing.Store(nil)
	c.writeTxs.Add(1)
	c.log.Debug("Wrote catalog records", "records", len(ops), "duration", time.Since(start))
	return nil
}

func (c *Catalog) maxQueue() int { return 8 * c.opts.BatchSize }

// enqueue queues o for the next write; when the queue is full it writes it at once.
func (c *Catalog) enqueue(o op) error {
	c.qmu.Lock()
	if c.closed {
		c.qmu.Unlock()
		return ErrClosed
	}
	c.queue = append(c.queue, o)
	n := len(c.queue)
	c.qmu.Unlock()
	switch {
	case n >= c.maxQueue():
		// Run is behind or not running: write here rather than grow without bound.
		return c.Flush(context.Background())
	case n >= c.opts.BatchSize:
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Stats returns the current Stats.
func (c *Catalog) Stats() Stats {
	c.qmu.Lock()
	q := len(c.queue)
	c.qmu.Unlock()
	return Stats{Queued: q, WriteTxs: c.writeTxs.Load(), Dropped: c.dropped.Load(), Bytes: fileSize(c.path)}
}

// Health returns nil while the catalog's writes succeed, and otherwise an error that says
// since when and why they fail (a full disk, say): the records stay queued, and the oldest
// are dropped once 8×BatchSize are (Stats.Dropped). It returns ErrClosed after Close.
func (c *Catalog) Health() error {
	c.qmu.Lock()
	closed := c.closed
	c.qmu.Unlock()
	if closed {
		return ErrClosed
	}
	if f := c.failing.Load(); f != nil {
		return fmt.Errorf("catalog writes failing since %s: %w", f.since.UTC().Format(time.RFC3339), f.err)
	}
	return nil
}

// Path returns the file's path.
func (c *Catalog) Path() string { return c.path }

// view runs fn in a read transaction.
func (c *Catalog) view(fn func(tx *bolt.Tx) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return ErrClosed
	}
	return c.db.View(fn)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
