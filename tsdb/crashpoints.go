package tsdb

import (
	"context"
	"log/slog"
	"strings"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/hindsight-metrics/hindsight/internal/crashpoint"
)

// Crash points (package crashpoint): compiled in only with -tags crashpoints, where
// crashpoint.Enabled is true; a normal build uses the TSDB's own appender and compactor.

// crashAppender hits the commit crash points around the TSDB's commit.
type crashAppender struct{ storage.AppenderV2 }

func (a crashAppender) Commit() error {
	crashpoint.Hit(crashpoint.CommitBefore)
	err := a.AppenderV2.Commit()
	crashpoint.Hit(crashpoint.CommitAfter)
	return err
}

// withCrashPoints returns app wrapped when crash points are compiled in.
func withCrashPoints(app storage.AppenderV2) storage.AppenderV2 {
	if !crashpoint.Enabled {
		return app
	}
	return crashAppender{app}
}

// crashCompactor is the TSDB's leveled compactor with the compaction crash points after it
// wrote a block.
type crashCompactor struct{ *promtsdb.LeveledCompactor }

func (c crashCompactor) Write(dest string, b promtsdb.BlockReader, mint, maxt int64, base *promtsdb.BlockMeta) ([]ulid.ULID, error) {
	ids, err := c.LeveledCompactor.Write(dest, b, mint, maxt, base)
	if err == nil && len(ids) > 0 {
		crashpoint.Hit(crashpoint.CompactHeadWritten)
	}
	return ids, err
}

func (c crashCompactor) Compact(dest string, dirs []string, open []*promtsdb.Block) ([]ulid.ULID, error) {
	ids, err := c.LeveledCompactor.Compact(dest, dirs, open)
	if err == nil && len(ids) > 0 {
		crashpoint.Hit(crashpoint.CompactBlocksWritten)
	}
	return ids, err
}

// addCrashPoints makes o use crashCompactor when crash points are compiled in.
func addCrashPoints(o *promtsdb.Options) {
	if !crashpoint.Enabled {
		return
	}
	o.NewCompactorFunc = func(ctx context.Context, r prometheus.Registerer, l *slog.Logger, ranges []int64, pool chunkenc.Pool, o *promtsdb.Options) (promtsdb.Compactor, error) {
		c, err := promtsdb.NewLeveledCompactorWithOptions(ctx, r, l, ranges, pool, promtsdb.LeveledCompactorOptions{
			MaxBlockChunkSegmentSize:    o.MaxBlockChunkSegmentSize,
			EnableOverlappingCompaction: o.EnableOverlappingCompaction,
			PD:                          o.PostingsDecoderFactory,
			UseUncachedIO:               o.UseUncachedIO,
			BlockExcludeFilter:          o.BlockCompactionExcludeFunc,
		})
		if err != nil {
			return nil, err
		}
		return crashCompactor{c}, nil
	}
}

// isSnapshotTmp reports whether name is the temporary directory the TSDB writes a chunk
// snapshot into (renamed when complete).
func isSnapshotTmp(name string) bool {
	return strings.HasPrefix(name, "chunk_snapshot.") && strings.HasSuffix(name, ".tmp")
}
