package tsdb

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
)

const (
	// DefaultRetention is used when Config.Retention is zero.
	DefaultRetention = 30 * 24 * time.Hour
	// DefaultResolution is used when Config.Resolution is zero. It is the
	// --metric-resolution of every shipped metrics-server manifest.
	DefaultResolution = 15 * time.Second

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
	// Retention is how long samples are kept. 0 means DefaultRetention (30 days).
	Retention time.Duration
	// RetentionSize caps the bytes kept in persisted TSDB blocks (the WAL and the head
	// come on top). 0 means unlimited.
	RetentionSize int64
	// Resolution is the scrape interval (--metric-resolution). The current window's
	// fresh-container rule depends on it, and the in-memory state of a node absent from
	// every Write for more than 10 resolutions is forgotten. 0 means DefaultResolution (15s).
	Resolution time.Duration
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
	return errors.Join(errs...)
}

// complete returns c with the documented defaults filled in.
func (c Config) complete() Config {
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Resolution == 0 {
		c.Resolution = DefaultResolution
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
	o.MaxBytes = c.RetentionSize
	// The default MaxBlockDuration (2h) never compacts blocks, which leaves a month of
	// retention in 360 blocks. min(31d, retention/10) keeps retention's granularity at a
	// tenth of it; the TSDB raises it to MinBlockDuration for short retentions.
	o.MaxBlockDuration = min(maxBlockDuration, c.Retention/10).Milliseconds()
	// A snapshot of the head on Close makes a restart replay ~5x faster.
	o.EnableMemorySnapshotOnShutdown = true
	return o
}
