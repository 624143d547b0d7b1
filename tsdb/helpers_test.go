package tsdb

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
)

// t0 is the time of the first scrape in tests, at a whole millisecond as the kubelet's
// timestamps are.
var t0 = time.UnixMilli(1_700_000_000_000)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// slogt returns a logger that writes to t.Log.
func slogt(t testing.TB) *slog.Logger { return testlog.New(t) }

type tbWriter struct{ t testing.TB }

// logCapture keeps what a logger writes, one text line per record, and passes it on to
// t.Log.
type logCapture struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

// captureLog returns a logger whose records the returned logCapture keeps.
func captureLog(t testing.TB) (*slog.Logger, *logCapture) {
	c := &logCapture{t: t}
	return slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})), c
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.lines = append(c.lines, strings.TrimSuffix(string(p), "\n"))
	c.mu.Unlock()
	c.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// find returns the lines that contain every one of subs.
func (c *logCapture) find(subs ...string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newTestDB opens a DB in a temporary directory, with a resolution of 15s unless cfg
// says otherwise, and closes it (after checking the index's invariants) when the test
// ends.
func newTestDB(t testing.TB, cfg Config) *DB {
	t.Helper()
	return openTestDB(t, cfg, slogt(t))
}

// openTestDB is newTestDB with its own logger (captureLog's, say).
func openTestDB(t testing.TB, cfg Config, log *slog.Logger) *DB {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Resolution == 0 {
		cfg.Resolution = 15 * time.Second
	}
	db, err := Open(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkInvariants(t, db)
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// write writes each batch and fails the test on an error.
func write(t testing.TB, db *DB, batches ...Batch) {
	t.Helper()
	for i, b := range batches {
		if err := db.Write(context.Background(), b); err != nil {
			t.Fatalf("Write batch %d: %v", i, err)
		}
	}
}

// checkInvariants checks what must hold of the index after any sequence of writes.
func checkInvariants(t testing.TB, db *DB) {
	t.Helper()
	db.mu.RLock()
	defer db.mu.RUnlock()
	x := db.idx
	nodePoints, containerPoints := 0, 0
	for name, st := range x.nodes {
		if st.hasPrev {
			nodePoints++
			if !st.hasLast || st.prev.ts >= st.last.ts {
				t.Errorf("node %s: previous point at %d not before last at %d", name, st.prev.ts, st.last.ts)
			}
		}
	}
	for ref, p := range x.pods {
		if x.nodes[p.node] == nil {
			t.Errorf("pod %v: owned by unknown node %q", ref, p.node)
		} else if !slices.Contains(x.nodes[p.node].pods, ref) {
			t.Errorf("pod %v: not listed by its node %q", ref, p.node)
		}
		if len(p.containers) == 0 {
			t.Errorf("pod %v: no containers", ref)
		}
		for i, c := range p.containers {
			if i > 0 && p.containers[i-1].name >= c.name {
				t.Errorf("pod %v: containers not sorted and unique: %q, %q", ref, p.containers[i-1].name, c.name)
			}
			if c.hasPrev {
				containerPoints++
				if c.prev.ts >= c.last.ts {
					t.Errorf("pod %v container %s: previous point at %d not before last at %d", ref, c.name, c.prev.ts, c.last.ts)
				}
			}
		}
	}
	if nodePoints != x.nodePoints || containerPoints != x.containerPoints {
		t.Errorf("points: counted %d nodes, %d containers; index says %d, %d", nodePoints, containerPoints, x.nodePoints, x.containerPoints)
	}
	if g := testutil.ToFloat64(db.m.points.WithLabelValues("node")); int(g) != x.nodePoints {
		t.Errorf("hindsight_storage_points{type=node} = %v, want %d", g, x.nodePoints)
	}
	if g := testutil.ToFloat64(db.m.points.WithLabelValues("container")); int(g) != x.containerPoints {
		t.Errorf("hindsight_storage_points{type=container} = %v, want %d", g, x.containerPoints)
	}
}

// Batch builders.

// cpuMem returns a reading of CPU and memory.
func cpuMem(ts time.Time, cpuSeconds, memBytes float64) Sample {
	s := Sample{Time: ts}
	s.Set(ResourceCPU, cpuSeconds)
	s.Set(ResourceMemory, memBytes)
	return s
}

// withSwap returns s with a swap reading.
func withSwap(s Sample, swapBytes float64) Sample {
	s.Set(ResourceSwap, swapBytes)
	return s
}

func batch(nodes ...NodeScrape) Batch { return Batch{Nodes: nodes} }

// node returns a scrape of a node with its own reading and the given containers.
func node(name string, ts time.Time, cpuSeconds, memBytes float64, cs ...ContainerSample) NodeScrape {
	return NodeScrape{
		Node:       name,
		ScrapeTime: ts,
		NodeSample: cpuMem(ts, cpuSeconds, memBytes),
		HasNode:    true,
		Containers: cs,
	}
}

// pods returns a scrape of a node with the given containers and a node reading that
// never has a rejected window: constant CPU at the newest container's time.
func pods(name string, cs ...ContainerSample) NodeScrape {
	ts := t0
	for _, c := range cs {
		if c.Time.After(ts) {
			ts = c.Time
		}
	}
	return node(name, ts, 1, 1, cs...)
}

// ctr returns a container reading of pod ns/pod.
func ctr(pod, name string, ts, start time.Time, cpuSeconds, memBytes float64) ContainerSample {
	ns, p, _ := strings.Cut(pod, "/")
	return ContainerSample{
		Namespace: ns, Pod: p, Container: name, UID: "uid-" + p,
		StartTime: start,
		Sample:    cpuMem(ts, cpuSeconds, memBytes),
	}
}

// ref parses "ns/name".
func ref(s string) PodRef {
	ns, name, _ := strings.Cut(s, "/")
	return PodRef{Namespace: ns, Name: name}
}
