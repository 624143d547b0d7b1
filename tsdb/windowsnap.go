package tsdb

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/prometheus/tsdb/encoding"
	"github.com/prometheus/prometheus/tsdb/fileutil"
)

// The window snapshot: the latest-points index as Close leaves it, so that the next Open
// serves the current window without reading the TSDB.
//
// Rebuilding the window (restore.go) reads the last points of every node and container
// series: at 1,000 nodes × 30 pods that is 1.4 s of a restart. Close writes the index to
// <dir>/window.snapshot instead, with the TSDB head's newest sample time, and Open uses it
// when that time is still the head's: no sample was appended since, so the file and the
// stored points tell the same story. Open removes the file before it uses it, so that it is
// used once: a Write that changes the index without appending (a full disk, a failed
// commit) and a crash after it cannot bring an older index back. A file that does not
// read back whole (its CRC), was written at another resolution or before the head's
// newest sample is not used, and Open rebuilds the window from the TSDB as before. The
// same freshness rule applies to both: a point older than two resolutions is not served.

const (
	windowSnapshotFile  = "window.snapshot"
	windowSnapshotMagic = "hindsight window snapshot v1\n"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errSnapshotStale is a snapshot written before the TSDB's newest sample.
var errSnapshotStale = errors.New("window snapshot older than the stored samples")

// windowSnapshot is a decoded window snapshot.
type windowSnapshot struct {
	resolution time.Duration
	headMaxT   int64 // ms: the TSDB head's MaxTime when the snapshot was written
	nodes      map[string]*nodeState
	pods       map[PodRef]*podState
}

// encodeWindow encodes x's nodes and pods, sorted by name so that the encoding of an
// index is always the same, with the head's newest sample time headMaxT (ms).
func encodeWindow(x *index, headMaxT int64) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, 64+len(x.nodes)*48+len(x.pods)*128)}
	e.PutString(windowSnapshotMagic)
	e.PutBE64int64(int64(x.resolution))
	e.PutBE64int64(headMaxT)

	names := make([]string, 0, len(x.nodes))
	for name := range x.nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	e.PutUvarint(len(names))
	for _, name := range names {
		st := x.nodes[name]
		e.PutUvarintStr(name)
		e.PutByte(flags(st.hasLast, st.hasPrev))
		if st.hasLast {
			putPoint(&e, st.last)
		}
		if st.hasPrev {
			putPoint(&e, st.prev)
		}
	}

	refs := make([]PodRef, 0, len(x.pods))
	for ref := range x.pods {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, comparePodRef)
	e.PutUvarint(len(refs))
	for _, ref := range refs {
		p := x.pods[ref]
		e.PutUvarintStr(ref.Namespace)
		e.PutUvarintStr(ref.Name)
		e.PutUvarintStr(p.node)
		e.PutUvarint(len(p.containers))
		for i := range p.containers {
			c := &p.containers[i]
			e.PutUvarintStr(c.name)
			e.PutByte(flags(true, c.hasPrev))
			putPoint(&e, c.last)
			if c.hasPrev {
				putPoint(&e, c.prev)
			}
		}
	}
	e.PutBE32(crc32.Checksum(e.Get(), castagnoli))
	return e.Get()
}

func comparePodRef(a, b PodRef) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

const (
	flagLast = 1 << iota
	flagPrev
)

func flags(last, prev bool) byte {
	var f byte
	if last {
		f |= flagLast
	}
	if prev {
		f |= flagPrev
	}
	return f
}

func putPoint(e *encoding.Encbuf, p point) {
	e.PutVarint64(p.ts)
	e.PutVarint64(p.start)
	e.PutUvarint64(p.cpu)
	e.PutUvarint64(p.mem)
}

func getPoint(d *encoding.Decbuf) point {
	return point{ts: d.Varint64(), start: d.Varint64(), cpu: d.Uvarint64(), mem: d.Uvarint64()}
}

// getStr reads a length-prefixed string, as Decbuf.UvarintStr does but checking a length
// too large for an int (UvarintStr panics on one, found by FuzzDecodeWindow).
func getStr(d *encoding.Decbuf) string {
	n := d.Uvarint64()
	if d.E != nil {
		return ""
	}
	if n > uint64(len(d.B)) {
		d.E = encoding.ErrInvalidSize
		return ""
	}
	s := string(d.B[:n])
	d.B = d.B[n:]
	return s
}

// errCorrupt is a snapshot that does not decode.
var errCorrupt = errors.New("corrupt window snapshot")

// decodeWindow decodes what encodeWindow wrote. It checks the magic and the CRC first,
// and bounds every count by the bytes left, so that a damaged file is an error, never an
// allocation larger than the file.
func decodeWindow(b []byte) (*windowSnapshot, error) {
	if len(b) < len(windowSnapshotMagic)+4 || string(b[:len(windowSnapshotMagic)]) != windowSnapshotMagic {
		return nil, fmt.Errorf("%w: no snapshot header", errCorrupt)
	}
	body := b[:len(b)-4]
	if want, got := binary.BigEndian.Uint32(b[len(b)-4:]), crc32.Checksum(body, castagnoli); want != got {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", errCorrupt, got, want)
	}
	d := encoding.Decbuf{B: body[len(windowSnapshotMagic):]}
	s := &windowSnapshot{resolution: time.Duration(d.Be64int64()), headMaxT: d.Be64int64()}
	count := func(what string) (int, error) {
		n := d.Uvarint64()
		if d.Err() == nil && n > uint64(d.Len()) {
			return 0, fmt.Errorf("%w: %d %s in %d bytes", errCorrupt, n, what, d.Len())
		}
		return int(n), d.Err()
	}
	n, err := count("nodes")
	if err != nil {
		return nil, err
	}
	s.nodes = make(map[string]*nodeState, n)
	prevName := ""
	for i := range n {
		name := getStr(&d)
		f := d.Byte()
		st := &nodeState{hasLast: f&flagLast != 0, hasPrev: f&flagPrev != 0}
		if st.hasLast {
			st.last = getPoint(&d)
		}
		if st.hasPrev {
			st.prev = getPoint(&d)
		}
		if d.Err() != nil {
			return nil, fmt.Errorf("%w: node %d: %w", errCorrupt, i, d.Err())
		}
		if err := checkState(name, i > 0, prevName, f, st.last, st.prev); err != nil {
			return nil, fmt.Errorf("node %q: %w", name, err)
		}
		prevName = name
		s.nodes[name] = st
	}

	if n, err = count("pods"); err != nil {
		return nil, err
	}
	s.pods = make(map[PodRef]*podState, n)
	var prevRef PodRef
	for i := range n {
		ref := PodRef{Namespace: getStr(&d), Name: getStr(&d)}
		p := &podState{node: getStr(&d)}
		nc, err := count("containers")
		if err != nil {
			return nil, fmt.Errorf("pod %d: %w", i, err)
		}
		if ref.Name == "" || p.node == "" || nc == 0 || (i > 0 && comparePodRef(prevRef, ref) >= 0) {
			return nil, fmt.Errorf("%w: pod %d (%s on %q, %d containers) empty or out of order", errCorrupt, i, ref, p.node, nc)
		}
		p.containers = make([]containerState, nc)
		for j := range p.containers {
			c := &p.containers[j]
			c.name = getStr(&d)
			f := d.Byte()
			c.hasPrev = f&flagPrev != 0
			c.last = getPoint(&d)
			if c.hasPrev {
				c.prev = getPoint(&d)
			}
			if d.Err() != nil {
				return nil, fmt.Errorf("%w: pod %s: %w", errCorrupt, ref, d.Err())
			}
			if f&flagLast == 0 {
				return nil, fmt.Errorf("%w: pod %s container %q without a last point", errCorrupt, ref, c.name)
			}
			if err := checkState(c.name, j > 0, p.containers[max(j-1, 0)].name, f, c.last, c.prev); err != nil {
				return nil, fmt.Errorf("pod %s container %q: %w", ref, c.name, err)
			}
		}
		prevRef = ref
		s.pods[ref] = p
	}
	if d.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last pod", errCorrupt, d.Len())
	}
	return s, nil
}

// checkState checks what the index's rules guarantee of a node or container: a name, in
// order after prevName (when hasPrevName), known flags, and a previous point only before
// a last one.
func checkState(name string, hasPrevName bool, prevName string, f byte, last, prev point) error {
	switch {
	case name == "" || (hasPrevName && prevName >= name):
		return fmt.Errorf("%w: empty or out of order name", errCorrupt)
	case f&^(flagLast|flagPrev) != 0, f&flagPrev != 0 && f&flagLast == 0:
		return fmt.Errorf("%w: flags %#x", errCorrupt, f)
	case f&flagPrev != 0 && prev.ts >= last.ts:
		return fmt.Errorf("%w: previous point at %d not before the last at %d", errCorrupt, prev.ts, last.ts)
	}
	return nil
}

// load fills the empty index x from s with the freshness rule of rebuild: a node or
// container whose last point is older than fresh is left out, and so is a pod left
// without containers. Nodes are seen at now.
func (x *index) load(s *windowSnapshot, now, fresh time.Time) {
	freshNs := fresh.UnixNano()
	for name, st := range s.nodes {
		if !st.hasLast || st.last.ts < freshNs {
			continue
		}
		st.seen = now
		x.nodes[name] = st
	}
	refs := make([]PodRef, 0, len(s.pods))
	for ref := range s.pods {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, comparePodRef)
	for _, ref := range refs {
		p := s.pods[ref]
		p.containers = slices.DeleteFunc(p.containers, func(c containerState) bool { return c.last.ts < freshNs })
		if len(p.containers) == 0 {
			continue
		}
		x.pods[ref] = p
		st := x.nodes[p.node]
		if st == nil {
			st = &nodeState{seen: now}
			x.nodes[p.node] = st
		}
		st.pods = append(st.pods, ref)
	}
	x.count()
}

// writeWindowSnapshot writes data to dir/window.snapshot atomically: a temporary file,
// synced, renamed over it, and the directory synced.
func writeWindowSnapshot(dir string, data []byte) (err error) {
	path := filepath.Join(dir, windowSnapshotFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.Remove(tmp))
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = fileutil.Fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := fileutil.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// readWindowSnapshot reads dir/window.snapshot and removes it (and a temporary file left
// by a crash) before it returns, so that it is used at most once. It returns an error
// wrapping fs.ErrNotExist when there is none, errSnapshotStale when it was written before
// the head's newest sample headMaxT (ms), and an error when it was written at another
// resolution than res, does not decode, or could not be removed.
func readWindowSnapshot(dir string, res time.Duration, headMaxT int64) (*windowSnapshot, error) {
	path := filepath.Join(dir, windowSnapshotFile)
	data, err := os.ReadFile(path)
	rmErr := errors.Join(removeIfExists(path), removeIfExists(path+".tmp"))
	if rmErr == nil {
		rmErr = syncDir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if rmErr != nil {
		return nil, fmt.Errorf("remove %s before using it: %w", path, rmErr)
	}
	s, err := decodeWindow(data)
	switch {
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", path, err)
	case s.headMaxT != headMaxT:
		return nil, fmt.Errorf("%s: %w (written with the newest sample at %s, the TSDB's is at %s)",
			path, errSnapshotStale, msTime(s.headMaxT), msTime(headMaxT))
	case s.resolution != res:
		return nil, fmt.Errorf("%s: written at resolution %s, now %s", path, s.resolution, res)
	}
	return s, nil
}

// msTime formats a TSDB time (ms) for a message; an empty head's is "none".
func msTime(ms int64) string {
	if ms == emptyHeadMaxT {
		return "none"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

// emptyHeadMaxT is the MaxTime of a head without samples (the TSDB's math.MinInt64).
const emptyHeadMaxT = -1 << 63

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
