package tsdb

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// The downsampled tiers on disk, and the rollup job that fills them.
//
// Each tier is a Prometheus TSDB of its own under <dir>/tiers/<name>/, with its own
// retention, holding only blocks: nothing is appended to its head (its WAL is off). A
// rollup pass (DB.Rollup) follows the raw TSDB from a watermark: the start of the next
// window it will write, persisted in <dir>/tiers/<name>.watermark after each block. It
// writes the windows of one batch (tierDef.batch) as one block (blockwrite.go), in order,
// once their raw samples are final: no sample of a window can still be stored once the
// wall clock is past its end by one gap (the interval that ends after it), the kubelet clock
// bound (Write refuses samples further from their scrape time) and one resolution (a round's
// scrape time precedes its write). The block is renamed into place before the watermark
// moves, and the next pass starts from the later of the watermark and the newest block's end,
// so a crash between the two neither loses nor doubles a window. A pass after a restart or an
// outage catches up batch by batch.
//
// The tier's TSDB picks a new block up at its next reload (tierReloadInterval), compacts
// blocks into larger ones and deletes those past its retention, as it does for the raw
// TSDB. Readers see a tier through its loaded blocks (TierRange), so the part of a range a
// tier does not cover yet is read from the raw series.

// tierReloadInterval is how often a tier's TSDB looks for new blocks (and applies its
// retention): a written block is queryable within it.
const tierReloadInterval = 5 * time.Second

// tiersSubdir is the tiers' directory under Config.Dir.
const tiersSubdir = "tiers"

// tierStore is one tier's TSDB and rollup state.
type tierStore struct {
	tier Tier
	dir  string
	db   *promtsdb.DB
	// next is the start of the next window to write (ms); 0 before the first pass found
	// raw samples. Guarded by DB.rollupMu.
	next int64
}

// watermarkFile is where the tier's watermark is persisted.
func (s *tierStore) watermarkFile() string { return s.dir + ".watermark" }

type watermark struct {
	// Next is the start of the next window to write, in Unix milliseconds.
	Next int64 `json:"next"`
}

// tierDir returns tier t's TSDB directory under a completed config's Dir.
func (c Config) tierDir(t Tier) string { return filepath.Join(c.Dir, tiersSubdir, t.String()) }

// tierOptions returns the TSDB options of tier t.
func (c Config) tierOptions(t Tier) *promtsdb.Options {
	d := tierDefs[t]
	o := promtsdb.DefaultOptions()
	o.RetentionDuration = c.TierRetention[t].Milliseconds()
	_, sizes := c.sizeShares()
	o.MaxBytes = sizes[t]
	o.MinBlockDuration = d.batch.Milliseconds()
	o.MaxBlockDuration = max(d.batch, min(maxBlockDuration, c.TierRetention[t]/10)).Milliseconds()
	o.WALSegmentSize = -1 // nothing is appended: blocks only
	o.MaxBlockChunkSegmentSize = blockSegmentSize
	o.BlockReloadInterval = tierReloadInterval
	return o
}

// openTiers opens the tiers that the config keeps. A tier that fails to open is logged
// and left out: the raw series still answer.
func (db *DB) openTiers() {
	for t := range NumTiers {
		if db.cfg.TierRetention[t] < 0 {
			continue
		}
		s, err := openTier(db.cfg, t, db.log, db.tierCompactionsOff.Load)
		if err != nil {
			db.log.Error("Could not open a downsampled tier; ranges it would serve are read from the raw samples", "tier", t, "err", err)
			db.rm.errors.WithLabelValues(t.String()).Inc()
			continue
		}
		db.tiers[t] = s
		db.rm.watermark.WithLabelValues(t.String()).Set(float64(s.next) / 1e3)
	}
}

// openTier opens tier t's TSDB; its compactions skip every block while paused returns true
// (a short disk: checkSpace).
func openTier(cfg Config, t Tier, log *slog.Logger, paused func() bool) (*tierStore, error) {
	s := &tierStore{tier: t, dir: cfg.tierDir(t)}
	if err := os.MkdirAll(s.dir, 0o777); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.dir, err)
	}
	// The tier's TSDB logs what a head compaction (refresh) does at Info: keep its warnings.
	tlog := slog.New(warnOnly{log.Handler()}).With("tier", t.String())
	opts := cfg.tierOptions(t)
	// Read by the TSDB's own loop when it plans a compaction: an atomic, unlike
	// DisableCompactions, whose flag that loop also reads without its lock.
	opts.BlockCompactionExcludeFunc = func(*promtsdb.BlockMeta) bool { return paused() }
	pdb, err := promtsdb.Open(s.dir, tlog, nil, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.dir, err)
	}
	s.db = pdb
	data, err := os.ReadFile(s.watermarkFile())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		_ = pdb.Close()
		return nil, fmt.Errorf("read watermark: %w", err)
	default:
		var w watermark
		if err := json.Unmarshal(data, &w); err != nil || w.Next < 0 {
			// The blocks themselves still say how far the tier got.
			log.Warn("Ignoring an unreadable rollup watermark", "file", s.watermarkFile(), "err", err)
		} else {
			s.next = w.Next
		}
	}
	// A block renamed into place before a crash kept the watermark from moving.
	for _, b := range pdb.Blocks() {
		s.next = max(s.next, b.Meta().MaxTime)
	}
	return s, nil
}

// saveWatermark persists next.
func (s *tierStore) saveWatermark(next int64) error {
	tmp := s.watermarkFile() + ".tmp"
	if err := writeFileSync(tmp, watermark{Next: next}); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.watermarkFile()); err != nil {
		return fmt.Errorf("rename watermark: %w", err)
	}
	s.next = next
	return nil
}

// refresh makes the tier's TSDB load the blocks written since its last reload, rather than
// at its next (tierReloadInterval). Its one exported way to reload is a head compaction; the
// head is empty (nothing is appended to a tier), so that writes no block.
func (s *tierStore) refresh() error {
	return s.db.CompactHead(promtsdb.NewRangeHead(s.db.Head(), 0, -1))
}

// closeTiers closes the tiers' TSDBs; call it with no rollup pass running.
func (db *DB) closeTiers() error {
	var errs []error
	for t, s := range db.tiers {
		if s == nil {
			continue
		}
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close tier %s: %w", Tier(t), err))
		}
	}
	return errors.Join(errs...)
}

// rollupDelay is how long after a window's end its raw samples are final (see above).
func rollupDelay(resolution time.Duration) time.Duration {
	return resolution + ClockSkewBound(resolution) + gapBound(resolution)
}

// RunRollups runs a rollup pass every interval until ctx is done, each writing at most one
// batch per tier, so that catching up on a long history (a first start beside 30 days of
// raw samples, or an outage) takes a share of a core for a while instead of a whole core at
// once; a failed pass is logged and retried at the next.
func (db *DB) RunRollups(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := "" // the last failure logged: a full disk fails every pass, logged once
	for {
		switch err := db.rollup(ctx, 1); {
		case ctx.Err() != nil:
		case err != nil && err.Error() != failing:
			failing = err.Error()
			db.log.Warn("Rollup pass failed; retrying every pass", "interval", interval, "err", err)
		case err == nil && failing != "":
			failing = ""
			db.log.Info("Rollup passes succeed again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Rollup writes every batch of windows whose raw samples are final and that no tier holds
// yet, tier by tier, oldest first. It returns at ctx's end, at Close, or at the first error,
// which it also reports through RollupHealth; the next pass starts where this one stopped.
func (db *DB) Rollup(ctx context.Context) error { return db.rollup(ctx, 0) }

// rollup is a pass that writes at most limit batches per tier (0: every one that is final).
func (db *DB) rollup(ctx context.Context, limit int) error {
	db.rollupMu.Lock()
	defer db.rollupMu.Unlock()
	if db.rollupClosed {
		return ErrClosed
	}
	horizon := db.now().Add(-rollupDelay(db.cfg.Resolution)).UnixMilli()
	var errs []error
	for _, s := range db.tiers {
		if s == nil {
			continue
		}
		if err := db.rollupTier(ctx, s, horizon, limit); err != nil {
			db.rm.errors.WithLabelValues(s.tier.String()).Inc()
			errs = append(errs, fmt.Errorf("tier %s: %w", s.tier, err))
		}
	}
	err := errors.Join(errs...)
	// Behind: a tier whose watermark trails what is final by more than a batch (the
	// current one is not final yet) and a pass, such as one catching up on a long history.
	var behind []error
	for _, s := range db.tiers {
		if s == nil || s.next == 0 {
			continue // nothing stored yet
		}
		lag := time.Duration(horizon-s.next) * time.Millisecond
		db.rm.lag.WithLabelValues(s.tier.String()).Set(max(lag, 0).Seconds())
		if d := tierDefs[s.tier]; lag > d.batch+gapBound(db.cfg.Resolution)+2*time.Minute {
			behind = append(behind, fmt.Errorf("tier %s holds every window up to %s, %s behind what is final (catching up one batch a pass)",
				s.tier, time.UnixMilli(s.next).UTC().Format(time.RFC3339), lag.Round(time.Minute)))
		}
	}
	health := errors.Join(err, errors.Join(behind...))
	db.rollupErr.Store(&health)
	return err
}

// rollupTier writes the tier's batches that end before horizon (ms), at most limit of them
// when limit > 0.
func (db *DB) rollupTier(ctx context.Context, s *tierStore, horizon int64, limit int) error {
	d := tierDefs[s.tier]
	batch, gap := d.batch.Milliseconds(), gapBound(db.cfg.Resolution).Milliseconds()
	defer func() {
		db.rm.watermark.WithLabelValues(s.tier.String()).Set(float64(s.next) / 1e3)
	}()
	oldest, ok := db.oldestRaw()
	if !ok {
		return nil
	}
	// Windows before the oldest raw sample (retention deleted them) have nothing to write,
	// nor do those after the newest (an outage): no sample can still come before the
	// horizon, so the watermark moves past them at once.
	from := max(s.next, oldest/batch*batch)
	if last := (horizon - gap) / batch * batch; from < last && db.newestRaw()+gap < from {
		if err := s.saveWatermark(last); err != nil {
			return err
		}
		from = last
	}
	written := 0 // batches that held windows: empty ones (an outage) cost next to nothing
	for from+batch+gap <= horizon && (limit <= 0 || written < limit) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := db.tierSpace(); err != nil {
			return err
		}
		start := time.Now()
		meta, ok, err := db.rollupBatch(ctx, s, from, from+batch)
		if err != nil {
			return fmt.Errorf("windows from %s: %w", time.UnixMilli(from).UTC().Format(time.RFC3339), err)
		}
		if err := s.saveWatermark(from + batch); err != nil {
			return err
		}
		db.rm.duration.WithLabelValues(s.tier.String()).Observe(time.Since(start).Seconds())
		if ok {
			written++
			if err := s.refresh(); err != nil {
				return fmt.Errorf("load the new block: %w", err)
			}
			db.rm.blocks.WithLabelValues(s.tier.String()).Inc()
			db.rm.samples.WithLabelValues(s.tier.String()).Add(float64(meta.Stats.NumSamples))
		}
		from += batch
	}
	return nil
}

// oldestRaw returns the time of the oldest raw sample the TSDB may hold.
func (db *DB) oldestRaw() (int64, bool) {
	if blocks := db.tsdb.Blocks(); len(blocks) > 0 {
		return blocks[0].Meta().MinTime, true
	}
	h := db.tsdb.Head()
	if h.NumSeries() == 0 || h.MinTime() == math.MaxInt64 {
		return 0, false
	}
	return h.MinTime(), true
}

// newestRaw returns the time of the newest raw sample the TSDB may hold.
func (db *DB) newestRaw() int64 {
	newest := db.tsdb.Head().MaxTime() // math.MinInt64 when the head is empty
	if blocks := db.tsdb.Blocks(); len(blocks) > 0 {
		newest = max(newest, blocks[len(blocks)-1].Meta().MaxTime-1)
	}
	return newest
}

// errTierSpace is the rollup's error while the disk has no room for a tier block above what
// the raw TSDB needs.
var errTierSpace = errors.New("no disk space for a rollup block above the raw TSDB's reserve and compaction")

// tierSpace checks that a rollup block fits above the raw TSDB's reserve and its largest
// compaction (diskspace.go), so that a rollup never takes the space the raw TSDB needs.
func (db *DB) tierSpace() error {
	free, err := db.freeBytes(db.cfg.tsdbDir())
	if err != nil {
		return nil // as for appends: an unreadable file system never pauses
	}
	series := max(db.cfg.ExpectedSeries, int(db.tsdb.Head().NumSeries()))
	// The block itself: one chunk segment file preallocated, and far less than 256 bytes
	// per raw series (a few rollup series of at most 24 windows each, and their index).
	need := diskReserve(series) + db.compactionSpace() + blockSegmentSize + uint64(series)*256
	if free < need {
		return fmt.Errorf("%w: %d bytes free, %d needed", errTierSpace, free, need)
	}
	return nil
}

// rollupBatch computes the windows starting in [from, to) of tier s from the raw series and
// writes them as one block.
func (db *DB) rollupBatch(ctx context.Context, s *tierStore, from, to int64) (promtsdb.BlockMeta, bool, error) {
	r := newRoller(tierDefs[s.tier].res, from, to, db.cfg.Resolution)
	mint, maxt := r.readRange()
	q, err := db.querier(mint, maxt)
	if err != nil {
		return promtsdb.BlockMeta{}, false, err
	}
	defer q.Close()

	type output struct {
		name string
		obj  Object
		f    RollupField
	}
	var outs []output
	for o := ObjectNode; o < numObjects; o++ {
		for f := range NumRollupFields {
			if SeriesName(o, f.Resource()) != "" {
				outs = append(outs, output{RollupSeriesName(o, s.tier, f), o, f})
			}
		}
	}
	slices.SortFunc(outs, func(a, b output) int { return cmp.Compare(a.name, b.name) })

	symbols, err := rollupSymbols(ctx, q, outs, func(o output) string { return o.name })
	if err != nil {
		return promtsdb.BlockMeta{}, false, err
	}
	w, err := newBlockWriter(ctx, db.log, s.dir, from, to, symbols)
	if err != nil {
		return promtsdb.BlockMeta{}, false, err
	}
	var (
		it      chunkenc.Iterator
		samples []floatSample
		b       = labels.NewBuilder(labels.EmptyLabels())
	)
	for _, out := range outs {
		raw := SeriesName(out.obj, out.f.Resource())
		set := q.Select(ctx, true, &storage.SelectHints{Start: mint, End: maxt},
			labels.MustNewMatcher(labels.MatchEqual, metricNameLabel, raw))
		for set.Next() {
			series := set.At()
			it = series.Iterator(it)
			r.run(out.f.Resource().Kind() == KindCounter, func() (int64, float64, bool) {
				for {
					switch it.Next() {
					case chunkenc.ValNone:
						return 0, 0, false
					case chunkenc.ValFloat:
						t, v := it.At()
						return t, v, true
					}
				}
			})
			if err := it.Err(); err != nil {
				w.abort()
				return promtsdb.BlockMeta{}, false, fmt.Errorf("read %s: %w", series.Labels(), err)
			}
			samples = samples[:0]
			for i := range r.windows {
				if r.windows[i].has(out.f) {
					samples = append(samples, floatSample{t: r.stamp(i), f: r.windows[i].value(out.f)})
				}
			}
			b.Reset(series.Labels())
			b.Set(metricNameLabel, out.name)
			if err := w.add(b.Labels(), samples); err != nil {
				w.abort()
				return promtsdb.BlockMeta{}, false, err
			}
		}
		if err := set.Err(); err != nil {
			w.abort()
			return promtsdb.BlockMeta{}, false, fmt.Errorf("select %s: %w", raw, err)
		}
	}
	return w.commit()
}

// rollupSymbols returns the sorted symbols of a rollup block: every label name and value of
// the raw series q reads, and the output metric names.
func rollupSymbols[T any](ctx context.Context, q storage.Querier, outs []T, name func(T) string) ([]string, error) {
	set := map[string]struct{}{}
	names, _, err := q.LabelNames(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("label names: %w", err)
	}
	for _, n := range names {
		set[n] = struct{}{}
		if n == metricNameLabel {
			continue
		}
		values, _, err := q.LabelValues(ctx, n, nil)
		if err != nil {
			return nil, fmt.Errorf("label values of %s: %w", n, err)
		}
		for _, v := range values {
			set[v] = struct{}{}
		}
	}
	set[metricNameLabel] = struct{}{}
	for _, o := range outs {
		set[name(o)] = struct{}{}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// RollupHealth returns the last rollup pass's error, and which tiers were behind after it
// (more than a batch and a pass short of what is final); nil when none ran.
func (db *DB) RollupHealth() error {
	if p := db.rollupErr.Load(); p != nil {
		return *p
	}
	return nil
}

// TierCoverage returns the span of windows tier t serves to queries now: the starts of its
// loaded blocks' oldest and newest windows, ms, [mint, maxt); ok is false when the tier is
// off or holds no block.
func (db *DB) TierCoverage(t Tier) (mint, maxt int64, ok bool) {
	if t >= NumTiers || db.tiers[t] == nil {
		return 0, 0, false
	}
	blocks := db.tiers[t].db.Blocks()
	if len(blocks) == 0 {
		return 0, 0, false
	}
	return blocks[0].Meta().MinTime, blocks[len(blocks)-1].Meta().MaxTime, true
}

// rollupMetrics are the rollup job's self-metrics.
type rollupMetrics struct {
	watermark *prometheus.GaugeVec
	lag       *prometheus.GaugeVec
	blocks    *prometheus.CounterVec
	samples   *prometheus.CounterVec
	errors    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newRollupMetrics() *rollupMetrics {
	m := &rollupMetrics{
		watermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hindsight_rollup_watermark_seconds",
			Help: "Start of the next window the rollup job writes, per tier, in Unix seconds (0 before the first): the tier holds every window before it. Its lag is time() minus it.",
		}, []string{"tier"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hindsight_rollup_lag_seconds",
			Help: "How far each tier's watermark trails the newest final window at the last rollup pass (once a minute): up to a batch (2h for 5m, 24h for 1h) when up to date.",
		}, []string{"tier"}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_rollup_blocks_written_total",
			Help: "Blocks of windows the rollup job wrote, per tier.",
		}, []string{"tier"}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_rollup_samples_written_total",
			Help: "Rollup samples written, per tier.",
		}, []string{"tier"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_rollup_errors_total",
			Help: "Rollup passes that failed (including for lack of disk space), per tier; the next pass starts where the failed one stopped.",
		}, []string{"tier"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hindsight_rollup_batch_duration_seconds",
			Help:    "Time to compute and write one batch of windows (one block), per tier.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 8),
		}, []string{"tier"}),
	}
	for t := range NumTiers {
		for _, v := range []*prometheus.CounterVec{m.blocks, m.samples, m.errors} {
			v.WithLabelValues(t.String())
		}
	}
	return m
}

func (m *rollupMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.watermark, m.lag, m.blocks, m.samples, m.errors, m.duration}
}

// rollupState is the DB's part of the rollups; embedded in DB.
type rollupState struct {
	tiers [NumTiers]*tierStore
	rm    *rollupMetrics
	// rollupMu serializes passes and Close; rollupClosed is set by Close.
	rollupMu     sync.Mutex
	rollupClosed bool
	rollupErr    atomic.Pointer[error]
	// tierCompactionsOff pauses the tiers' compactions with the raw TSDB's (checkSpace).
	tierCompactionsOff atomic.Bool
}

// warnOnly passes on warnings and errors only.
type warnOnly struct{ slog.Handler }

func (h warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

func (h warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{h.Handler.WithAttrs(as)} }

func (h warnOnly) WithGroup(name string) slog.Handler { return warnOnly{h.Handler.WithGroup(name)} }
