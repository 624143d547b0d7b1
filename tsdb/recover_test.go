package tsdb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Environment of the "write" and "crash" child processes (see helpers).
const (
	helperRoundsEnv = "HINDSIGHT_TSDB_TEST_ROUNDS" // "from:to:pods:resolution:then"
)

func init() {
	helpers["write"] = runWriteHelper
}

// roundsSpec is what a writing child writes: rounds [from, to) of testRounds, then does then.
type roundsSpec struct {
	from, to, pods int
	res            time.Duration
	then           string // "hold" (wait to be killed), "compact" (db.tsdb.Compact) or "close"
}

func (s roundsSpec) String() string {
	return fmt.Sprintf("%d:%d:%d:%s:%s", s.from, s.to, s.pods, s.res, s.then)
}

func parseRounds(v string) (roundsSpec, error) {
	var s roundsSpec
	parts := strings.Split(v, ":")
	if len(parts) != 5 {
		return s, fmt.Errorf("bad %s %q", helperRoundsEnv, v)
	}
	var err [4]error
	s.from, err[0] = strconv.Atoi(parts[0])
	s.to, err[1] = strconv.Atoi(parts[1])
	s.pods, err[2] = strconv.Atoi(parts[2])
	s.res, err[3] = time.ParseDuration(parts[3])
	s.then = parts[4]
	for _, e := range err {
		if e != nil {
			return s, e
		}
	}
	return s, nil
}

// testRounds returns scrape rounds [from, to) at res of node n1 with pods pods of one
// container each.
func testRounds(from, to, pods int, res time.Duration) []Batch {
	var bs []Batch
	for i := from; i < to; i++ {
		ts := at(time.Duration(i) * res)
		var cs []ContainerSample
		for p := range pods {
			cs = append(cs, ctr(fmt.Sprintf("ns/p%d", p), "a", ts, old, 1+float64(i)/10+float64(p), 1e5+float64(i)))
		}
		bs = append(bs, batch(node("n1", ts, 10+float64(i), 1e6+float64(i), cs...)))
	}
	return bs
}

// runWriteHelper is the "write" child: it opens the storage in dir, writes the rounds that
// helperRoundsEnv names, printing "committed <i>" after each Write returns, then prints
// "ready" and waits until its stdin closes (hold), compacts, or closes the storage. It is
// meant to be killed, by its parent or by a crash point.
func runWriteHelper(dir string) int {
	s, err := parseRounds(os.Getenv(helperRoundsEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	db, err := Open(Config{Dir: dir, Resolution: s.res}, nil, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i, b := range testRounds(s.from, s.to, s.pods, s.res) {
		if err := db.Write(context.Background(), b); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("committed %d\n", s.from+i)
	}
	switch s.then {
	case "compact":
		if err := db.tsdb.Compact(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case "close":
		if err := db.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	default:
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
	return 0
}

// writeAndKill runs the "write" child on dir for s (then hold) and kills it with SIGKILL
// once it has written every round: a crash with no snapshot and the WAL's last page
// unpadded.
func writeAndKill(t *testing.T, dir string, s roundsSpec) {
	t.Helper()
	s.then = "hold"
	cmd := helperCommand(t, "write", dir)
	cmd.Env = append(cmd.Env, helperRoundsEnv+"="+s.String())
	startReady(t, cmd)()
}

// count compares what db holds with what writing want to a fresh storage stores: written
// samples, how many of them db holds, and the samples db holds that were never written.
func count(t *testing.T, db *DB, want []Batch) (written, found, foreign int) {
	t.Helper()
	ref := storedAfter(t, want)
	got := readAll(t, db.tsdb)
	for series, ss := range ref {
		written += len(ss)
		have := map[sample]bool{}
		for _, s := range got[series] {
			have[s] = true
		}
		for _, s := range ss {
			if have[s] {
				found++
			}
		}
	}
	for series, ss := range got {
		for _, s := range ss {
			if !slices.Contains(ref[series], s) {
				foreign++
			}
		}
	}
	return written, found, foreign
}

// flip overwrites n bytes of the file at off (negative: from its end) with their complement.
func flip(t *testing.T, path string, off int64, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	if off < 0 || off+int64(n) > int64(len(b)) {
		t.Fatalf("%s: %d bytes, cannot damage %d at %d", path, len(b), n, off)
	}
	for i := off; i < off+int64(n); i++ {
		b[i] = ^b[i]
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// flipPart damages 16 bytes of the file at path, 1/div of the way into it.
func flipPart(t *testing.T, path string, div int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	flip(t, path, fi.Size()/div, 16)
}

// writeAndClose writes rounds to a new DB on cfg and closes it cleanly (a chunk
// snapshot), returning rounds.
func writeAndClose(t *testing.T, cfg Config, rounds []Batch) []Batch {
	t.Helper()
	db := newTestDB(t, cfg)
	write(t, db, rounds...)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return rounds
}

// only returns the one path matching pattern.
func only(t *testing.T, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) != 1 {
		t.Fatalf("%s: %v, %v; want one match", pattern, m, err)
	}
	return m[0]
}

// TestOpenRecoversDamagedParts damages each kind of TSDB file of a storage written by
// child processes and checks that Open succeeds, moves the damaged part into damaged/,
// names it in a warning and counts it, and that what is lost is within the stated bound.
func TestOpenRecoversDamagedParts(t *testing.T) {
	t.Parallel()
	const res = time.Minute
	tests := []struct {
		name string
		part string
		// build writes the storage and returns the rounds written.
		build func(t *testing.T, dir string) []Batch
		// damage damages it and returns the path damaged (relative to the TSDB directory)
		// and the loss bound in samples.
		damage func(t *testing.T, tsdbDir string, rounds []Batch) (string, int)
	}{
		{
			// Three sessions, each killed: segments 0, 1 and 2, all replayed (no snapshot).
			// The TSDB alone would truncate segment 1 at the damage and delete segment 2.
			// Bound: the rounds of segment 1 (session 2).
			name: "middle WAL segment",
			part: partWALSegment,
			build: func(t *testing.T, dir string) []Batch {
				for s := range 3 {
					writeAndKill(t, dir, roundsSpec{from: 40 * s, to: 40 * (s + 1), pods: 20, res: res})
				}
				return testRounds(0, 120, 20, res)
			},
			damage: func(t *testing.T, tsdbDir string, rounds []Batch) (string, int) {
				seg := filepath.Join(tsdbDir, "wal", "00000001")
				if _, err := os.Stat(filepath.Join(tsdbDir, "wal", "00000002")); err != nil {
					t.Fatalf("want a segment after the damaged one: %v", err)
				}
				flipPart(t, seg, 3)
				return "wal/00000001", samplesOf(rounds[40:80])
			},
		},
		{
			// The same after a clean Close: the snapshot covers segment 0, the replay
			// starts at segment 1.
			name: "middle WAL segment after a snapshot",
			part: partWALSegment,
			build: func(t *testing.T, dir string) []Batch {
				writeAndClose(t, Config{Dir: dir, Resolution: res}, testRounds(0, 40, 20, res))
				only(t, filepath.Join(dir, tsdbSubdir, "chunk_snapshot.000000.*"))
				for s := 1; s < 3; s++ {
					writeAndKill(t, dir, roundsSpec{from: 40 * s, to: 40 * (s + 1), pods: 20, res: res})
				}
				return testRounds(0, 120, 20, res)
			},
			damage: func(t *testing.T, tsdbDir string, rounds []Batch) (string, int) {
				seg := filepath.Join(tsdbDir, "wal", "00000001")
				flipPart(t, seg, 3)
				return "wal/00000001", samplesOf(rounds[40:80])
			},
		},
		{
			// A clean Close: head chunks cut every 120 samples, a chunk snapshot.
			// Bound: nothing, the WAL holds the head.
			name: "chunks_head file",
			part: partHeadChunks,
			build: func(t *testing.T, dir string) []Batch {
				return writeAndClose(t, Config{Dir: dir, Resolution: res}, testRounds(0, 150, 20, res))
			},
			damage: func(t *testing.T, tsdbDir string, _ []Batch) (string, int) {
				f := only(t, filepath.Join(tsdbDir, "chunks_head", "0*"))
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				// The file is preallocated: damage the middle of its chunks, not the zeros.
				end := bytes.LastIndexFunc(b, func(r rune) bool { return r != 0 })
				flip(t, f, int64(end/2), 16)
				rel, _ := filepath.Rel(tsdbDir, f)
				return rel, 0
			},
		},
		{
			name: "chunk snapshot",
			part: partChunkSnapshot,
			build: func(t *testing.T, dir string) []Batch {
				return writeAndClose(t, Config{Dir: dir, Resolution: res}, testRounds(0, 100, 20, res))
			},
			damage: func(t *testing.T, tsdbDir string, _ []Batch) (string, int) {
				snap := only(t, filepath.Join(tsdbDir, "chunk_snapshot.*"))
				f := only(t, filepath.Join(snap, "0*"))
				flipPart(t, f, 2)
				return filepath.Base(snap), 0
			},
		},
		{
			// 12 hours: the head compacted into blocks. The first block's index is damaged.
			// Bound: that block's samples.
			name: "block index",
			part: partBlock,
			build: func(t *testing.T, dir string) []Batch {
				rounds := testRounds(0, 720, 5, res)
				db := newTestDB(t, Config{Dir: dir, Resolution: res})
				write(t, db, rounds...)
				if err := db.tsdb.Compact(context.Background()); err != nil {
					t.Fatal(err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				return rounds
			},
			damage: func(t *testing.T, tsdbDir string, rounds []Batch) (string, int) {
				blocks, err := filepath.Glob(filepath.Join(tsdbDir, "01*", "index"))
				if err != nil || len(blocks) < 2 {
					t.Fatalf("blocks: %v, %v; want at least 2", blocks, err)
				}
				slices.Sort(blocks) // ULIDs sort by creation time: the oldest first
				blk := filepath.Dir(blocks[0])
				meta := readBlockMeta(t, blk)
				// The symbol table, right after the 5-byte header: its checksum fails.
				flip(t, blocks[0], 5, 16)
				n := 0
				for _, b := range rounds {
					if ms := b.Nodes[0].ScrapeTime.UnixMilli(); ms >= meta.MinTime && ms < meta.MaxTime {
						n += b.Len()
					}
				}
				return filepath.Base(blk), n
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			rounds := tc.build(t, dir)
			tsdbDir := filepath.Join(dir, tsdbSubdir)
			damaged, bound := tc.damage(t, tsdbDir, rounds)

			log, logs := captureLog(t)
			reg := prometheus.NewRegistry()
			start := time.Now()
			db, err := Open(Config{Dir: dir, Resolution: res}, log, reg)
			if err != nil {
				t.Fatalf("Open after damaging %s: %v", damaged, err)
			}
			opened := time.Since(start)
			t.Cleanup(func() { _ = db.Close() })
			if got := testutil.ToFloat64(db.m.recovered.WithLabelValues(tc.part)); got != 1 {
				t.Errorf("hindsight_storage_recovered_total{part=%q} = %v, want 1", tc.part, got)
			}
			if got := logs.find("level=WARN", "damaged", "part="+tc.part, damaged); len(got) != 1 {
				t.Errorf("want one warning naming %s, got %q", damaged, got)
			}
			if m, _ := filepath.Glob(filepath.Join(dir, damagedSubdir, "*", damaged)); len(m) != 1 {
				t.Errorf("%s not kept under %s/: %v", damaged, damagedSubdir, m)
			}
			written, found, foreign := count(t, db, rounds)
			lost := written - found
			t.Logf("%s: written %d samples, found %d, lost %d (bound %d), Open took %s", tc.name, written, found, lost, bound, opened.Round(time.Millisecond))
			if lost > bound {
				t.Errorf("lost %d samples of %d, want at most %d", lost, written, bound)
			}
			if foreign != 0 {
				t.Errorf("%d samples found that were never written", foreign)
			}

			// It writes again, and the next Open finds nothing damaged.
			next := testRounds(len(rounds), len(rounds)+1, 1, res)
			write(t, db, next...)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db2 := openTestDB(t, Config{Dir: dir, Resolution: res}, log)
			for _, p := range recoverParts {
				if got := testutil.ToFloat64(db2.m.recovered.WithLabelValues(p)); got != 0 {
					t.Errorf("second Open: recovered{part=%q} = %v, want 0", p, got)
				}
			}
			if _, f2, _ := count(t, db2, next); f2 != samplesOf(next) {
				t.Errorf("second Open: %d of the %d samples written after the recovery", f2, samplesOf(next))
			}
		})
	}
}

func samplesOf(bs []Batch) int {
	n := 0
	for _, b := range bs {
		n += b.Len()
	}
	return n
}

// blockMeta is the part of a block's meta.json the tests read.
type blockMeta struct{ MinTime, MaxTime int64 }

func readBlockMeta(t *testing.T, dir string) blockMeta {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		MinTime int64 `json:"minTime"`
		MaxTime int64 `json:"maxTime"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return blockMeta{m.MinTime, m.MaxTime}
}
