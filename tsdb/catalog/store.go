package catalog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets. Every index key ends with the pod UID; parts are joined with a NUL byte, which
// no Kubernetes name contains (records with one are rejected), so that a prefix scan of
// "part\x00" finds exactly that part's entries. An index value is the pod's span (see
// span), so that a time-range lookup filters without decoding records.
var (
	bucketMeta    = []byte("meta")          // "version" → schemaVersion
	bucketPods    = []byte("pods")          // uid → JSON PodRecord
	bucketNodes   = []byte("nodes")         // name → JSON NodeRecord
	bucketLive    = []byte("idx_live")      // uid → span; pods not deleted
	bucketByNS    = []byte("idx_namespace") // ns \0 uid → span
	bucketByName  = []byte("idx_name")      // ns \0 name \0 uid → span
	bucketByOwner = []byte("idx_owner")     // ns \0 kind \0 name \0 uid → span (top workload and direct controller)
	bucketByNode  = []byte("idx_node")      // node \0 uid → span

	podIndexes = [][]byte{bucketLive, bucketByNS, bucketByName, bucketByOwner, bucketByNode}
	allBuckets = append([][]byte{bucketMeta, bucketPods, bucketNodes}, podIndexes...)

	keyVersion = []byte("version")
)

// schemaVersion is the layout described above. A file with another version is treated as
// corrupt (moved aside and rebuilt by OpenOrRebuild).
const schemaVersion = "1"

const sep = "\x00"

// indexEntry is one key of one index bucket.
type indexEntry struct {
	bucket []byte
	key    string
}

// podIndexEntries returns every index entry of r, or none for nil.
func podIndexEntries(r *PodRecord) []indexEntry {
	if r == nil {
		return nil
	}
	e := make([]indexEntry, 0, 6)
	if !r.Deleted {
		e = append(e, indexEntry{bucketLive, r.UID})
	}
	e = append(e,
		indexEntry{bucketByNS, r.Namespace + sep + r.UID},
		indexEntry{bucketByName, r.Namespace + sep + r.Name + sep + r.UID},
	)
	if r.Owner.Kind != "" && r.Owner.Name != "" {
		e = append(e, indexEntry{bucketByOwner, ownerPrefix(r.Namespace, r.Owner.Kind, r.Owner.Name) + r.UID})
	}
	if c := r.Controller; c.Kind != "" && c.Name != "" && c != r.Owner {
		e = append(e, indexEntry{bucketByOwner, ownerPrefix(r.Namespace, c.Kind, c.Name) + r.UID})
	}
	if r.Node != "" {
		e = append(e, indexEntry{bucketByNode, r.Node + sep + r.UID})
	}
	return e
}

func ownerPrefix(ns, kind, name string) string { return ns + sep + kind + sep + name + sep }

// spanLen is the size of an encoded span.
const spanLen = 16

// span encodes the time during which a record existed, as two big-endian Unix nanosecond
// times: its FirstSeen and its end, which is LastSeen for a deleted object and the largest
// time for a live one (it exists now, however long ago its last event was).
func span(first, last time.Time, deleted bool) []byte {
	b := make([]byte, spanLen)
	binary.BigEndian.PutUint64(b[:8], uint64(unixNano(first)))
	end := int64(math.MaxInt64)
	if deleted {
		end = unixNano(last)
	}
	binary.BigEndian.PutUint64(b[8:], uint64(end))
	return b
}

func podSpan(r *PodRecord) []byte { return span(r.FirstSeen, r.LastSeen, r.Deleted) }

// unixNano is t.UnixNano clamped to the range it can represent.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minNanoTime):
		return math.MinInt64
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// window is a closed time range [from, to] in Unix nanoseconds; the zero times of a lookup
// stand for the unbounded past and future.
type window struct{ from, to int64 }

func newWindow(from, to time.Time) window {
	w := window{math.MinInt64, math.MaxInt64}
	if !from.IsZero() {
		w.from = unixNano(from)
	}
	if !to.IsZero() {
		w.to = unixNano(to)
	}
	return w
}

// overlaps reports whether the encoded span v overlaps w. A malformed span overlaps
// everything, so that a lookup errs on the side of decoding the record.
func (w window) overlaps(v []byte) bool {
	if len(v) != spanLen {
		return true
	}
	first := int64(binary.BigEndian.Uint64(v[:8]))
	end := int64(binary.BigEndian.Uint64(v[8:]))
	return first <= w.to && end >= w.from
}

// getPod returns the stored record of uid, or nil.
func getPod(tx *bolt.Tx, uid string) (*PodRecord, error) {
	v := tx.Bucket(bucketPods).Get([]byte(uid))
	if v == nil {
		return nil, nil
	}
	r, err := decodePod(v)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", uid, err)
	}
	return &r, nil
}

func getNode(tx *bolt.Tx, name string) (*NodeRecord, error) {
	v := tx.Bucket(bucketNodes).Get([]byte(name))
	if v == nil {
		return nil, nil
	}
	r, err := decodeNode(v)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	return &r, nil
}

// putPod stores cur, which replaces old (nil for a new pod), and brings every index in
// line: entries of old that cur lacks are deleted, entries of cur that are new or whose
// span changed are written.
func putPod(tx *bolt.Tx, old, cur *PodRecord) error {
	v, err := encodePod(cur)
	if err != nil {
		return fmt.Errorf("encode pod %s: %w", cur.UID, err)
	}
	if err := tx.Bucket(bucketPods).Put([]byte(cur.UID), v); err != nil {
		return fmt.Errorf("put pod %s: %w", cur.UID, err)
	}
	oldEntries, curEntries := podIndexEntries(old), podIndexEntries(cur)
	var oldSpan []byte
	if old != nil {
		oldSpan = podSpan(old)
	}
	curSpan := podSpan(cur)
	spanChanged := !bytes.Equal(oldSpan, curSpan)
	for _, e := range oldEntries {
		if !containsEntry(curEntries, e) {
			if err := tx.Bucket(e.bucket).Delete([]byte(e.key)); err != nil {
				return fmt.Errorf("delete %s index entry of pod %s: %w", e.bucket, cur.UID, err)
			}
		}
	}
	for _, e := range curEntries {
		if spanChanged || !containsEntry(oldEntries, e) {
			if err := tx.Bucket(e.bucket).Put([]byte(e.key), curSpan); err != nil {
				return fmt.Errorf("put %s index entry of pod %s: %w", e.bucket, cur.UID, err)
			}
		}
	}
	return nil
}

// deletePod removes r and its index entries.
func deletePod(tx *bolt.Tx, r *PodRecord) error {
	for _, e := range podIndexEntries(r) {
		if err := tx.Bucket(e.bucket).Delete([]byte(e.key)); err != nil {
			return fmt.Errorf("delete %s index entry of pod %s: %w", e.bucket, r.UID, err)
		}
	}
	if err := tx.Bucket(bucketPods).Delete([]byte(r.UID)); err != nil {
		return fmt.Errorf("delete pod %s: %w", r.UID, err)
	}
	return nil
}

func containsEntry(es []indexEntry, e indexEntry) bool {
	for _, x := range es {
		if bytes.Equal(x.bucket, e.bucket) && x.key == e.key {
			return true
		}
	}
	return false
}

func putNode(tx *bolt.Tx, r *NodeRecord) error {
	v, err := encodeNode(r)
	if err != nil {
		return fmt.Errorf("encode node %s: %w", r.Name, err)
	}
	if err := tx.Bucket(bucketNodes).Put([]byte(r.Name), v); err != nil {
		return fmt.Errorf("put node %s: %w", r.Name, err)
	}
	return nil
}

// uidOf returns the UID at the end of an index key.
func uidOf(key []byte) string {
	if i := bytes.LastIndexByte(key, 0); i >= 0 {
		return string(key[i+1:])
	}
	return string(key)
}

// scanPrefix calls fn for every entry of bucket b whose key starts with prefix, in key
// order, until fn returns false or an error.
func scanPrefix(b *bolt.Bucket, prefix []byte, fn func(k, v []byte) (bool, error)) error {
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}
