package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/util/compression"

	"k8s.io/apimachinery/pkg/types"

	"github.com/hindsight-metrics/hindsight/bench/fleet"
	"github.com/hindsight-metrics/hindsight/scraper"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

// backfill writes Backfill of the fleet's past, up to now, into Hindsight's store through
// Hindsight's own write path (scraper.Decode of each node's body, tsdb.DB.Write of each
// round), as fast as it goes: that rate is the write path's ingest headroom. Then it
// compacts what it wrote into one block, as a Hindsight that has run for a few hours has,
// and measures the block's bytes per sample.
func (r *run) backfill(ctx context.Context) error {
	if r.sc.Backfill <= 0 {
		return nil
	}
	uids, err := fleet.UIDs(ctx, r.client)
	if err != nil {
		return err
	}
	st, err := fill(ctx, r.storageDir(), r.sc.Spec, uids, r.sc.Resolution, time.Now().Add(-r.sc.Backfill), time.Now(), r.logf)
	if err != nil {
		return err
	}
	r.res.BackfillSamples, r.res.BackfillTime, r.res.BackfillWrite = st.samples, st.total, st.write
	r.logf("backfill: %d samples in %s (%.2f M/s; DB.Write alone %.2f M/s)", st.samples, st.total.Round(100*time.Millisecond),
		float64(st.samples)/st.total.Seconds()/1e6, float64(st.samples)/st.write.Seconds()/1e6)
	if r.res.BackfillDirBytes, err = fileutil.DirSize(filepath.Join(r.storageDir(), "tsdb")); err != nil {
		return err
	}
	// As the TSDB compacts a head that spans 1.5 block ranges: the older part into a block,
	// the newest hour (or half of a shorter backfill) stays in the head.
	keep := min(time.Hour, r.sc.Backfill/2)
	r.res.BlockKeep = keep
	if r.res.BlockBytes, r.res.BlockSamples, err = compactStore(r.storageDir(), keep); err != nil {
		return err
	}
	r.logf("compacted all but the newest %s: %d samples in %s (%.2f B/sample)", keep, r.res.BlockSamples, mib(float64(r.res.BlockBytes)), float64(r.res.BlockBytes)/float64(max(r.res.BlockSamples, 1)))
	return nil
}

type fillStats struct {
	samples      int64
	total, write time.Duration
}

// fill writes the fleet's rounds from from to to (one per resolution) into the Hindsight
// store at dir, with the pods' UIDs (namespace/name → UID) as the scraper sets them.
func fill(ctx context.Context, dir string, s fleet.Spec, uids map[string]types.UID, res time.Duration, from, to time.Time, logf func(string, ...any)) (fillStats, error) {
	nodes := make([]*fleet.NodeBody, s.Nodes)
	for i := range nodes {
		nodes[i] = s.Node(i)
	}
	db, err := tsdb.Open(tsdb.Config{Dir: dir, Resolution: res, ExpectedSeries: 2*s.Nodes + s.Pods()*(2+3*s.ContainersPerPod)},
		slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		return fillStats{}, err
	}
	var st fillStats
	rounds := int(to.Sub(from) / res)
	begin := time.Now()
	var buf []byte
	for k := range rounds {
		at := from.Add(time.Duration(k+1) * res)
		batch := tsdb.Batch{Nodes: make([]tsdb.NodeScrape, 0, len(nodes))}
		for i, n := range nodes {
			buf = n.Append(buf[:0], at)
			ns, err := scraper.Decode(buf, "text/plain; version=0.0.4", at)
			if err != nil {
				return st, errors.Join(err, db.Close())
			}
			ns.Node = fleet.NodeName(i)
			for j := range ns.Pods {
				ns.Pods[j].UID = string(uids[ns.Pods[j].Namespace+"/"+ns.Pods[j].Pod])
			}
			for j := range ns.Containers {
				ns.Containers[j].UID = string(uids[ns.Containers[j].Namespace+"/"+ns.Containers[j].Pod])
			}
			batch.Nodes = append(batch.Nodes, ns)
		}
		w := time.Now()
		if err := db.Write(ctx, batch); err != nil {
			return st, errors.Join(fmt.Errorf("write round %d: %w", k, err), db.Close())
		}
		st.write += time.Since(w)
		st.samples += int64(batch.Len())
		if k%(max(rounds/8, 1)) == 0 {
			logf("backfill: round %d of %d", k, rounds)
		}
	}
	st.total = time.Since(begin)
	return st, db.Close()
}

// compactStore opens the Hindsight store at dir with the Prometheus TSDB itself, compacts
// its head but the newest keep into one block, and returns the blocks' bytes and samples.
func compactStore(dir string, keep time.Duration) (bytes int64, samples uint64, err error) {
	opts := promtsdb.DefaultOptions()
	opts.WALCompression = compression.Snappy
	opts.EnableMemorySnapshotOnShutdown = true
	db, err := promtsdb.Open(filepath.Join(dir, "tsdb"), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, opts, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("open the store to compact it: %w", err)
	}
	db.DisableCompactions()
	h := db.Head()
	if err := db.CompactHead(promtsdb.NewRangeHead(h, h.MinTime(), h.MaxTime()-keep.Milliseconds())); err != nil {
		return 0, 0, errors.Join(fmt.Errorf("compact the head: %w", err), db.Close())
	}
	for _, b := range db.Blocks() {
		bytes += b.Size()
		samples += b.Meta().Stats.NumSamples
	}
	return bytes, samples, db.Close()
}
