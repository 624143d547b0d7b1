package tsdb

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// freshRounds returns four scrape rounds 15s apart, the last at end, of three nodes with
// what the index's rules care about: cached samples returned twice, a restarted
// container, a fresh one, a pod dropped for a round (an incomplete container) and a pod
// that moves to another node. refs and nodes name all of them.
func freshRounds(end time.Time) (rounds []Batch, nodes []string, refs []PodRef) {
	ts := func(i int) time.Time { return end.Add(time.Duration(i-3) * 15 * time.Second) }
	for i := range 4 {
		f := float64(i)
		n1 := []ContainerSample{
			ctr("a/web", "app", ts(i), old, 10+3*f, 50e6), ctr("a/web", "proxy", ts(i).Add(-time.Second), old, 1+f, 10e6),
		}
		n2 := []ContainerSample{ctr("b/db", "pg", ts(i), old, 100+f*f, 300e6+f)}
		n3 := []ContainerSample{ctr("b/cache", "redis", ts(i), old, 5+0.5*f, 20e6)}
		// a/moving runs on n1, then on n3.
		if i < 2 {
			n1 = append(n1, ctr("a/moving", "m", ts(i), old, 1+f, 1e6))
		} else {
			n3 = append(n3, ctr("a/moving", "m", ts(i), ts(1), f, 1e6))
		}
		// a/job restarts in round 2.
		start := old
		if i >= 2 {
			start = ts(2).Add(-5 * time.Second)
		}
		n1 = append(n1, ctr("a/job", "run", ts(i), start, 2+f-2*float64(min(i, 2)), 5e6))
		// b/new starts 12s before round 2.
		if i >= 2 {
			n2 = append(n2, ctr("b/new", "c", ts(i), ts(2).Add(-12*time.Second), 0.3*f, 2e6))
		}
		// b/flaky has an incomplete container in round 2.
		cpu := 7 + f
		if i == 2 {
			cpu = 0
		}
		n2 = append(n2, ctr("b/flaky", "x", ts(i), old, cpu, 3e6), ctr("b/flaky", "y", ts(i), old, 1+f, 3e6))
		b := batch(node("n1", ts(i), 1000+10*f, 4e9, n1...), node("n2", ts(i), 2000+20*f, 8e9, n2...), node("n3", ts(i), 500+f, 2e9, n3...))
		if i == 3 {
			// n2's kubelet returns its cached round-2 samples.
			b.Nodes[1] = rounds[2].Nodes[1]
		}
		rounds = append(rounds, b)
	}
	nodes = []string{"n1", "n2", "n3"}
	for _, r := range []string{"a/web", "a/moving", "a/job", "b/db", "b/cache", "b/new", "b/flaky"} {
		refs = append(refs, ref(r))
	}
	return rounds, nodes, refs
}

// headMaxT is the TSDB head's newest sample time.
func headMaxT(db *DB) int64 { return db.tsdb.Head().MaxTime() }

// TestWindowSnapshotExact checks that a restart from the window snapshot leaves the index
// exactly as it was: the windows after the next round are those of a store that never
// restarted.
func TestWindowSnapshotExact(t *testing.T) {
	t.Parallel()
	// Whole seconds, so that start times survive their round trip through float seconds.
	end := time.Now().Truncate(time.Second).Add(-15 * time.Second)
	rounds, nodes, refs := freshRounds(end)
	next := rounds[3]
	advance(&next, 15*time.Second)

	cfg := Config{Dir: t.TempDir()}
	db := newTestDB(t, Config{})
	restarted := openTestDB(t, cfg, slogt(t))
	write(t, db, rounds...)
	write(t, restarted, rounds...)
	wantNodes, wantPods := restarted.NodeUsage(nodes), restarted.PodUsage(refs)
	if len(wantNodes) != 3 || len(wantPods) < 4 {
		t.Fatalf("before restart: %d nodes and %d pods served, want 3 and at least 4", len(wantNodes), len(wantPods))
	}
	if err := restarted.Close(); err != nil {
		t.Fatal(err)
	}
	restarted = reopenFrom(t, Config{Dir: cfg.Dir, Resolution: 15 * time.Second}, restoredFromSnapshot)
	if diff := cmp.Diff(wantNodes, restarted.NodeUsage(nodes)); diff != "" {
		t.Errorf("NodeUsage after restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantPods, restarted.PodUsage(refs)); diff != "" {
		t.Errorf("PodUsage after restart (-before +after):\n%s", diff)
	}
	write(t, db, next)
	write(t, restarted, next)
	if diff := cmp.Diff(db.NodeUsage(nodes), restarted.NodeUsage(nodes)); diff != "" {
		t.Errorf("NodeUsage after the next round (-never restarted +restarted):\n%s", diff)
	}
	if diff := cmp.Diff(db.PodUsage(refs), restarted.PodUsage(refs)); diff != "" {
		t.Errorf("PodUsage after the next round (-never restarted +restarted):\n%s", diff)
	}
	if want, got := encodeWindow(db.idx, headMaxT(db)), encodeWindow(restarted.idx, headMaxT(restarted)); !bytes.Equal(want, got) {
		t.Errorf("index after the next round differs from the one of a store that never restarted:\n got %q\nwant %q", got, want)
	}
}

// TestWindowSnapshotAfterFailedCommit checks that a round whose commit failed (its points
// are in the index, not in the TSDB) is still served after a restart from the snapshot.
func TestWindowSnapshotAfterFailedCommit(t *testing.T) {
	t.Parallel()
	end := time.Now().Truncate(time.Second)
	rounds, nodes, refs := freshRounds(end)
	cfg := Config{Dir: t.TempDir(), Resolution: 15 * time.Second}
	db := openTestDB(t, cfg, slogt(t))
	write(t, db, rounds[:3]...)
	db.appendable = failingAppendable{db.tsdb}
	if err := db.Write(t.Context(), rounds[3]); err == nil {
		t.Fatal("Write with a failing commit succeeded")
	}
	wantNodes, wantPods := db.NodeUsage(nodes), db.PodUsage(refs)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = reopenFrom(t, cfg, restoredFromSnapshot)
	if diff := cmp.Diff(wantNodes, db.NodeUsage(nodes)); diff != "" {
		t.Errorf("NodeUsage after restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantPods, db.PodUsage(refs)); diff != "" {
		t.Errorf("PodUsage after restart (-before +after):\n%s", diff)
	}
}

// TestWindowSnapshotNotUsed checks that a snapshot that is stale, damaged or of another
// resolution is not used: Open says why and rebuilds the window from the TSDB, as it does
// without a snapshot.
func TestWindowSnapshotNotUsed(t *testing.T) {
	t.Parallel()
	flip := func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }
	tests := []struct {
		name string
		// newer writes one more round after a restart, so that the snapshot kept from
		// before it is older than the stored samples.
		newer      bool
		damage     func([]byte) []byte
		resolution time.Duration
		why        string
	}{
		{name: "older than the samples", newer: true, why: "older than the stored samples"},
		{name: "flipped bit", damage: flip, why: "checksum"},
		{name: "truncated", damage: func(b []byte) []byte { return b[:len(b)/2] }, why: "checksum"},
		{name: "cut before its checksum", damage: func(b []byte) []byte { return b[:len(windowSnapshotMagic)+2] }, why: "no snapshot header"},
		{name: "empty", damage: func([]byte) []byte { return nil }, why: "no snapshot header"},
		{name: "other resolution", resolution: 30 * time.Second, why: "written at resolution 15s, now 30s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			end := time.Now().Truncate(time.Second).Add(-15 * time.Second)
			rounds, nodes, refs := freshRounds(end)
			cfg := Config{Dir: t.TempDir(), Resolution: 15 * time.Second}
			path := filepath.Join(cfg.Dir, windowSnapshotFile)
			db, err := Open(cfg, slogt(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			write(t, db, rounds...)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			snap, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if tt.newer {
				if db, err = Open(cfg, slogt(t), nil); err != nil {
					t.Fatal(err)
				}
				next := rounds[3]
				advance(&next, 15*time.Second)
				write(t, db, next)
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if tt.damage != nil {
				snap = tt.damage(snap)
			}
			if tt.resolution != 0 {
				cfg.Resolution = tt.resolution
			}

			// What a start without a snapshot serves, from a copy of the directory.
			rebuilt := Config{Dir: t.TempDir(), Resolution: cfg.Resolution}
			if err := os.CopyFS(rebuilt.Dir, os.DirFS(cfg.Dir)); err != nil {
				t.Fatal(err)
			}
			ref := reopenFrom(t, rebuilt, restoredFromTSDB)
			wantNodes, wantPods := ref.NodeUsage(nodes), ref.PodUsage(refs)
			if len(wantNodes) == 0 || len(wantPods) == 0 {
				t.Fatalf("rebuilt from the TSDB: %d nodes and %d pods served, want some", len(wantNodes), len(wantPods))
			}

			if err := os.WriteFile(path, snap, 0o666); err != nil {
				t.Fatal(err)
			}
			log, lines := captureLog(t)
			db = openTestDB(t, cfg, log)
			if got := lines.find("Not using the window snapshot", tt.why); len(got) != 1 {
				t.Errorf("Open logged %q, want one line saying why the snapshot is not used (%q)", lines.find("snapshot"), tt.why)
			}
			if got := lines.find("Opened storage", "restoredFrom="+restoredFromTSDB); len(got) != 1 {
				t.Errorf("Open logged %q, want restoredFrom=%s", lines.find("Opened storage"), restoredFromTSDB)
			}
			if _, err := os.Stat(path); err == nil {
				t.Errorf("%s not removed by Open", path)
			}
			if diff := cmp.Diff(wantNodes, db.NodeUsage(nodes)); diff != "" {
				t.Errorf("NodeUsage (-without a snapshot +with this one):\n%s", diff)
			}
			if diff := cmp.Diff(wantPods, db.PodUsage(refs)); diff != "" {
				t.Errorf("PodUsage (-without a snapshot +with this one):\n%s", diff)
			}
		})
	}
}

// TestWindowSnapshotTmpRemoved checks that a temporary file left by a crash while Close
// wrote the snapshot is removed by the next Open and not used.
func TestWindowSnapshotTmpRemoved(t *testing.T) {
	t.Parallel()
	cfg := Config{Dir: t.TempDir(), Resolution: 15 * time.Second}
	rounds, _, _ := freshRounds(time.Now().Truncate(time.Second))
	db := openTestDB(t, cfg, slogt(t))
	write(t, db, rounds...)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.Dir, windowSnapshotFile)
	if err := os.Rename(path, path+".tmp"); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, cfg, slogt(t))
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Errorf("%s.tmp not removed by Open", path)
	}
	if db.idx.nodePoints == 0 {
		t.Error("no node restored from the TSDB")
	}
}

// withChecksum appends the checksum decodeWindow expects to body.
func withChecksum(body []byte) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli))
}

// FuzzDecodeWindow: decodeWindow never panics nor allocates beyond its input, and what it
// accepts encodes to bytes that decode to the same again (not always to the input: a
// varint may be written in more bytes than needed). The fuzzer writes the body; the
// checksum is added, so that the decoder's checks after it are reached.
func FuzzDecodeWindow(f *testing.F) {
	rounds, _, _ := freshRounds(t0)
	x := newIndex(slog.New(slog.DiscardHandler), 15*time.Second)
	for _, r := range rounds {
		x.apply(&r, t0, func(string) {})
		b := encodeWindow(x, r.Nodes[0].ScrapeTime.UnixMilli())
		f.Add(b[:len(b)-4])
	}
	f.Add([]byte(windowSnapshotMagic))
	f.Fuzz(func(t *testing.T, body []byte) {
		b := withChecksum(body)
		s, err := decodeWindow(b)
		if err != nil {
			return
		}
		enc := encodeWindow(&index{resolution: s.resolution, nodes: s.nodes, pods: s.pods}, s.headMaxT)
		s2, err := decodeWindow(enc)
		if err != nil {
			t.Fatalf("decode what was encoded from %q: %v", b, err)
		}
		if got := encodeWindow(&index{resolution: s2.resolution, nodes: s2.nodes, pods: s2.pods}, s2.headMaxT); !bytes.Equal(got, enc) {
			t.Errorf("decoded and encoded again:\n got %q\nwant %q", got, enc)
		}
	})
}
