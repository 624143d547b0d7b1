package catalog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hindsight-metrics/hindsight/internal/crashpoint"
)

// Prune deletes the pods and nodes deleted longer than Options.Retention ago (by their
// LastSeen), with their index entries, in one transaction, and returns how many it
// deleted. Live objects are never pruned. It does nothing when Retention is 0. The file
// keeps its size until the next Compact.
func (c *Catalog) Prune(ctx context.Context) (int, error) {
	if c.opts.Retention <= 0 {
		return 0, nil
	}
	if err := c.lockWriters(ctx); err != nil {
		return 0, err
	}
	defer c.unlockWriters()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return 0, ErrClosed
	}
	cutoff := unixNano(c.opts.Now().Add(-c.opts.Retention))
	n := 0
	err := c.db.Update(func(tx *bolt.Tx) error {
		n = 0
		var uids []string
		err := tx.Bucket(bucketByNS).ForEach(func(k, v []byte) error {
			if len(v) == spanLen && int64(binary.BigEndian.Uint64(v[8:])) < cutoff {
				uids = append(uids, uidOf(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, uid := range uids {
			r, err := getPod(tx, uid)
			if err != nil {
				return err
			}
			if r == nil {
				continue
			}
			if err := deletePod(tx, r); err != nil {
				return err
			}
			n++
		}
		var names []string
		err = tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			r, err := decodeNode(v)
			if err != nil {
				return fmt.Errorf("node %s: %w", k, err)
			}
			if r.Deleted && unixNano(r.LastSeen) < cutoff {
				names = append(names, r.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := tx.Bucket(bucketNodes).Delete([]byte(name)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune catalog: %w", err)
	}
	c.writeTxs.Add(1)
	return n, nil
}

// Compact rewrites the file without its free pages (a bbolt file never shrinks by
// itself): it copies every bucket into <path>.compact with bbolt.Compact, renames that
// over the file and switches to it. The new file is locked before it takes the old one's
// name, so no other process can slip in. Lookups go on during the copy and wait only for
// the switch; writes wait (records stay queued) until it is done. On failure the old file
// stays in use.
func (c *Catalog) Compact(ctx context.Context) error {
	if err := c.lockWriters(ctx); err != nil {
		return err
	}
	defer c.unlockWriters()
	start := time.Now()
	before := fileSize(c.path)
	tmp := c.path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", tmp, err)
	}
	dst, err := c.copyTo(tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == nil { // unreachable: Close waits for the writers' lock
		return errors.Join(ErrClosed, dst.Close(), os.Remove(tmp))
	}
	crashpoint.Hit(crashpoint.CatalogCompactBeforeRename)
	if err := os.Rename(tmp, c.path); err != nil {
		return errors.Join(fmt.Errorf("replace catalog with compacted copy: %w", err), dst.Close(), os.Remove(tmp))
	}
	crashpoint.Hit(crashpoint.CatalogCompactAfterRename)
	old := c.db
	c.db = dst
	err = syncDir(filepath.Dir(c.path))
	if cerr := old.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close pre-compaction catalog: %w", cerr))
	}
	c.log.Info("Compacted catalog", "path", c.path, "bytesBefore", before, "bytesAfter", fileSize(c.path), "duration", time.Since(start))
	return err
}

// copyTo copies the catalog into a new bbolt file at path and returns it, open.
func (c *Catalog) copyTo(path string) (*bolt.DB, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return nil, ErrClosed
	}
	dst, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: c.opts.Timeout})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if err := bolt.Compact(dst, c.db, compactTxMaxSize); err != nil {
		return nil, errors.Join(fmt.Errorf("compact catalog into %s: %w", path, err), dst.Close())
	}
	return dst, nil
}

// lockWriters takes the writers' lock (flushSem), waiting at most until ctx is done.
func (c *Catalog) lockWriters(ctx context.Context) error {
	select {
	case c.flushSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Catalog) unlockWriters() { <-c.flushSem }

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return errors.Join(d.Sync(), d.Close())
}
