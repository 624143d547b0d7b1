package tsdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// rejectingAppendable is an AppendableV2 whose appenders reject every sample for a reason
// that has nothing to do with the disk, and commit fine.
type rejectingAppendable struct{ storage.AppendableV2 }

func (r rejectingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return rejectingAppender{r.AppendableV2.AppenderV2(ctx)}
}

type rejectingAppender struct{ storage.AppenderV2 }

var errRejected = errors.New("rejected for testing")

func (rejectingAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AOptions) (storage.SeriesRef, error) {
	return 0, errRejected
}

// TestStorageHealth runs a DB through a full disk and back: Write keeps serving the current
// window, StorageHealth, hindsight_storage_writable and the log follow the last commit, and
// writing resumes by itself.
func TestStorageHealth(t *testing.T) {
	t.Parallel()
	log, logs := captureLog(t)
	db := openTestDB(t, Config{}, log)
	if err := db.StorageHealth(); err != nil {
		t.Errorf("StorageHealth() before any write = %v, want nil", err)
	}

	const (
		ok        = "ok"
		diskFull  = "disk full"     // commits fail
		rejecting = "rejecting all" // appends fail, commits succeed
	)
	steps := []struct {
		name         string
		mode         string
		wantWriteErr error
		wantHealth   []string // substrings of StorageHealth(); none for nil
		wantWarns    int      // "not writable" lines so far
		wantInfos    int      // "writable again" lines so far
	}{
		{name: "first write", mode: ok},
		{name: "second write", mode: ok},
		{name: "disk full", mode: diskFull, wantWriteErr: errDiskFull,
			wantHealth: []string{"storage not writable since " + rfc3339(at(30*time.Second)), "1 failed writes", errDiskFull.Error()}, wantWarns: 1},
		{name: "still full", mode: diskFull, wantWriteErr: errDiskFull,
			wantHealth: []string{"storage not writable since " + rfc3339(at(30*time.Second)), "2 failed writes"}, wantWarns: 1},
		{name: "space again", mode: ok, wantWarns: 1, wantInfos: 1},
		{name: "samples rejected, commit fine", mode: rejecting, wantWriteErr: errRejected, wantWarns: 1, wantInfos: 1},
		{name: "full again", mode: diskFull, wantWriteErr: errDiskFull,
			wantHealth: []string{"storage not writable since " + rfc3339(at(90*time.Second)), "1 failed writes"}, wantWarns: 2, wantInfos: 1},
		{name: "recovered again", mode: ok, wantWarns: 2, wantInfos: 2},
	}
	var wantStored []sample
	for i, st := range steps {
		now := at(time.Duration(i) * 15 * time.Second)
		db.now = func() time.Time { return now }
		switch st.mode {
		case ok:
			db.appendable = db.tsdb
			wantStored = append(wantStored, sample{now.UnixMilli(), 10 + float64(i)})
		case diskFull:
			db.appendable = failingAppendable{db.tsdb}
		case rejecting:
			db.appendable = rejectingAppendable{db.tsdb}
		}
		err := db.Write(context.Background(), batch(node("n1", now, 10+float64(i), 1e6)))
		if !errors.Is(err, st.wantWriteErr) || (err == nil) != (st.wantWriteErr == nil) {
			t.Errorf("%s: Write = %v, want %v", st.name, err, st.wantWriteErr)
		}

		checkStorageHealth(t, db, st.name, st.wantHealth)
		if health := db.StorageHealth(); len(st.wantHealth) > 0 {
			if !errors.Is(health, errDiskFull) {
				t.Errorf("%s: StorageHealth() = %v, want it to wrap %v", st.name, health, errDiskFull)
			}
		}
		if got := len(logs.find("level=WARN", "Storage is not writable", errDiskFull.Error())); got != st.wantWarns {
			t.Errorf("%s: %d warnings logged, want %d", st.name, got, st.wantWarns)
		}
		if got := len(logs.find("level=INFO", "Storage is writable again")); got != st.wantInfos {
			t.Errorf("%s: %d recoveries logged, want %d", st.name, got, st.wantInfos)
		}

		// The current window is served whatever happens to the disk.
		if i > 0 {
			want := []NodeUsage{{Node: "n1", Usage: u(now, 15*time.Second, 66_666_666, 1e6)}}
			if diff := cmp.Diff(want, db.NodeUsage([]string{"n1"})); diff != "" {
				t.Errorf("%s: NodeUsage (-want +got):\n%s", st.name, diff)
			}
		}
	}
	if got := logs.find("Storage is writable again", "unwritableFor=30s", "failedWrites=2"); len(got) != 1 {
		t.Errorf("recovery log lines with the outage's length and failed writes: %q, want one", got)
	}
	// History has a gap where the disk was full; it goes on after.
	got := readAll(t, db.tsdb)[`{__name__="node_cpu_usage_seconds_total", node="n1"}`]
	if diff := cmp.Diff(wantStored, got); diff != "" {
		t.Errorf("stored node CPU (-want +got):\n%s", diff)
	}
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func TestRoundLossy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		l    roundLoss
		want bool
	}{
		{roundLoss{}, false},
		{roundLoss{outOfBounds: 10, samples: 1000}, false}, // 1 %: not more
		{roundLoss{outOfBounds: 6, outOfOrder: 5, samples: 1000}, true},
		{roundLoss{outOfOrder: 1, samples: 99}, true},
		{roundLoss{outOfBounds: 1, samples: 100}, false},
	} {
		if got := tc.l.lossy(); got != tc.want {
			t.Errorf("%+v.lossy() = %v, want %v", tc.l, got, tc.want)
		}
	}
}

// TestStorageHealthRefusedSamples makes the TSDB refuse most of each round as out of
// bounds, with a node two hours ahead whose scrape carries no scrape time (so that Write's
// clock check cannot drop it): StorageHealth and hindsight_storage_writable fail from the
// third such round, with the counts, and recover by themselves when the rounds' samples
// are in bounds again.
func TestStorageHealthRefusedSamples(t *testing.T) {
	t.Parallel()
	log, logs := captureLog(t)
	db := openTestDB(t, Config{}, log)
	const healthyNodes = 9
	steps := []struct {
		name       string
		time       time.Time // of the healthy nodes' samples
		ahead      bool      // the node two hours ahead is in the round
		wantHealth []string  // substrings of StorageHealth(); none for nil
		wantWarns  int       // so far
		wantInfos  int
	}{
		{name: "first round, one commit", time: at(0), ahead: true},
		{name: "out of bounds once", time: at(15 * time.Second), ahead: true},
		{name: "out of bounds twice", time: at(30 * time.Second), ahead: true},
		{name: "out of bounds thrice", time: at(45 * time.Second), ahead: true, wantWarns: 1,
			wantHealth: []string{"since " + rfc3339(at(15*time.Second)), "3 rounds in a row", "last round 18 of 20 samples refused, 18 out of bounds"}},
		{name: "still", time: at(60 * time.Second), ahead: true, wantWarns: 1,
			wantHealth: []string{"since " + rfc3339(at(15*time.Second)), "4 rounds in a row"}},
		{name: "in bounds again", time: at(time.Hour + 30*time.Minute), wantWarns: 1, wantInfos: 1},
		{name: "and stays", time: at(time.Hour + 30*time.Minute + 15*time.Second), wantWarns: 1, wantInfos: 1},
	}
	for i, st := range steps {
		now := st.time
		db.now = func() time.Time { return now }
		var b Batch
		for n := range healthyNodes {
			b.Nodes = append(b.Nodes, node(fmt.Sprintf("n%d", n), st.time, float64(1+i), 1e6))
		}
		if st.ahead {
			ahead := node("ahead", at(2*time.Hour+time.Duration(i)*15*time.Second), float64(1+i), 1e6)
			ahead.ScrapeTime = time.Time{}
			b.Nodes = append(b.Nodes, ahead)
		}
		if err := db.Write(context.Background(), b); err != nil {
			t.Fatalf("%s: Write = %v", st.name, err)
		}
		checkStorageHealth(t, db, st.name, st.wantHealth)
		if got := len(logs.find("level=WARN", "refuses many samples", "refused=18", "samples=20", "outOfBounds=18")); got != st.wantWarns {
			t.Errorf("%s: %d warnings logged, want %d", st.name, got, st.wantWarns)
		}
		if got := len(logs.find("level=INFO", "takes the rounds' samples again", "lossyRounds=4")); got != st.wantInfos {
			t.Errorf("%s: %d recoveries logged, want %d", st.name, got, st.wantInfos)
		}
	}
}

// checkStorageHealth asserts StorageHealth and hindsight_storage_writable: healthy when
// wantHealth is empty, else failing with an error that contains each of wantHealth.
func checkStorageHealth(t *testing.T, db *DB, step string, wantHealth []string) {
	t.Helper()
	health := db.StorageHealth()
	writable := testutil.ToFloat64(db.m.writable)
	if len(wantHealth) == 0 {
		if health != nil || writable != 1 {
			t.Errorf("%s: StorageHealth() = %v, hindsight_storage_writable = %v; want nil, 1", step, health, writable)
		}
		return
	}
	if health == nil || writable != 0 {
		t.Fatalf("%s: StorageHealth() = %v, hindsight_storage_writable = %v; want an error, 0", step, health, writable)
	}
	for _, want := range wantHealth {
		if !strings.Contains(health.Error(), want) {
			t.Errorf("%s: StorageHealth() = %q, want it to contain %q", step, health, want)
		}
	}
}
