package tsdb

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"
)

// Recovering from damaged files.
//
// The Prometheus TSDB's own repairs lose more than they must, or refuse to open: a block
// whose index does not open fails Open, so Hindsight would not start; a corrupt WAL
// segment is truncated at the corruption and every later segment deleted, so one bad
// middle segment loses all samples written after it (up to the 2-3 hours of the head);
// a corrupt chunks_head file, and every later one, is deleted and a chunk snapshot that
// does not load is left in place. Before it opens the TSDB, Open checks each of these
// parts the way the TSDB will read it and moves a damaged one into
// <dir>/damaged/<time>/ (same relative path), where it is kept, never deleted, for
// inspection; it logs a warning naming it and counts it in
// hindsight_storage_recovered_total{part}. What is lost is then:
//
//   - a block: its samples (its time range, at most a compacted block's span);
//   - a WAL segment other than the last: the records from the corruption to the end of
//     that segment (at most one segment, 128 MiB), and later samples of the series first
//     seen there. The records before the corruption are written back as the segment, and
//     the later segments are kept and replayed. The last segment, where a crash tears a
//     record, is left to the TSDB's repair, which truncates it at the damage;
//   - chunks_head files: nothing, since the WAL still holds the head's samples: the
//     damaged file and the later ones are moved aside with the chunk snapshot (which
//     would otherwise make the TSDB skip the WAL that the moved chunks came from), and
//     the WAL is replayed from its start;
//   - the chunk snapshot: nothing; the WAL is replayed from its start.
//
// The checks read what the TSDB reads on Open anyway (block index headers, the WAL from the
// replay's start, chunk headers and checksums, the snapshot), once more.

// damagedSubdir is where Open moves damaged parts, under Config.Dir.
const damagedSubdir = "damaged"

// Parts, the values of hindsight_storage_recovered_total's part label.
const (
	partBlock         = "block"
	partWALSegment    = "wal_segment"
	partHeadChunks    = "head_chunks"
	partChunkSnapshot = "chunk_snapshot"
)

var recoverParts = []string{partBlock, partWALSegment, partHeadChunks, partChunkSnapshot}

// recovery moves damaged parts of one TSDB directory aside.
type recovery struct {
	tsdbDir string
	aside   string // <dir>/damaged/<time>
	log     *slog.Logger
	count   func(part string)
	compr   compression.Type
}

// recoverDamaged checks cfg's TSDB directory before it is opened and moves damaged parts
// aside. It returns an error only when it cannot read the directory or move a part; a
// damaged part is not an error.
func recoverDamaged(cfg Config, now time.Time, log *slog.Logger, count func(part string)) error {
	r := &recovery{
		tsdbDir: cfg.tsdbDir(),
		aside:   filepath.Join(cfg.Dir, damagedSubdir, now.UTC().Format("20060102T150405.000Z")),
		log:     log,
		count:   count,
		compr:   cfg.promOptions().WALCompression,
	}
	if _, err := os.Stat(r.tsdbDir); errors.Is(err, os.ErrNotExist) {
		return nil // a new store
	}
	return errors.Join(r.blocks(), r.headChunks(), r.snapshot(), r.wal())
}

// moveAside moves path (inside tsdbDir) to the same relative path under r.aside.
func (r *recovery) moveAside(part, path string, cause error) error {
	rel, err := filepath.Rel(r.tsdbDir, path)
	if err != nil {
		return fmt.Errorf("move %s aside: %w", path, err)
	}
	dst := filepath.Join(r.aside, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o777); err != nil {
		return fmt.Errorf("move %s aside: %w", path, err)
	}
	if err := os.Rename(path, dst); err != nil {
		return fmt.Errorf("move %s aside: %w", path, err)
	}
	if err := errors.Join(syncDir(filepath.Dir(path)), syncDir(filepath.Dir(dst))); err != nil {
		return fmt.Errorf("move %s aside: %w", path, err)
	}
	if part != "" {
		r.count(part)
		r.log.Warn("Storage part is damaged; moved it aside and opening without it", "part", part, "path", path, "movedTo", dst, "err", cause)
	}
	return nil
}

// blocks moves aside every block that the TSDB cannot open (its meta.json or index is
// unreadable), which would make it fail Open.
func (r *recovery) blocks() error {
	entries, err := os.ReadDir(r.tsdbDir)
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if _, err := ulid.ParseStrict(e.Name()); err != nil || !e.IsDir() {
			continue
		}
		dir := filepath.Join(r.tsdbDir, e.Name())
		b, err := promtsdb.OpenBlock(slog.New(slog.DiscardHandler), dir, nil, nil)
		if err == nil {
			err = b.Close()
			if err == nil {
				continue
			}
		}
		errs = append(errs, r.moveAside(partBlock, dir, err))
	}
	return errors.Join(errs...)
}

// headChunks moves aside the first chunks_head file that does not read back and every
// later one, as the TSDB would delete them, and then the chunk snapshot, without which the
// TSDB replays the WAL from its start and so recovers the samples of the moved chunks.
func (r *recovery) headChunks() error {
	dir := filepath.Join(r.tsdbDir, "chunks_head")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	cerr := checkHeadChunks(dir)
	if cerr == nil {
		return nil
	}
	from := 0 // every file, unless the error names the first bad one
	var ce *chunks.CorruptionErr
	if errors.As(cerr, &ce) {
		from = ce.FileIndex
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		i, err := strconv.Atoi(e.Name())
		if err != nil || i < from {
			continue
		}
		errs = append(errs, r.moveAside(partHeadChunks, filepath.Join(dir, e.Name()), cerr))
	}
	if snap, _, _, err := promtsdb.LastChunkSnapshot(r.tsdbDir); err == nil {
		r.log.Warn("Moved the chunk snapshot aside too, so that the WAL is replayed from its start", "path", snap)
		errs = append(errs, r.moveAside("", snap, nil))
	}
	return errors.Join(errs...)
}

// checkHeadChunks reads every chunk of the chunks_head directory dir, as the TSDB's Open
// does, and returns the first error.
func checkHeadChunks(dir string) error {
	cdm, err := chunks.NewChunkDiskMapper(nil, dir, chunkenc.NewPool(), chunks.DefaultWriteBufferSize, 0)
	if err != nil {
		return err
	}
	err = cdm.IterateAllChunks(func(chunks.HeadSeriesRef, chunks.ChunkDiskMapperRef, int64, int64, uint16, chunkenc.Encoding, bool) error {
		return nil
	})
	return errors.Join(err, cdm.Close())
}

// snapshot moves aside the chunk snapshot that the TSDB would load when it does not read
// back; the TSDB then replays the WAL from its start.
func (r *recovery) snapshot() error {
	snap, _, _, err := promtsdb.LastChunkSnapshot(r.tsdbDir)
	if err != nil {
		return nil // none (or an unexpected name, which the TSDB ignores too)
	}
	sr, err := wlog.NewSegmentsReader(snap)
	if err != nil {
		return r.moveAside(partChunkSnapshot, snap, err)
	}
	rerr := readRecords(wlog.NewReader(sr))
	if err := sr.Close(); err != nil && rerr == nil {
		rerr = err
	}
	if rerr == nil {
		return nil
	}
	return r.moveAside(partChunkSnapshot, snap, rerr)
}

// readRecords reads every record of rd and returns the reader's error.
func readRecords(rd *wlog.Reader) error {
	for rd.Next() {
	}
	return rd.Err()
}

// wal checks the WAL segments that the TSDB will replay, but the last, and rewrites a
// damaged one with its records before the damage, keeping the later segments.
func (r *recovery) wal() error {
	dir := filepath.Join(r.tsdbDir, "wal")
	first, last, err := wlog.Segments(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("list WAL segments: %w", err)
	}
	if first < 0 {
		return nil // no segment
	}
	from := first
	if _, cp, err := wlog.LastCheckpoint(dir); err == nil {
		from = max(from, cp+1)
	}
	// The snapshot, written on Close, holds its segment up to its end: the replay reads
	// the segments after it. (Rewriting that segment would move the offset it names.)
	if _, idx, _, err := promtsdb.LastChunkSnapshot(r.tsdbDir); err == nil && idx <= last {
		from = max(from, idx+1)
	}
	var errs []error
	for i := from; i < last; i++ {
		if err := r.segment(dir, i); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// segment checks WAL segment i of dir and, when it is damaged, moves it aside and writes
// its records before the damage in its place.
func (r *recovery) segment(dir string, i int) error {
	name := wlog.SegmentName(dir, i)
	if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
		return nil // a gap, which the TSDB reports itself
	}
	// A first pass keeps nothing; a damaged segment is read again for its records.
	_, cerr, err := readSegment(name, i, false)
	if err != nil || cerr == nil {
		return err
	}
	recs, _, err := readSegment(name, i, true)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".salvage-"+filepath.Base(name))
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("salvage %s: %w", name, err)
	}
	w, err := wlog.NewSize(slog.New(slog.DiscardHandler), nil, tmp, wlog.DefaultSegmentSize, r.compr)
	if err != nil {
		return fmt.Errorf("salvage %s: %w", name, err)
	}
	err = w.Log(recs...)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(fmt.Errorf("salvage %s: %w", name, err), os.RemoveAll(tmp))
	}
	if err := r.moveAside(partWALSegment, name, fmt.Errorf("%w (kept the %d records before it)", cerr, len(recs))); err != nil {
		return errors.Join(err, os.RemoveAll(tmp))
	}
	if err := os.Rename(wlog.SegmentName(tmp, 0), name); err != nil {
		return fmt.Errorf("salvage %s: %w", name, err)
	}
	return errors.Join(syncDir(dir), os.RemoveAll(tmp))
}

// readSegment returns the records of one WAL segment up to its first damage when keep is
// set (at most a segment, 128 MiB), and that damage (nil when the segment reads to its end).
func readSegment(name string, i int, keep bool) (recs [][]byte, damage, err error) {
	seg, err := wlog.OpenReadSegment(name)
	if err != nil {
		return nil, nil, fmt.Errorf("open WAL segment %s: %w", name, err)
	}
	defer seg.Close()
	rd := wlog.NewReader(wlog.NewSegmentBufReader(seg))
	for rd.Next() {
		if keep {
			recs = append(recs, append([]byte(nil), rd.Record()...))
		}
	}
	if err := rd.Err(); err != nil {
		return recs, fmt.Errorf("WAL segment %d: %w", i, err), nil
	}
	return recs, nil, nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return errors.Join(d.Sync(), d.Close())
}
