package tsdb

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"time"

	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
)

const (
	// DefaultRetention is used when Config.Retention is zero: two weeks of every raw
	// sample; the downsampled tiers keep 90 days (5m) and 400 days (1h).
	DefaultRetention = 14 * 24 * time.Hour
	// DefaultResolution is used when Config.Resolution is zero. It is the
	// --metric-resolution of every shipped metrics-server manifest.
	DefaultResolution = 15 * time.Second
	// DefaultExpectedSeries is used when Config.ExpectedSeries is zero: about four nodes
	// of 30 pods with two containers each, so smaller than any real cluster, which keeps
	// the RetentionSize check from refusing a size that would hold a day.
	DefaultExpectedSeries = 1000

	// DiskBytesPerSample is how many bytes one sample takes in the TSDB's persisted blocks,
	// index included, as BenchmarkDiskBytesPerSample measures it (go test -run '^$' -bench
	// DiskBytesPerSample -benchtime 1x ./tsdb/): 4.92 for a week and 4.99 for a day of 15s
	// rounds of 2,420 series with a kubelet's noise (sample times up to 3s before the
	// scrape, CPU counters growing at random rates, working sets moving by random pages),
	// which is close to the worst case for the TSDB's encoding; rounded up. Regular values
	// (constant increments) take 2.7. The WAL and the head chunks, which hold the last 2-3
	// hours in a less compact form (about 11 KiB per series in the benchmark), come on top
	// and count towards RetentionSize too.
	DiskBytesPerSample = 5

	// maxBlockDuration caps the size of compacted blocks: retention deletes whole blocks,
	// so a block should hold at most a tenth of the retention.
	maxBlockDuration = 31 * 24 * time.Hour
	// tsdbSubdir is where the Prometheus TSDB lives under Config.Dir.
	tsdbSubdir = "tsdb"
)

// Config configures a DB. The zero value of every field but Dir is usable.
type Config struct {
	// Dir is the storage path (--storage-path), normally the mount point of the
	// PersistentVolume. The Prometheus TSDB lives in Dir/tsdb (see the package
	// documentation for the layout); Dir itself is shared with the catalog. Required.
	Dir string
	// Retention is how long raw samples are kept. 0 means DefaultRetention (14 days).
	Retention time.Duration
	// RetentionSize caps the bytes of the TSDB: persisted blocks plus the WAL and the head
	// chunks, as the Prometheus TSDB counts them (the memory snapshot written on Close is
	// not counted), and of the tiers, which get 28 % (5m) and 12 % (1h) of it while they are
	// on, the raw samples the rest. The oldest blocks of each are deleted to stay below its
	// share. 0 means unlimited; a size whose raw share holds less than a day of samples
	// (MinRetentionSize of ExpectedSeries) is refused.
	RetentionSize int64
	// ExpectedSeries is how many series the cluster is expected to have (about 2 per node,
	// 2 per pod and 3 per container). It is used only to refuse a RetentionSize too small
	// to hold one day. 0 means DefaultExpectedSeries (1000).
	ExpectedSeries int
	// Resolution is the scrape interval (--metric-resolution). The current window's
	// fresh-container rule depends on it, and the in-memory state of a node absent from
	// every Write for more than 10 resolutions is forgotten. 0 means DefaultResolution (15s).
	Resolution time.Duration
	// BlockDuration is the TSDB's block range: the span of a head chunk at most, and of the
	// blocks a head compaction writes. 0 means Prometheus' default (2h). Only tests change
	// it (the hidden flag --storage-block-duration), so that head chunk writes and head
	// compactions come within minutes; history is unchanged.
	BlockDuration time.Duration
	// TierRetention is how long each downsampled tier (tier.go) keeps its rollups, indexed
	// by Tier. 0 means DefaultTierRetention (90 days for 5m, 400 days for 1h); a negative
	// value turns the tier off.
	TierRetention [NumTiers]time.Duration
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("dir: must not be empty"))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("retention: must not be negative, got %s", c.Retention))
	}
	if c.RetentionSize < 0 {
		errs = append(errs, fmt.Errorf("retention size: must not be negative, got %d", c.RetentionSize))
	}
	if c.Resolution < 0 {
		errs = append(errs, fmt.Errorf("resolution: must not be negative, got %s", c.Resolution))
	}
	if c.BlockDuration < 0 {
		errs = append(errs, fmt.Errorf("block duration: must not be negative, got %s", c.BlockDuration))
	}
	if c.ExpectedSeries < 0 {
		errs = append(errs, fmt.Errorf("expected series: must not be negative, got %d", c.ExpectedSeries))
	}
	if cc := c.complete(); c.RetentionSize > 0 {
		raw := cc.rawSizePercent()
		if need := sizeFor(rawDay(cc.ExpectedSeries, cc.Resolution), raw); c.RetentionSize < need {
			errs = append(errs, fmt.Errorf("retention size: %d bytes is less than one day of samples needs, about %d bytes "+
				"(%d series × %d samples a day at a %s resolution × %d bytes per sample, in the %d%% of the size the raw samples get beside the tiers); give at least that, or 0 for no size limit",
				c.RetentionSize, need, cc.ExpectedSeries, samplesPerDay(cc.Resolution), cc.Resolution, DiskBytesPerSample, raw))
		}
	}
	return errors.Join(errs...)
}

// MinRetentionSize returns the smallest RetentionSize that holds one day of the raw
// samples of series series, scraped every resolution, beside the tiers' shares: series ×
// (24h / resolution) × DiskBytesPerSample bytes in persisted blocks, divided by the share
// of the size the raw samples get while both tiers are on (rawSizePercent). Config.Validate
// refuses a non-zero RetentionSize below it (below the day itself when the tiers are off).
func MinRetentionSize(series int, resolution time.Duration) int64 {
	return sizeFor(rawDay(series, resolution), tiersOnSizePercent)
}

// rawDay is series × (24h / resolution) × DiskBytesPerSample: one day of raw samples in
// persisted blocks.
func rawDay(series int, resolution time.Duration) int64 {
	if series <= 0 || resolution <= 0 {
		return 0
	}
	perSeries := samplesPerDay(resolution) * DiskBytesPerSample
	if perSeries > 0 && int64(series) > math.MaxInt64/perSeries/100 {
		return math.MaxInt64 / 100
	}
	return int64(series) * perSeries
}

// sizeFor returns the RetentionSize whose percent share holds bytes (rounded up).
func sizeFor(bytes, percent int64) int64 { return ceilDiv(bytes*100, percent) }

// The split of RetentionSize: each tier that is on gets its tierDef.sizePercent (5m 28 %,
// 1h 12 %), the raw samples the rest: tiersOnSizePercent with both on. The shares are those
// of the default retentions (raw 14 days, 5m 90, 1h 400) as measured per object and day
// (bench/README.md): a container's 3 raw series take ~111 KB a day at 6.4 B per sample, its
// nine 5m series ~7.5 KB (2.9 B per sample), its nine 1h series ~0.8 KB (3.7 B); with two
// containers a pod, 14, 90 and 400 days of those are 58 %, 29 % and 13 % of the whole.
const tiersOnSizePercent = 60

// rawSizePercent is the percent of RetentionSize the raw samples get.
func (c Config) rawSizePercent() int64 {
	p := int64(100)
	for t := range NumTiers {
		if c.TierRetention[t] >= 0 {
			p -= tierDefs[t].sizePercent
		}
	}
	return p
}

// sizeShares returns the bytes of a completed config's RetentionSize for the raw TSDB and
// for each tier; 0 (no limit) for all when it is 0.
func (c Config) sizeShares() (raw int64, tiers [NumTiers]int64) {
	if c.RetentionSize <= 0 {
		return 0, tiers
	}
	for t := range NumTiers {
		if c.TierRetention[t] >= 0 {
			tiers[t] = c.RetentionSize / 100 * tierDefs[t].sizePercent
		}
	}
	return c.RetentionSize / 100 * c.rawSizePercent(), tiers
}

// samplesPerDay is how many samples one series gets in a day at resolution (> 0).
func samplesPerDay(resolution time.Duration) int64 {
	return int64(24 * time.Hour / resolution)
}

// complete returns c with the documented defaults filled in.
func (c Config) complete() Config {
	c.Retention = cmp.Or(c.Retention, DefaultRetention)
	c.Resolution = cmp.Or(c.Resolution, DefaultResolution)
	c.ExpectedSeries = cmp.Or(c.ExpectedSeries, DefaultExpectedSeries)
	for t := range NumTiers {
		c.TierRetention[t] = cmp.Or(c.TierRetention[t], DefaultTierRetention(t))
	}
	return c
}

// tsdbDir is the directory of the Prometheus TSDB.
func (c Config) tsdbDir() string { return filepath.Join(c.Dir, tsdbSubdir) }

// promOptions derives the Prometheus TSDB options from a completed Config.
func (c Config) promOptions() *promtsdb.Options {
	o := promtsdb.DefaultOptions()
	// Snappy roughly halves the WAL for a negligible CPU cost.
	o.WALCompression = compression.Snappy
	o.RetentionDuration = c.Retention.Milliseconds()
	o.MaxBytes, _ = c.sizeShares()
	// The default MaxBlockDuration (2h) never compacts blocks, which leaves a month of
	// retention in 360 blocks. min(31d, retention/10) keeps retention's granularity at a
	// tenth of it; the TSDB raises it to MinBlockDuration for short retentions.
	o.MaxBlockDuration = min(maxBlockDuration, c.Retention/10).Milliseconds()
	if c.BlockDuration > 0 {
		o.MinBlockDuration = c.BlockDuration.Milliseconds()
		o.MaxBlockDuration = max(o.MaxBlockDuration, o.MinBlockDuration)
	}
	// A snapshot of the head on Close makes a restart replay ~5x faster.
	o.EnableMemorySnapshotOnShutdown = true
	return o
}
