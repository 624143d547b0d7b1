package catalog

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bbolt's on-disk meta page (format version 2): a 16-byte page header, then magic,
// version, page size and flags (uint32 each), the root bucket (root page id and sequence,
// uint64 each), the freelist page id, the high-water page id, the transaction id and an
// FNV-64a checksum of the preceding 56 bytes (uint64 each), in the machine's byte order.
const (
	boltPageHeader  = 16
	boltMetaLen     = 64
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltDefaultPage = 4096
)

type boltMeta struct {
	pageSize uint32
	freelist uint64 // page id of the freelist, or boltNoFreelist
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
}

const (
	boltNoFreelist    = ^uint64(0)
	boltFreelistFlags = 0x10
)

// parseMeta decodes the meta page at the start of p; ok is false when it is not a valid
// one.
func parseMeta(p []byte) (m boltMeta, ok bool) {
	if len(p) < boltPageHeader+boltMetaLen {
		return boltMeta{}, false
	}
	b := p[boltPageHeader : boltPageHeader+boltMetaLen]
	e := binary.NativeEndian
	if e.Uint32(b[0:]) != boltMagic || e.Uint32(b[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if h.Sum64() != e.Uint64(b[56:]) {
		return boltMeta{}, false
	}
	m = boltMeta{pageSize: e.Uint32(b[8:]), freelist: e.Uint64(b[32:]), pgid: e.Uint64(b[40:]), txid: e.Uint64(b[48:])}
	return m, m.pageSize >= 1024 && m.pageSize&(m.pageSize-1) == 0
}

// checkHeader checks, before bbolt maps the file, that it is empty or missing (bbolt
// initializes it) or has a valid meta page whose pages all lie within the file. bbolt
// itself would map a truncated file and fault (SIGBUS) on the first page past its end.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	buf := make([]byte, boltPageHeader+boltMetaLen)
	read := func(off int64) (boltMeta, bool) {
		if _, err := f.ReadAt(buf, off); err != nil {
			return boltMeta{}, false
		}
		return parseMeta(buf)
	}
	m0, ok0 := read(0)
	page := int64(boltDefaultPage)
	if ok0 {
		page = int64(m0.pageSize)
	}
	m1, ok1 := read(page)
	m := m0
	switch {
	case !ok0 && !ok1:
		return fmt.Errorf("%w: no valid bbolt meta page in %d bytes", ErrCorrupt, size)
	case !ok0 || (ok1 && m1.txid > m0.txid):
		m = m1
	}
	if m.pgid > uint64(size) || int64(m.pgid)*int64(m.pageSize) > size {
		return fmt.Errorf("%w: truncated to %d bytes, its %d pages of %d bytes do not fit", ErrCorrupt, size, m.pgid, m.pageSize)
	}
	if err := checkFreelist(f, m); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

// checkFreelist checks the freelist page that bbolt reads while opening (and panics on
// when it is not one).
func checkFreelist(f *os.File, m boltMeta) error {
	if m.freelist == boltNoFreelist {
		return nil
	}
	if m.freelist < 2 || m.freelist >= m.pgid {
		return fmt.Errorf("freelist page %d outside pages [2, %d)", m.freelist, m.pgid)
	}
	page := int64(m.pageSize)
	hdr := make([]byte, boltPageHeader+8)
	if _, err := f.ReadAt(hdr, int64(m.freelist)*page); err != nil {
		return fmt.Errorf("read freelist page: %w", err)
	}
	e := binary.NativeEndian
	flags, count, overflow := e.Uint16(hdr[8:]), uint64(e.Uint16(hdr[10:])), uint64(e.Uint32(hdr[12:]))
	if flags != boltFreelistFlags {
		return fmt.Errorf("page %d is not a freelist page (flags %#x)", m.freelist, flags)
	}
	first := int64(0)
	if count == 0xFFFF { // the real count is the first element
		count, first = e.Uint64(hdr[boltPageHeader:]), 1
	}
	if m.freelist+overflow >= m.pgid || count > (overflow+1)*uint64(page)/8 {
		return fmt.Errorf("freelist page %d: %d ids on %d pages do not fit", m.freelist, count, overflow+1)
	}
	ids := make([]byte, 8*count)
	if _, err := f.ReadAt(ids, int64(m.freelist)*page+boltPageHeader+8*first); err != nil {
		return fmt.Errorf("read freelist: %w", err)
	}
	for i := range count {
		if id := e.Uint64(ids[8*i:]); id < 2 || id >= m.pgid {
			return fmt.Errorf("freelist names page %d outside pages [2, %d)", id, m.pgid)
		}
	}
	return nil
}

// check verifies an open file: the schema version, that every page passes bbolt's
// consistency check, that every pod record is JSON and that every node record decodes. It creates the buckets of a new file.
// It returns the number of pod and node records. A corrupt page makes bbolt panic; that
// panic, and a memory fault, are turned into ErrCorrupt.
func check(db *bolt.DB) (pods, nodes int, err error) {
	fresh := false
	err = viewSafely(db, func(tx *bolt.Tx) error {
		n := 0
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { n++; return nil }); err != nil {
			return err
		}
		if n == 0 {
			fresh = true
			return nil
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("no meta bucket: not a catalog")
		}
		if v := meta.Get(keyVersion); string(v) != schemaVersion {
			return fmt.Errorf("schema version %q, want %q", v, schemaVersion)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("bucket %s missing", name)
			}
		}
		if err := tx.Bucket(bucketPods).ForEach(func(k, v []byte) error {
			// Syntax only: decoding every record would cost 4× as much (about 45µs a pod),
			// seconds for a large cluster's catalog on every restart.
			pods++
			if !json.Valid(v) {
				return fmt.Errorf("pod record %q is not JSON", k)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			nodes++
			r, err := decodeNode(v)
			if err != nil {
				return err
			}
			if r.Name != string(k) {
				return fmt.Errorf("node record under key %q has name %q", k, r.Name)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, name := range podIndexes {
			if err := tx.Bucket(name).ForEach(func([]byte, []byte) error { return nil }); err != nil {
				return err
			}
		}
		return boltCheck(tx)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if fresh {
		err := db.Update(func(tx *bolt.Tx) error {
			for _, name := range allBuckets {
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keyVersion, []byte(schemaVersion))
		})
		if err != nil {
			return 0, 0, fmt.Errorf("create buckets: %w", err)
		}
	}
	return pods, nodes, nil
}

// viewSafely runs fn in a read transaction, turning a panic or memory fault into an error.
func viewSafely(db *bolt.DB, fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading the file panicked: %v", r)
		}
	}()
	return db.View(fn)
}

// boltCheck runs bbolt's page-level check (free pages, page types, key order)
// and joins the first few problems it reports.
func boltCheck(tx *bolt.Tx) error {
	var errs []error
	for err := range tx.Check() {
		if len(errs) < 5 {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ownerPath is the file in which the holder of the lock on path describes itself.
func ownerPath(path string) string { return path + ".owner" }

// writeOwner records this process as the holder of the lock, for the error of a second
// opener. bbolt's lock is the real guard; a stale owner file left by a crash is simply
// overwritten by the next holder.
func (c *Catalog) writeOwner() string {
	host, _ := os.Hostname()
	s := fmt.Sprintf("pid %d on host %s since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	tmp := ownerPath(c.path) + ".tmp"
	err := os.WriteFile(tmp, []byte(s+"\n"), 0o600)
	if err == nil {
		err = os.Rename(tmp, ownerPath(c.path))
	}
	if err != nil {
		c.log.Warn("Cannot record the catalog's holder; a second opener's error will not name it", "path", ownerPath(c.path), "err", err)
		return ""
	}
	return s
}

// removeOwner removes the owner file if it is still ours.
func (c *Catalog) removeOwner() {
	if c.owner != "" && readOwner(c.path) == c.owner {
		_ = os.Remove(ownerPath(c.path))
	}
}

// readOwner describes the holder of the lock on path from its owner file.
func readOwner(path string) string {
	f, err := os.Open(ownerPath(path))
	if err != nil {
		return "an unknown process (no " + ownerPath(path) + ")"
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 512))
	s := strings.TrimSpace(string(bytes.ToValidUTF8(b, nil)))
	if s == "" {
		return "an unknown process (empty " + ownerPath(path) + ")"
	}
	return s
}
