package tsdb

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hindsight-metrics/hindsight/internal/crashpoint"
	"github.com/hindsight-metrics/hindsight/internal/crashpoint/crashtest"
)

// TestCrashPoints kills a writing child process (this package's test binary built with
// -tags crashpoints) at each of the storage's crash points, then opens the storage and
// counts the samples: every round whose Write returned is there, and of the round in flight
// either all (the commit had reached the WAL) or none. Each kill must land where it is
// meant to: the test checks the files the moment leaves behind.
func TestCrashPoints(t *testing.T) {
	t.Parallel()
	bin := crashtest.Binary(t)
	const res = time.Minute
	tests := []struct {
		point string // HINDSIGHT_CRASH_AT
		spec  roundsSpec
		// wantRounds is how many rounds the storage must hold after the crash, given how
		// many Writes returned (committed); -1 for all written.
		wantRounds func(committed int) int
		// landed checks the storage as the kill left it.
		landed func(t *testing.T, tsdbDir string)
		// inFlight: the kill comes from a background compaction while the next round is
		// written, so that round's commit may have reached the WAL before it, or not: the
		// storage holds all of it or none.
		inFlight bool
	}{
		{
			point:      crashpoint.CommitBefore + ":10",
			spec:       roundsSpec{to: 20, pods: 20, res: res, then: "hold"},
			wantRounds: func(committed int) int { return committed }, // the 10th never reached the WAL
			landed:     func(*testing.T, string) {},
		},
		{
			point:      crashpoint.CommitAfter + ":10",
			spec:       roundsSpec{to: 20, pods: 20, res: res, then: "hold"},
			wantRounds: func(committed int) int { return committed + 1 }, // the 10th is in the WAL
			landed:     func(*testing.T, string) {},
		},
		{
			// 12 hours of rounds: the head compacts into 2-hour blocks, in the background
			// after a commit or in the child's Compact.
			point:      crashpoint.CompactHeadWritten,
			spec:       roundsSpec{to: 720, pods: 5, res: res, then: "compact"},
			wantRounds: func(committed int) int { return committed },
			inFlight:   true,
			landed: func(t *testing.T, tsdbDir string) {
				if n := len(blockMetas(t, tsdbDir)); n != 1 {
					t.Errorf("%d blocks on disk at the kill, want the 1 just written", n)
				}
			},
		},
		{
			// 1000 minutes: 2-hour blocks, three of which (a whole 6-hour range, before
			// the newest block) are compacted into one, whose parents are still on disk at
			// the kill. The compaction may run in the background while rounds are written.
			point:      crashpoint.CompactBlocksWritten,
			spec:       roundsSpec{to: 1000, pods: 5, res: res, then: "compact"},
			wantRounds: func(committed int) int { return committed },
			inFlight:   true,
			landed: func(t *testing.T, tsdbDir string) {
				metas := blockMetas(t, tsdbDir)
				overlap := false
				for _, m := range metas {
					if m.Compaction.Level >= 2 {
						for _, p := range m.Compaction.Parents {
							if _, ok := metas[p.ULID]; ok {
								overlap = true
							}
						}
					}
				}
				if !overlap {
					t.Errorf("no compacted block beside its parents at the kill: %+v", metas)
				}
			},
		},
		{
			point:      crashpoint.CloseSnapshot,
			spec:       roundsSpec{to: 100, pods: 20, res: res, then: "close"},
			wantRounds: func(int) int { return 100 },
			landed: func(t *testing.T, tsdbDir string) {
				if m, _ := filepath.Glob(filepath.Join(tsdbDir, "chunk_snapshot.*.tmp")); len(m) != 1 {
					t.Errorf("no snapshot being written at the kill: %v", m)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.point, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cmd := exec.Command(bin, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=write", helperDirEnv+"="+dir,
				helperRoundsEnv+"="+tc.spec.String(), crashtest.Env(tc.point))
			cmd.Stderr = tbWriter{t}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			committed := 0
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "committed ") {
					committed++
				}
			}
			if err := cmd.Wait(); !crashtest.Killed(err) {
				t.Fatalf("child not killed at %s: %v (after %d rounds)", tc.point, err, committed)
			}
			tsdbDir := filepath.Join(dir, tsdbSubdir)
			tc.landed(t, tsdbDir)

			db, err := Open(Config{Dir: dir, Resolution: res}, slogt(t), prometheus.NewRegistry())
			if err != nil {
				t.Fatalf("Open after the crash at %s: %v", tc.point, err)
			}
			t.Cleanup(func() { _ = db.Close() })
			rounds := testRounds(0, tc.spec.to, tc.spec.pods, res)
			want := tc.wantRounds(committed)
			written, found, foreign := count(t, db, rounds[:min(committed+1, len(rounds))])
			wantFound := samplesOf(rounds[:want])
			t.Logf("%s: %d rounds returned, %d samples written (with the round in flight), found %d, lost %d; want found %d (lost ≤ %d)",
				tc.point, committed, written, found, written-found, wantFound, written-wantFound)
			if tc.inFlight && found != wantFound && want < len(rounds) && found == samplesOf(rounds[:want+1]) {
				t.Logf("the round in flight had reached the WAL: all of it is there")
				wantFound = found
			}
			if found != wantFound || foreign != 0 {
				t.Errorf("found %d samples (%d never written), want %d: the %d rounds whose Write returned%s",
					found, foreign, wantFound, committed, map[bool]string{true: " and the one in flight", false: ""}[want > committed])
			}
			checkInvariants(t, db)
		})
	}
}

// promMeta is the part of a block's meta.json the crash tests read.
type promMeta struct {
	ULID       string `json:"ulid"`
	MinTime    int64  `json:"minTime"`
	MaxTime    int64  `json:"maxTime"`
	Compaction struct {
		Level   int `json:"level"`
		Parents []struct {
			ULID string `json:"ulid"`
		} `json:"parents"`
	} `json:"compaction"`
}

// blockMetas returns the metas of the blocks in tsdbDir by ULID.
func blockMetas(t *testing.T, tsdbDir string) map[string]promMeta {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(tsdbDir, "*", "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]promMeta{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m promMeta
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[m.ULID] = m
	}
	return out
}
