package tsdb

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	promindex "github.com/prometheus/prometheus/tsdb/index"
	"github.com/prometheus/prometheus/tsdb/tombstones"
)

// Writing a block without a head.
//
// A rollup pass knows every series of its block in label order and every sample of each at
// once, so it writes the block's files directly, streaming: a Prometheus head (the
// BlockWriter's) would hold every series of the block in memory first, about 1 KiB each.
// The layout is the TSDB's own (chunks/, index, meta.json, tombstones), written under
// <ulid>.tmp-for-creation and renamed into place after an fsync, as the TSDB's compactor
// does, so a crash leaves either no block or a whole one, and the TSDB's Open removes what
// a crash left of a temporary directory.

const (
	// blockSuffixTmp is the TSDB's suffix for a block being written.
	blockSuffixTmp = ".tmp-for-creation"
	// blockSegmentSize caps a chunk segment file, which the chunk writer preallocates
	// (fallocate): far below the TSDB's 512 MiB, so that a rollup never takes the space
	// the raw TSDB's reserve keeps (diskspace.go). A tier block's chunks are small.
	blockSegmentSize = 16 << 20
	// maxChunkSamples is the most samples a chunk holds, as the TSDB cuts them.
	maxChunkSamples = 120
)

// floatSample is one float sample of a series being written.
type floatSample struct {
	t int64 // ms
	f float64
}

// blockWriter writes one block of series added in label order.
type blockWriter struct {
	log      *slog.Logger
	dir, tmp string
	meta     promtsdb.BlockMeta
	chunkw   *chunks.Writer
	indexw   *promindex.Writer
	ref      storage.SeriesRef
}

// newBlockWriter starts a block of the samples in [mint, maxt) under parent. symbols must
// be sorted and hold every label name and value of the series that will be added (more is
// allowed).
func newBlockWriter(ctx context.Context, log *slog.Logger, parent string, mint, maxt int64, symbols []string) (_ *blockWriter, err error) {
	id, err := ulid.New(ulid.Now(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("block id: %w", err)
	}
	w := &blockWriter{log: log, dir: filepath.Join(parent, id.String())}
	w.tmp = w.dir + blockSuffixTmp
	w.meta = promtsdb.BlockMeta{ULID: id, MinTime: mint, MaxTime: maxt, Version: 1}
	w.meta.Compaction.Level = 1
	w.meta.Compaction.Sources = []ulid.ULID{id}
	defer func() {
		if err != nil {
			w.abort()
		}
	}()
	if err := os.MkdirAll(w.tmp, 0o777); err != nil {
		return nil, fmt.Errorf("create block directory: %w", err)
	}
	if w.chunkw, err = chunks.NewWriter(filepath.Join(w.tmp, "chunks"), chunks.WithSegmentSize(blockSegmentSize)); err != nil {
		return nil, fmt.Errorf("open chunk writer: %w", err)
	}
	if w.indexw, err = promindex.NewWriter(ctx, filepath.Join(w.tmp, "index")); err != nil {
		return nil, fmt.Errorf("open index writer: %w", err)
	}
	for _, s := range symbols {
		if err := w.indexw.AddSymbol(s); err != nil {
			return nil, fmt.Errorf("index symbols: %w", err)
		}
	}
	return w, nil
}

// add writes one series: lset must sort after the previous series', and samples must be in
// time order within [mint, maxt). A series without samples is left out.
func (w *blockWriter) add(lset labels.Labels, samples []floatSample) error {
	if len(samples) == 0 {
		return nil
	}
	metas := make([]chunks.Meta, 0, (len(samples)+maxChunkSamples-1)/maxChunkSamples)
	for len(samples) > 0 {
		n := min(len(samples), maxChunkSamples)
		c := chunkenc.NewXORChunk()
		app, err := c.Appender()
		if err != nil {
			return fmt.Errorf("chunk appender: %w", err)
		}
		for _, s := range samples[:n] {
			if t := s.t; t < w.meta.MinTime || t >= w.meta.MaxTime {
				return fmt.Errorf("series %s: sample at %d outside the block [%d, %d)", lset, t, w.meta.MinTime, w.meta.MaxTime)
			}
			app.Append(0, s.t, s.f)
		}
		metas = append(metas, chunks.Meta{Chunk: c, MinTime: samples[0].t, MaxTime: samples[n-1].t})
		samples = samples[n:]
	}
	if err := w.chunkw.WriteChunks(metas...); err != nil {
		return fmt.Errorf("write chunks: %w", err)
	}
	if err := w.indexw.AddSeries(w.ref, lset, metas...); err != nil {
		return fmt.Errorf("index series: %w", err)
	}
	w.ref++
	w.meta.Stats.NumSeries++
	w.meta.Stats.NumChunks += uint64(len(metas))
	for _, m := range metas {
		n := uint64(m.Chunk.NumSamples())
		w.meta.Stats.NumSamples += n
		w.meta.Stats.NumFloatSamples += n
	}
	return nil
}

// commit finishes the block and moves it into place. A block without series is not
// written: commit returns false.
func (w *blockWriter) commit() (_ promtsdb.BlockMeta, written bool, err error) {
	defer func() {
		if err != nil || !written {
			w.abort()
		}
	}()
	errs := errors.Join(w.chunkw.Close(), w.indexw.Close())
	w.chunkw, w.indexw = nil, nil
	if errs != nil {
		return w.meta, false, fmt.Errorf("close block files: %w", errs)
	}
	if w.meta.Stats.NumSeries == 0 {
		return w.meta, false, nil
	}
	if err := writeFileSync(filepath.Join(w.tmp, "meta.json"), w.meta); err != nil {
		return w.meta, false, err
	}
	if _, err := tombstones.WriteFile(w.log, w.tmp, tombstones.NewMemTombstones()); err != nil {
		return w.meta, false, fmt.Errorf("write tombstones: %w", err)
	}
	df, err := fileutil.OpenDir(w.tmp)
	if err != nil {
		return w.meta, false, fmt.Errorf("open block directory: %w", err)
	}
	err = errors.Join(df.Sync(), df.Close())
	if err != nil {
		return w.meta, false, fmt.Errorf("sync block directory: %w", err)
	}
	if err := fileutil.Replace(w.tmp, w.dir); err != nil {
		return w.meta, false, fmt.Errorf("move block into place: %w", err)
	}
	return w.meta, true, nil
}

// abort removes what was written.
func (w *blockWriter) abort() {
	if w.chunkw != nil {
		_ = w.chunkw.Close()
	}
	if w.indexw != nil {
		_ = w.indexw.Close()
	}
	w.chunkw, w.indexw = nil, nil
	if err := os.RemoveAll(w.tmp); err != nil {
		w.log.Warn("Could not remove a partly written block", "dir", w.tmp, "err", err)
	}
}

// writeFileSync writes v as JSON to path and syncs it.
func writeFileSync(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", filepath.Base(path), err)
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
