package tsdb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"
	promtsdb "github.com/prometheus/prometheus/tsdb"

	"github.com/hindsight-metrics/hindsight/internal/crashpoint"
)

// ErrClosed is returned by Write after Close, and by history queries once Close has begun.
var ErrClosed = errors.New("tsdb: closed")

// errNoMetrics is metrics-server's metric-storage-ready failure.
var errNoMetrics = errors.New("no metrics to serve")

// DB is Hindsight's storage: the embedded Prometheus TSDB, which keeps every sample, and
// the in-memory index of the latest points, from which the current window is served.
// All methods are safe for concurrent use. Queries never wait for a TSDB append.
type DB struct {
	cfg  Config // completed
	log  *slog.Logger
	lock *dirLock // on cfg.Dir, released by Close after the TSDB
	tsdb *promtsdb.DB
	// appendable is tsdb; tests replace it to inject failures.
	appendable storage.AppendableV2
	m          *metrics
	// now is the wall clock; tests replace it.
	now func() time.Time
	// freeBytes returns the free bytes of a directory's file system (statfsFree; tests
	// replace it).
	freeBytes func(dir string) (uint64, error)
	// health is the outcome of the last commit (StorageHealth).
	health storageHealth
	// queries counts the open history queriers and cancels them; Close ends and waits for
	// them before it closes the TSDB.
	queries *queryGate

	// writeMu serializes Write and Close; it guards app and closed.
	writeMu sync.Mutex
	app     *appender
	closed  bool
	space   spaceGate

	// mu guards idx. Write holds it only while it updates the index.
	mu  sync.RWMutex
	idx *index

	rollupState
}

// Open opens (or creates) the storage in cfg.Dir and, when the TSDB holds points newer
// than two resolutions, fills the current window from them, so that a restart serves at
// once: from the window snapshot the last Close wrote when no sample was stored since
// (windowsnap.go), else rebuilt from the stored points (restore.go). The embedded TSDB registers its own metrics (prometheus_tsdb_*) on reg with
// MustRegister, so reg must not have been passed to another Open; reg may be nil.
//
// Open locks cfg.Dir (the file hindsight.lock in it) until Close. When another process or
// another open DB holds it, Open fails at once, without waiting and without touching the
// TSDB, with an error that wraps ErrLocked and names the lock file and the holder's PID,
// host and start time. A WAL damaged by a crash (a torn last record) is repaired: the
// TSDB logs a warning and keeps the samples before the damage. A damaged block, middle WAL
// segment, chunks_head file or chunk snapshot is moved into <dir>/damaged/<time>/ with a
// warning naming it and counted in hindsight_storage_recovered_total{part}, and Open goes
// on without it (recover.go states what each loses). When the free disk space is below the
// reserve (diskspace.go), the DB opens with appends and compactions paused and
// StorageHealth says so; the restored window is served.
func Open(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*DB, error) {
	return open(cfg, log, reg, statfsFree)
}

// open is Open with the free space function.
func open(cfg Config, log *slog.Logger, reg prometheus.Registerer, freeBytes func(string) (uint64, error)) (_ *DB, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	cfg = cfg.complete()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o777); err != nil {
		return nil, fmt.Errorf("create storage directory: %w", err)
	}
	lock, err := lockDir(cfg.Dir, time.Now())
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, lock.release())
		}
	}()
	m, rm := newMetrics(), newRollupMetrics()
	if err := registerAll(reg, append(m.collectors(), rm.collectors()...)); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	defer func() {
		if err != nil {
			unregisterAll(reg, append(m.collectors(), rm.collectors()...))
		}
	}()
	if err := recoverDamaged(cfg, time.Now(), log, m.recover); err != nil {
		return nil, fmt.Errorf("recover damaged storage in %s: %w", cfg.Dir, err)
	}
	opts := cfg.promOptions()
	addCrashPoints(opts)
	pdb, err := promtsdb.Open(cfg.tsdbDir(), log, reg, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.tsdbDir(), err)
	}
	db := &DB{
		cfg:        cfg,
		log:        log,
		lock:       lock,
		tsdb:       pdb,
		appendable: pdb,
		m:          m,
		now:        time.Now,
		freeBytes:  freeBytes,
		app:        newAppender(),
		idx:        newIndex(log, cfg.Resolution),
		queries:    newQueryGate(),
	}
	db.rm = rm
	db.openTiers()
	// Before the TSDB's first compaction, which its loop starts a minute after Open.
	space := db.checkSpace()
	db.recordSpace(space, false)
	restoreStart, restoredFrom := time.Now(), restoredFromSnapshot
	if err := db.loadWindow(db.now()); err != nil {
		restoredFrom = restoredFromTSDB
		if !errors.Is(err, fs.ErrNotExist) {
			log.Info("Not using the window snapshot; rebuilding the current window from the TSDB", "err", err)
		}
		if err := db.restore(context.Background(), db.now()); err != nil {
			// The history is intact; only the first two scrapes will not be served.
			log.Warn("Could not restore the current window from the TSDB", "err", err)
		}
	}
	m.setPoints(db.idx)
	log.Info("Opened storage", "dir", cfg.Dir, "retention", cfg.Retention, "retentionSize", cfg.RetentionSize,
		"resolution", cfg.Resolution, "restoredNodes", db.idx.nodePoints, "restoredContainers", db.idx.containerPoints,
		"restoredFrom", restoredFrom, "restoreDuration", time.Since(restoreStart),
		"freeBytes", space.free, "reserveBytes", space.reserve)
	return db, nil
}

// Write stores one scrape round: it updates the in-memory latest-points index, then
// appends every sample, raw, to the TSDB and commits.
//
// A node whose ClockOffset exceeds ClockSkewBound (CheckClock) is dropped from the batch,
// counted in hindsight_storage_rejected_points_total{reason="clock_skew"}: the index
// treats it as absent (its previous points stay until forgotten), and none of its samples
// reach the TSDB, whose head and retention follow the newest sample time.
//
// A sample that the TSDB already holds (a kubelet returning its cached sample twice) or
// that is older than the series' last one is skipped and counted; the others are still
// committed. Write returns an error when samples failed for another reason or the commit
// failed (a full disk); the index is updated either way, so the current window keeps
// being served. While the free disk space is below the reserve (diskspace.go), nothing is
// appended: the samples are counted in hindsight_storage_dropped_samples_total
// {reason="low_disk_space"} and Write returns an error that wraps ErrLowDiskSpace.
func (db *DB) Write(ctx context.Context, b Batch) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return ErrClosed
	}
	start := time.Now()
	defer func() { db.m.writeDuration.Observe(time.Since(start).Seconds()) }()

	b = db.dropSkewed(b)
	db.mu.Lock()
	db.idx.apply(&b, db.now(), db.m.reject)
	db.m.setPoints(db.idx)
	db.mu.Unlock()

	space := db.checkSpace()
	db.recordSpace(space, true)
	if space.low() {
		db.m.dropped[dropLowSpace].Add(float64(b.Len()))
		return fmt.Errorf("write: %d samples not stored: %s has %d bytes free, below the reserve of %d: %w",
			b.Len(), db.cfg.tsdbDir(), space.free, space.reserve, ErrLowDiskSpace)
	}
	err := db.app.appendBatch(ctx, withCrashPoints(db.appenderV2(ctx)), &b)
	for reason, n := range db.app.skipped {
		db.m.skipped[reason].Add(float64(n))
	}
	db.m.appendErrors.WithLabelValues("append").Add(float64(db.app.errs))
	switch {
	case db.app.committed:
		db.m.appended.Add(float64(db.app.appended))
		db.recordCommit(nil)
		db.recordRound(db.app.roundLoss())
	case db.app.commitErr != nil:
		db.m.appendErrors.WithLabelValues("commit").Inc()
		db.m.dropped[dropCommitFailed].Add(float64(db.app.appended))
		db.recordCommit(db.app.commitErr)
	}
	return err
}

// dropSkewed returns b without the nodes CheckClock refuses; b's own slice is not modified.
func (db *DB) dropSkewed(b Batch) Batch {
	var kept []NodeScrape
	for i := range b.Nodes {
		err := CheckClock(&b.Nodes[i], db.cfg.Resolution)
		if err == nil {
			if kept != nil {
				kept = append(kept, b.Nodes[i])
			}
			continue
		}
		if kept == nil {
			kept = make([]NodeScrape, i, len(b.Nodes))
			copy(kept, b.Nodes[:i])
		}
		db.log.Debug("Dropping node scrape outside the clock bound", "node", b.Nodes[i].Node, "err", err)
		db.m.reject(rejectClockSkew)
	}
	if kept != nil {
		b.Nodes = kept
	}
	return b
}

// NodeUsage returns the current window of the named nodes, in input order. Nodes without
// a usable window are left out.
func (db *DB) NodeUsage(nodes []string) []NodeUsage {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.idx.nodeUsage(nodes)
}

// PodUsage returns the current window of the named pods, in input order, with containers
// sorted by name. Pods without a usable window for every container are left out.
func (db *DB) PodUsage(pods []PodRef) []PodUsage {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.idx.podUsage(pods)
}

// Ready returns nil once a node or a container has a window that can be served, and
// metrics-server's "no metrics to serve" error before (its metric-storage-ready check).
func (db *DB) Ready() error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.idx.nodePoints == 0 && db.idx.containerPoints == 0 {
		return errNoMetrics
	}
	return nil
}

// Close flushes the TSDB (with a snapshot of its head, for a fast restart), closes it,
// writes the current window to <dir>/window.snapshot (windowsnap.go) and releases the lock
// on the directory. History queries in progress (Range, and PromQL over
// Queryable) end with ErrClosed within checkEvery samples, even while they iterate one
// series; Close waits until their queriers are closed before it closes the TSDB. It waits
// for a Write in progress; Write fails after Close, and the current window is still served
// from memory. Closing twice is a no-op.
func (db *DB) Close() error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	db.queries.close()
	// A rollup pass reads through a querier, so the gate has ended it; none starts now.
	db.rollupMu.Lock()
	db.rollupClosed = true
	db.rollupMu.Unlock()
	var errs []error
	if err := db.closeTiers(); err != nil {
		errs = append(errs, err)
	}
	// No Write runs until the TSDB is closed (writeMu), so this is the newest sample the
	// window snapshot is written with.
	headMaxT := db.tsdb.Head().MaxTime()
	stop := crashpoint.OnOpen(crashpoint.CloseSnapshot, db.cfg.tsdbDir(), isSnapshotTmp)
	err := db.tsdb.Close()
	stop()
	if err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", db.cfg.tsdbDir(), err))
	} else {
		db.mu.RLock()
		data := encodeWindow(db.idx, headMaxT)
		db.mu.RUnlock()
		if err := writeWindowSnapshot(db.cfg.Dir, data); err != nil {
			// Not an error of Close: the next Open rebuilds the window from the TSDB.
			db.log.Warn("Could not write the window snapshot; the next start rebuilds the current window from the TSDB", "err", err)
		}
	}
	if err := db.lock.release(); err != nil {
		errs = append(errs, fmt.Errorf("release the lock on %s: %w", db.cfg.Dir, err))
	}
	return errors.Join(errs...)
}

// Len returns how many samples Write appends for b: each value in Present per node, pod
// and container, plus each container's start time.
func (b Batch) Len() int {
	n := 0
	perSample := func(s *Sample) int { return s.Present.Len() }
	for i := range b.Nodes {
		ns := &b.Nodes[i]
		if ns.HasNode {
			n += perSample(&ns.NodeSample)
		}
		for j := range ns.Pods {
			n += perSample(&ns.Pods[j].Sample)
		}
		for j := range ns.Containers {
			c := &ns.Containers[j]
			n += perSample(&c.Sample)
			if !c.StartTime.IsZero() {
				n++
			}
		}
	}
	return n
}

// metrics are the storage's self-metrics.
type metrics struct {
	points        *prometheus.GaugeVec
	rejected      *prometheus.CounterVec
	skippedVec    *prometheus.CounterVec
	appended      prometheus.Counter
	appendErrors  *prometheus.CounterVec
	writeDuration prometheus.Histogram
	writable      prometheus.Gauge
	droppedVec    *prometheus.CounterVec
	freeBytes     prometheus.Gauge
	reserveBytes  prometheus.Gauge
	recovered     *prometheus.CounterVec

	// Pre-resolved children, so counting does not look labels up.
	rejectedBy map[string]prometheus.Counter
	skipped    map[string]prometheus.Counter
	dropped    map[string]prometheus.Counter
}

// Reasons for hindsight_storage_dropped_samples_total.
const (
	dropLowSpace     = "low_disk_space" // appends paused: free space below the reserve
	dropCommitFailed = "commit_failed"  // the round's commit failed (a WAL write error)
)

var dropReasons = []string{dropLowSpace, dropCommitFailed}

func newMetrics() *metrics {
	m := &metrics{
		points: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hindsight_storage_points",
			Help: "Number of nodes (type=node) and containers (type=container) with two points, that is with a current window.",
		}, []string{"type"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_storage_rejected_points_total",
			Help: "Points of the current window dropped or rejected by metrics-server's rules, and node scrapes outside the kubelet clock bound (reason clock_skew), by reason.",
		}, []string{"reason"}),
		skippedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_storage_skipped_samples_total",
			Help: "Samples not appended to the TSDB because it already holds a sample at or after their time, by reason.",
		}, []string{"reason"}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hindsight_storage_appended_samples_total",
			Help: "Samples appended to the TSDB and committed.",
		}),
		appendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_storage_append_errors_total",
			Help: "Samples that failed to append to the TSDB (stage=append) and failed commits (stage=commit).",
		}, []string{"stage"}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hindsight_storage_write_duration_seconds",
			Help:    "Time to store one scrape round.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		writable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hindsight_storage_writable",
			Help: "1 when the storage keeps history, 0 when it does not: the last commit to the TSDB failed, or the TSDB refused more than 1% of each of the last 3 rounds' samples for their time. The current window is still served.",
		}),
		droppedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_storage_dropped_samples_total",
			Help: "Samples of scrape rounds not stored in the TSDB, by reason: low_disk_space (appends paused while the free disk space is below the reserve), commit_failed (the round's commit failed). The current window is still served.",
		}, []string{"reason"}),
		freeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hindsight_storage_free_bytes",
			Help: "Free bytes of the TSDB's file system (available to unprivileged users) at the last check, once per round.",
		}),
		reserveBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hindsight_storage_reserve_bytes",
			Help: "Free bytes the TSDB needs to write what it must; appends pause while hindsight_storage_free_bytes is below it.",
		}),
		recovered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_storage_recovered_total",
			Help: "Damaged parts of the TSDB (part=block, wal_segment, head_chunks, chunk_snapshot) that Open moved aside into <storage-path>/damaged/ and opened without.",
		}, []string{"part"}),
		rejectedBy: make(map[string]prometheus.Counter, len(rejectReasons)),
		dropped:    make(map[string]prometheus.Counter, len(dropReasons)),
		skipped:    make(map[string]prometheus.Counter, len(skipReasons)),
	}
	m.points.WithLabelValues("node")
	m.points.WithLabelValues("container")
	for _, r := range rejectReasons {
		m.rejectedBy[r] = m.rejected.WithLabelValues(r)
	}
	for _, r := range skipReasons {
		m.skipped[r] = m.skippedVec.WithLabelValues(r)
	}
	for _, r := range dropReasons {
		m.dropped[r] = m.droppedVec.WithLabelValues(r)
	}
	m.appendErrors.WithLabelValues("append")
	m.appendErrors.WithLabelValues("commit")
	for _, p := range recoverParts {
		m.recovered.WithLabelValues(p)
	}
	m.writable.Set(1)
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.points, m.rejected, m.skippedVec, m.appended, m.appendErrors, m.writeDuration, m.writable, m.droppedVec, m.freeBytes, m.reserveBytes, m.recovered}
}

// registerAll registers cs on reg, none of them when one fails; reg may be nil.
func registerAll(reg prometheus.Registerer, cs []prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			unregisterAll(reg, cs[:i])
			return err
		}
	}
	return nil
}

func unregisterAll(reg prometheus.Registerer, cs []prometheus.Collector) {
	if reg == nil {
		return
	}
	for _, c := range cs {
		reg.Unregister(c)
	}
}

func (m *metrics) reject(reason string) { m.rejectedBy[reason].Inc() }

func (m *metrics) recover(part string) { m.recovered.WithLabelValues(part).Inc() }

// setPoints publishes the index's counts of served points; call it with the index locked.
func (m *metrics) setPoints(x *index) {
	m.points.WithLabelValues("node").Set(float64(x.nodePoints))
	m.points.WithLabelValues("container").Set(float64(x.containerPoints))
}
