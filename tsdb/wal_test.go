package tsdb

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// lastWALSegment returns the path of the newest WAL segment of the storage in dir.
func lastWALSegment(t *testing.T, dir string) string {
	t.Helper()
	seg, err := newestWALSegment(dir)
	if err != nil {
		t.Fatal(err)
	}
	return seg
}

func newestWALSegment(dir string) (string, error) {
	walDir := filepath.Join(dir, tsdbSubdir, "wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return "", err
	}
	last, name := -1, ""
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && e.Type().IsRegular() && n > last {
			last, name = n, e.Name()
		}
	}
	if name == "" {
		return "", fmt.Errorf("no WAL segment in %s", walDir)
	}
	return filepath.Join(walDir, name), nil
}

// storedAfter returns every series and sample that a fresh storage holds after batches.
func storedAfter(t *testing.T, batches []Batch) map[string][]sample {
	t.Helper()
	db := newTestDB(t, Config{})
	write(t, db, batches...)
	return readAll(t, db.tsdb)
}

// TestWALDamageRepairedOnOpen crashes a writer (a child process, killed with SIGKILL, so
// that neither the WAL's last page is padded nor a memory snapshot written), damages the
// last WAL segment as a torn write or a bad disk would, and checks that Open repairs it
// with a warning, keeps every sample before the damage, and writes again.
func TestWALDamageRepairedOnOpen(t *testing.T) {
	t.Parallel()
	batches := helperBatches()
	tests := []struct {
		name   string
		damage func(t *testing.T, segment string)
		// want is what survives: the WAL record of a batch is all or nothing.
		want []Batch
	}{
		{
			// The last commit's record is cut short: the process died while writing it. The
			// reader pads a short segment with zeros, so the cut must take a non-zero byte:
			// cutting only the zero bytes a float can end with would damage nothing.
			name: "truncated mid-record",
			damage: func(t *testing.T, segment string) {
				b, err := os.ReadFile(segment)
				if err != nil {
					t.Fatal(err)
				}
				end := bytes.LastIndexFunc(b, func(r rune) bool { return r != 0 })
				if cut := len(b) - end; end < 0 || cut > 32 {
					t.Fatalf("%s: last non-zero byte at %d of %d, want it within the last record", segment, end, len(b))
				}
				if err := os.Truncate(segment, int64(end)); err != nil {
					t.Fatal(err)
				}
			},
			want: batches[:len(batches)-1],
		},
		{
			name: "garbage appended",
			damage: func(t *testing.T, segment string) {
				garbage := make([]byte, 100)
				rng := rand.New(rand.NewPCG(3, 4))
				for i := range garbage {
					garbage[i] = byte(1 + rng.IntN(255)) // no zero byte: zeros are page padding
				}
				f, err := os.OpenFile(segment, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.Write(garbage); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			},
			want: batches,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			_, kill := startHelper(t, dir)
			kill()
			segment := lastWALSegment(t, dir)
			tc.damage(t, segment)

			log, logs := captureLog(t)
			db, err := Open(Config{Dir: dir}, log, prometheus.NewRegistry())
			if err != nil {
				t.Fatalf("Open after damaging %s: %v", segment, err)
			}
			t.Cleanup(func() {
				if err := db.Close(); err != nil {
					t.Error(err)
				}
			})
			if got := logs.find("level=WARN", "WAL", "repair"); len(got) == 0 {
				t.Error("Open logged no warning about repairing the WAL")
			}
			if diff := cmp.Diff(storedAfter(t, tc.want), readAll(t, db.tsdb)); diff != "" {
				t.Errorf("stored series after the repair (-want +got):\n%s", diff)
			}

			// The repaired storage takes new samples, and keeps them over a restart.
			next := batch(node("n1", at(time.Hour), 100, 1e6))
			write(t, db, next)
			if err := db.StorageHealth(); err != nil {
				t.Errorf("StorageHealth() = %v, want nil", err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = newTestDB(t, Config{Dir: dir})
			if diff := cmp.Diff(storedAfter(t, append(slices.Clone(tc.want), next)), readAll(t, db.tsdb)); diff != "" {
				t.Errorf("stored series after a restart (-want +got):\n%s", diff)
			}
		})
	}
}
