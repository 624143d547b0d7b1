package tsdb

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// u builds an expected Usage.
func u(ts time.Time, window time.Duration, cpuNanoCores, memBytes uint64) Usage {
	return Usage{Timestamp: ts, Window: window, CPUNanoCores: cpuNanoCores, MemoryBytes: memBytes}
}

// podU builds an expected PodUsage; its timestamp and window are given explicitly.
func podU(pod string, ts time.Time, window time.Duration, cs ...ContainerUsage) PodUsage {
	return PodUsage{PodRef: ref(pod), Timestamp: ts, Window: window, Containers: cs}
}

func cu(name string, usage Usage) ContainerUsage { return ContainerUsage{Name: name, Usage: usage} }

// old is the start time of containers that have been running for a long time.
var old = at(-time.Hour)

// TestWindowRules checks the current window against metrics-server v0.9.0's rules, one
// scenario per case: the batches are written in order, then the window is read.
func TestWindowRules(t *testing.T) {
	t.Parallel()
	const p = "ns/p"
	tests := []struct {
		name       string
		resolution time.Duration // 0: 15s
		batches    []Batch
		wantNodes  []NodeUsage    // of node n1
		wantPods   []PodUsage     // of pod ns/p
		rejected   map[string]int // hindsight_storage_rejected_points_total by reason, where checked
	}{
		// Nodes.
		{
			name: "node: window between the last two points",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(15*time.Second), 13, 200e6)),
			},
			wantNodes: []NodeUsage{{Node: "n1", Usage: u(at(15*time.Second), 15*time.Second, 200_000_000, 200e6)}},
		},
		{
			name: "node: one point has no window",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
			},
		},
		{
			name: "node: the same sample twice keeps the window",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(15*time.Second), 13, 200e6)),
				batch(node("n1", at(15*time.Second), 13, 200e6)),
			},
			wantNodes: []NodeUsage{{Node: "n1", Usage: u(at(15*time.Second), 15*time.Second, 200_000_000, 200e6)}},
		},
		{
			name: "node: the first sample twice gives no window",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", t0, 10, 100e6)),
			},
		},
		{
			name: "node: an older sample than the last replaces it, the previous one stays",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(15*time.Second), 13, 200e6)),
				batch(node("n1", at(5*time.Second), 11, 300e6)),
			},
			wantNodes: []NodeUsage{{Node: "n1", Usage: u(at(5*time.Second), 5*time.Second, 200_000_000, 300e6)}},
		},
		{
			name: "node: a sample older than the previous one drops the window",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(15*time.Second), 13, 200e6)),
				batch(node("n1", at(-5*time.Second), 9, 300e6)),
			},
			rejected: map[string]int{rejectOlderThanPrev: 1},
		},
		{
			name: "node: a decreasing counter is rejected",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(15*time.Second), 5, 200e6)),
			},
			rejected: map[string]int{rejectDecreasingCPU: 1},
		},
		{
			name: "node: after a decreasing counter the next interval has a window",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(15*time.Second), 5, 200e6)),
				batch(node("n1", at(30*time.Second), 8, 300e6)),
			},
			wantNodes: []NodeUsage{{Node: "n1", Usage: u(at(30*time.Second), 15*time.Second, 200_000_000, 300e6)}},
		},
		{
			name: "node: zero CPU drops the point and forgets the node",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(15*time.Second), 0, 200e6)),
				batch(node("n1", at(30*time.Second), 13, 300e6)),
			},
			rejected: map[string]int{rejectIncomplete: 1},
		},
		{
			name: "node: zero memory drops the point",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(15*time.Second), 13, 0)),
			},
			rejected: map[string]int{rejectIncomplete: 1},
		},
		{
			name: "node: zero timestamp drops the point",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", time.Time{}, 13, 100e6)),
			},
			rejected: map[string]int{rejectIncomplete: 1},
		},
		{
			name: "node: a scrape without the node's own sample forgets its point",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(15*time.Second), 13, 200e6)),
				batch(NodeScrape{Node: "n1", ScrapeTime: at(30 * time.Second)}),
				batch(node("n1", at(45*time.Second), 16, 200e6)),
			},
			rejected: map[string]int{rejectIncomplete: 1},
		},
		{
			name: "node: CPU is truncated to whole nanocores",
			batches: []Batch{
				batch(node("n1", t0, 10, 100e6)),
				batch(node("n1", at(45*time.Second), 11, 100e6)),
			},
			wantNodes: []NodeUsage{{Node: "n1", Usage: u(at(45*time.Second), 45*time.Second, 22_222_222, 100e6)}},
		},

		// Containers and pods.
		{
			name: "pod: window between the last two points",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), old, 2.5, 20e6))),
			},
			wantPods: []PodUsage{podU(p, at(15*time.Second), 15*time.Second,
				cu("c", u(at(15*time.Second), 15*time.Second, 100_000_000, 20e6)))},
		},
		{
			name: "pod: the same container sample twice keeps the window",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), old, 2.5, 20e6))),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), old, 2.5, 20e6))),
			},
			wantPods: []PodUsage{podU(p, at(15*time.Second), 15*time.Second,
				cu("c", u(at(15*time.Second), 15*time.Second, 100_000_000, 20e6)))},
		},
		{
			name: "pod: a restarted container has no window for one interval",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, old, 100, 10e6))),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), at(8*time.Second), 0.25, 20e6))),
			},
		},
		{
			name: "pod: a restarted container has a window after the next scrape",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, old, 100, 10e6))),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), at(8*time.Second), 0.25, 20e6))),
				batch(pods("pn", ctr(p, "c", at(30*time.Second), at(8*time.Second), 1.75, 30e6))),
			},
			wantPods: []PodUsage{podU(p, at(30*time.Second), 15*time.Second,
				cu("c", u(at(30*time.Second), 15*time.Second, 100_000_000, 30e6)))},
		},
		{
			name: "pod: a decreasing counter without a restart is rejected",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, old, 5, 10e6))),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), old, 3, 20e6))),
			},
			rejected: map[string]int{rejectDecreasingCPU: 1},
		},
		{
			name: "pod: a decreasing start time is rejected",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, old, 5, 10e6))),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), old.Add(-time.Hour), 6, 20e6))),
			},
			rejected: map[string]int{rejectDecreasingTime: 1},
		},
		{
			name: "pod: a rejected container leaves the whole pod out",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6), ctr(p, "b", t0, old, 5, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6), ctr(p, "b", at(15*time.Second), old, 3, 10e6))),
			},
			rejected: map[string]int{rejectDecreasingCPU: 1},
		},
		{
			name: "fresh container: 12s old with a 15s resolution has a window from its start",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, at(-12*time.Second), 0.75, 10e6))),
			},
			wantPods: []PodUsage{podU(p, t0, 12*time.Second, cu("c", u(t0, 12*time.Second, 62_500_000, 10e6)))},
		},
		{
			name: "fresh container: exactly 10s old has a window from its start",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, at(-10*time.Second), 0.5, 10e6))),
			},
			wantPods: []PodUsage{podU(p, t0, 10*time.Second, cu("c", u(t0, 10*time.Second, 50_000_000, 10e6)))},
		},
		{
			name: "fresh container: younger than 10s has no window",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, at(-9999*time.Millisecond), 0.5, 10e6))),
			},
		},
		{
			name: "fresh container: exactly one resolution old has no window",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, at(-15*time.Second), 0.5, 10e6))),
			},
		},
		{
			name: "fresh container: older than one resolution has no window",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, at(-16*time.Second), 0.5, 10e6))),
			},
		},
		{
			name:       "fresh container: 45s old with a 60s resolution has a window from its start",
			resolution: time.Minute,
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, at(-45*time.Second), 0.75, 10e6))),
			},
			wantPods: []PodUsage{podU(p, t0, 45*time.Second, cu("c", u(t0, 45*time.Second, 16_666_666, 10e6)))},
		},
		{
			name: "fresh container: the rule wins over a stored point",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", at(-5*time.Second), at(-12*time.Second), 0.25, 10e6))),
				batch(pods("pn", ctr(p, "c", t0, at(-12*time.Second), 0.75, 10e6))),
			},
			wantPods: []PodUsage{podU(p, t0, 12*time.Second, cu("c", u(t0, 12*time.Second, 62_500_000, 10e6)))},
		},
		{
			name: "pod: a container with zero CPU drops the pod",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6), ctr(p, "b", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6), ctr(p, "b", at(15*time.Second), old, 0, 10e6))),
			},
			rejected: map[string]int{rejectIncomplete: 1},
		},
		{
			name: "pod: a container with zero memory drops the pod, which is forgotten",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6), ctr(p, "b", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6), ctr(p, "b", at(15*time.Second), old, 2, 0))),
				batch(pods("pn", ctr(p, "a", at(30*time.Second), old, 4, 10e6), ctr(p, "b", at(30*time.Second), old, 3, 10e6))),
			},
			rejected: map[string]int{rejectIncomplete: 1},
		},
		{
			name: "pod: a container with zero timestamp drops the pod",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6), ctr(p, "b", time.Time{}, old, 2, 10e6))),
			},
			rejected: map[string]int{rejectIncomplete: 1},
		},
		{
			name: "pod: a container without a previous point drops the pod",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6), ctr(p, "b", at(15*time.Second), old, 1, 10e6))),
			},
		},
		{
			name: "pod: served once every container has a previous point",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6), ctr(p, "b", at(15*time.Second), old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(30*time.Second), old, 4, 10e6), ctr(p, "b", at(30*time.Second), old, 1.75, 20e6))),
			},
			wantPods: []PodUsage{podU(p, at(30*time.Second), 15*time.Second,
				cu("a", u(at(30*time.Second), 15*time.Second, 100_000_000, 10e6)),
				cu("b", u(at(30*time.Second), 15*time.Second, 50_000_000, 20e6)))},
		},
		{
			name: "pod: a container missing from the new scrape is not required",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6), ctr(p, "b", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6))),
			},
			wantPods: []PodUsage{podU(p, at(15*time.Second), 15*time.Second,
				cu("a", u(at(15*time.Second), 15*time.Second, 100_000_000, 10e6)))},
		},
		{
			name: "pod: timestamp and window of the earliest container",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6), ctr(p, "b", at(time.Second), old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6), ctr(p, "b", at(13*time.Second), old, 2.5, 10e6))),
			},
			wantPods: []PodUsage{podU(p, at(13*time.Second), 12*time.Second,
				cu("a", u(at(15*time.Second), 15*time.Second, 100_000_000, 10e6)),
				cu("b", u(at(13*time.Second), 12*time.Second, 125_000_000, 10e6)))},
		},
		{
			name: "pod: an init container that is no longer reported does not matter",
			batches: []Batch{
				batch(pods("pn", ctr(p, "init", t0, at(-20*time.Second), 1, 10e6))),
				batch(pods("pn", ctr(p, "app", at(15*time.Second), at(8*time.Second), 0.25, 10e6),
					ctr(p, "sidecar", at(15*time.Second), at(7*time.Second), 0.5, 10e6))),
				batch(pods("pn", ctr(p, "app", at(30*time.Second), at(8*time.Second), 1.75, 10e6),
					ctr(p, "sidecar", at(30*time.Second), at(7*time.Second), 1.25, 10e6))),
			},
			wantPods: []PodUsage{podU(p, at(30*time.Second), 15*time.Second,
				cu("app", u(at(30*time.Second), 15*time.Second, 100_000_000, 10e6)),
				cu("sidecar", u(at(30*time.Second), 15*time.Second, 50_000_000, 10e6)))},
		},
		{
			// metrics-server gives b a zero previous point here, and the pod a window of
			// 292 years.
			name: "pod: the same sample twice of a container without a previous point keeps none",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6), ctr(p, "b", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6), ctr(p, "b", at(15*time.Second), at(8*time.Second), 0.5, 10e6))),
				batch(pods("pn", ctr(p, "a", at(30*time.Second), old, 4, 10e6), ctr(p, "b", at(15*time.Second), at(8*time.Second), 0.5, 10e6))),
			},
		},
		{
			name: "pod: ties for the earliest container go to the first by name",
			batches: []Batch{
				batch(pods("pn", ctr(p, "a", t0, old, 1, 10e6), ctr(p, "b", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "a", at(15*time.Second), old, 2.5, 10e6), ctr(p, "b", at(15*time.Second), at(8*time.Second), 0.5, 10e6))),
				batch(pods("pn", ctr(p, "a", at(30*time.Second), old, 4, 10e6), ctr(p, "b", at(15*time.Second), at(8*time.Second), 0.5, 10e6))),
				batch(pods("pn", ctr(p, "a", at(45*time.Second), old, 5.5, 10e6), ctr(p, "b", at(45*time.Second), at(8*time.Second), 2, 10e6))),
			},
			wantPods: []PodUsage{podU(p, at(45*time.Second), 15*time.Second,
				cu("a", u(at(45*time.Second), 15*time.Second, 100_000_000, 10e6)),
				cu("b", u(at(45*time.Second), 30*time.Second, 50_000_000, 10e6)))},
		},
		{
			name: "pod: a duplicate container keeps the first",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, old, 1, 10e6), ctr(p, "c", t0, old, 7, 70e6))),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), old, 2.5, 20e6), ctr(p, "c", at(15*time.Second), old, 9, 90e6))),
			},
			wantPods: []PodUsage{podU(p, at(15*time.Second), 15*time.Second,
				cu("c", u(at(15*time.Second), 15*time.Second, 100_000_000, 20e6)))},
			rejected: map[string]int{rejectDuplicate: 2},
		},
		{
			name: "pod: a container that carries nothing is ignored",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, old, 1, 10e6), ContainerSample{Namespace: "ns", Pod: "p", Container: "empty"})),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), old, 2.5, 20e6), ContainerSample{Namespace: "ns", Pod: "p", Container: "empty"})),
			},
			wantPods: []PodUsage{podU(p, at(15*time.Second), 15*time.Second,
				cu("c", u(at(15*time.Second), 15*time.Second, 100_000_000, 20e6)))},
		},
		{
			name: "pod: a container with only a start time drops the pod",
			batches: []Batch{
				batch(pods("pn", ctr(p, "c", t0, old, 1, 10e6))),
				batch(pods("pn", ctr(p, "c", at(15*time.Second), old, 2.5, 20e6), ContainerSample{Namespace: "ns", Pod: "p", Container: "new", StartTime: at(14 * time.Second)})),
			},
			rejected: map[string]int{rejectIncomplete: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := newTestDB(t, Config{Resolution: tc.resolution})
			write(t, db, tc.batches...)
			if diff := cmp.Diff(tc.wantNodes, db.NodeUsage([]string{"n1"}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("NodeUsage (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantPods, db.PodUsage([]PodRef{ref(p)}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("PodUsage (-want +got):\n%s", diff)
			}
			for reason, want := range tc.rejected {
				if got := testutil.ToFloat64(db.m.rejectedBy[reason]); got != float64(want) {
					t.Errorf("rejected points{reason=%q} = %v, want %d", reason, got, want)
				}
			}
		})
	}
}

// TestFailedNodeKeepsItsPoints checks that a node whose scrape failed (absent from the
// batch) keeps serving its last window and its pods', unlike metrics-server.
func TestFailedNodeKeepsItsPoints(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, Config{})
	round := func(d time.Duration, cpu float64, nodes ...string) Batch {
		var b Batch
		for _, n := range nodes {
			b.Nodes = append(b.Nodes, node(n, at(d), cpu, 100e6, ctr("ns/"+n+"-pod", "c", at(d), old, cpu, 10e6)))
		}
		return b
	}
	write(t, db,
		round(0, 10, "n1", "n2"),
		round(15*time.Second, 11.5, "n1", "n2"),
		round(30*time.Second, 13, "n1"), // n2's scrape failed
	)
	wantNodes := []NodeUsage{
		{Node: "n2", Usage: u(at(15*time.Second), 15*time.Second, 100_000_000, 100e6)},
		{Node: "n1", Usage: u(at(30*time.Second), 15*time.Second, 100_000_000, 100e6)},
	}
	if diff := cmp.Diff(wantNodes, db.NodeUsage([]string{"n2", "missing", "n1"})); diff != "" {
		t.Errorf("NodeUsage (-want +got):\n%s", diff)
	}
	wantPods := []PodUsage{
		podU("ns/n2-pod", at(15*time.Second), 15*time.Second, cu("c", u(at(15*time.Second), 15*time.Second, 100_000_000, 10e6))),
		podU("ns/n1-pod", at(30*time.Second), 15*time.Second, cu("c", u(at(30*time.Second), 15*time.Second, 100_000_000, 10e6))),
	}
	if diff := cmp.Diff(wantPods, db.PodUsage([]PodRef{ref("ns/n2-pod"), ref("ns/missing"), ref("ns/n1-pod")})); diff != "" {
		t.Errorf("PodUsage (-want +got):\n%s", diff)
	}
}

// TestNodeReplacesItsPods checks that a node present in a batch forgets the pods it no
// longer reports, and that a pod which moved to another node stays with it.
func TestNodeReplacesItsPods(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, Config{})
	write(t, db,
		batch(pods("n1", ctr("ns/a", "c", t0, old, 1, 10e6), ctr("ns/b", "c", t0, old, 1, 10e6), ctr("ns/moved", "c", t0, old, 1, 10e6))),
		batch(pods("n1", ctr("ns/a", "c", at(15*time.Second), old, 2.5, 10e6), ctr("ns/b", "c", at(15*time.Second), old, 2.5, 10e6), ctr("ns/moved", "c", at(15*time.Second), old, 2.5, 10e6))),
		// n1 failed; the pod "moved" was recreated on n2.
		batch(pods("n2", ctr("ns/moved", "c", at(30*time.Second), at(20*time.Second), 0.25, 10e6))),
		// n1 is back without b and moved.
		batch(pods("n1", ctr("ns/a", "c", at(45*time.Second), old, 4, 10e6)), pods("n2", ctr("ns/moved", "c", at(45*time.Second), at(20*time.Second), 1.75, 10e6))),
	)
	want := []PodUsage{
		podU("ns/a", at(45*time.Second), 30*time.Second, cu("c", u(at(45*time.Second), 30*time.Second, 50_000_000, 10e6))),
		podU("ns/moved", at(45*time.Second), 15*time.Second, cu("c", u(at(45*time.Second), 15*time.Second, 100_000_000, 10e6))),
	}
	if diff := cmp.Diff(want, db.PodUsage([]PodRef{ref("ns/a"), ref("ns/b"), ref("ns/moved")})); diff != "" {
		t.Errorf("PodUsage (-want +got):\n%s", diff)
	}
}

// TestDuplicatePodAcrossNodes checks that a pod reported by two nodes in one batch keeps
// the first report, as metrics-server does.
func TestDuplicatePodAcrossNodes(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, Config{})
	write(t, db,
		batch(pods("n1", ctr("ns/p", "c", t0, old, 1, 10e6)), pods("n2", ctr("ns/p", "c", t0, old, 5, 50e6))),
		batch(pods("n1", ctr("ns/p", "c", at(15*time.Second), old, 2.5, 10e6)), pods("n2", ctr("ns/p", "c", at(15*time.Second), old, 9, 50e6))),
	)
	want := []PodUsage{podU("ns/p", at(15*time.Second), 15*time.Second, cu("c", u(at(15*time.Second), 15*time.Second, 100_000_000, 10e6)))}
	if diff := cmp.Diff(want, db.PodUsage([]PodRef{ref("ns/p")})); diff != "" {
		t.Errorf("PodUsage (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(db.m.rejectedBy[rejectDuplicate]); got != 2 {
		t.Errorf("rejected duplicates = %v, want 2", got)
	}
}

// TestAbsentNodeIsForgotten checks that a node absent from every batch for more than 10
// resolutions is forgotten with its pods.
func TestAbsentNodeIsForgotten(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, Config{Resolution: 15 * time.Second})
	now := at(time.Minute)
	db.now = func() time.Time { return now }
	round := func(d time.Duration, cpu float64, nodes ...string) Batch {
		var b Batch
		for _, n := range nodes {
			b.Nodes = append(b.Nodes, node(n, at(d), cpu, 100e6, ctr("ns/"+n+"-pod", "c", at(d), old, cpu, 10e6)))
		}
		return b
	}
	write(t, db, round(0, 10, "n1", "n2"), round(15*time.Second, 11.5, "n1", "n2"))

	now = now.Add(150 * time.Second) // exactly 10 resolutions: kept
	write(t, db, round(30*time.Second, 13, "n1"))
	if got := db.NodeUsage([]string{"n2"}); len(got) != 1 {
		t.Errorf("after 10 resolutions: NodeUsage(n2) = %v, want n2's window", got)
	}
	now = now.Add(time.Millisecond)
	write(t, db, round(45*time.Second, 14.5, "n1"))
	if got := db.NodeUsage([]string{"n2"}); len(got) != 0 {
		t.Errorf("after more than 10 resolutions: NodeUsage(n2) = %v, want none", got)
	}
	if got := db.PodUsage([]PodRef{ref("ns/n2-pod")}); len(got) != 0 {
		t.Errorf("after more than 10 resolutions: PodUsage(ns/n2-pod) = %v, want none", got)
	}
	if got := db.NodeUsage([]string{"n1"}); len(got) != 1 {
		t.Errorf("NodeUsage(n1) = %v, want n1's window", got)
	}
}

// TestReady checks metrics-server's metric-storage-ready semantics.
func TestReady(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		batches []Batch
		ready   bool
	}{
		{name: "nothing written"},
		{name: "one scrape", batches: []Batch{batch(node("n1", t0, 1, 1))}},
		{name: "two scrapes of a node", batches: []Batch{batch(node("n1", t0, 1, 1)), batch(node("n1", at(15*time.Second), 2, 1))}, ready: true},
		{name: "a fresh container", batches: []Batch{batch(pods("n1", ctr("ns/p", "c", t0, at(-12*time.Second), 1, 1)))}, ready: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := newTestDB(t, Config{})
			write(t, db, tc.batches...)
			err := db.Ready()
			if tc.ready && err != nil {
				t.Errorf("Ready() = %v, want nil", err)
			}
			if !tc.ready && (err == nil || err.Error() != "no metrics to serve") {
				t.Errorf("Ready() = %v, want no metrics to serve", err)
			}
		})
	}
}

// TestConcurrentWriteAndQuery exercises the locking under -race.
func TestConcurrentWriteAndQuery(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, Config{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			d := time.Duration(i) * 15 * time.Second
			b := batch(node("n1", at(d), float64(10+i), 100e6, ctr("ns/p", "c", at(d), old, float64(1+i), 10e6)))
			if err := db.Write(context.Background(), b); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			if got := db.PodUsage([]PodRef{ref("ns/p")}); len(got) != 1 {
				t.Errorf("PodUsage = %v, want one pod", got)
			}
			return
		default:
			db.NodeUsage([]string{"n1"})
			db.PodUsage([]PodRef{ref("ns/p")})
			_ = db.Ready()
		}
	}
}
