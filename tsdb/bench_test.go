package tsdb

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// genBatch returns one scrape round of a cluster of nodes × podsPerNode pods ×
// containersPerPod containers, as metrics-server's storage benchmark shapes it (10
// namespaces), with the kubelet's pod-level samples.
func genBatch(nodes, podsPerNode, containersPerPod int) Batch {
	b := Batch{Nodes: make([]NodeScrape, nodes)}
	for n := range nodes {
		ns := NodeScrape{
			Node:       fmt.Sprintf("node-%04d", n),
			ScrapeTime: t0,
			NodeSample: cpuMem(t0, 1000, 8e9),
			HasNode:    true,
			Pods:       make([]PodSample, 0, podsPerNode),
			Containers: make([]ContainerSample, 0, podsPerNode*containersPerPod),
		}
		for p := range podsPerNode {
			namespace, pod := fmt.Sprintf("ns-%d", (n*podsPerNode+p)%10), fmt.Sprintf("pod-%04d-%02d", n, p)
			uid := fmt.Sprintf("uid-%04d-%02d", n, p)
			ns.Pods = append(ns.Pods, PodSample{Namespace: namespace, Pod: pod, UID: uid,
				Sample: cpuMem(t0, 20, 2e8)})
			for c := range containersPerPod {
				ns.Containers = append(ns.Containers, ContainerSample{
					Namespace: namespace, Pod: pod, Container: fmt.Sprintf("container-%d", c), UID: uid,
					StartTime: old,
					Sample:    cpuMem(t0, 10, 1e8),
				})
			}
		}
		b.Nodes[n] = ns
	}
	return b
}

// advance moves every sample of b one resolution later and its counters on.
func advance(b *Batch, d time.Duration) {
	for i := range b.Nodes {
		ns := &b.Nodes[i]
		ns.ScrapeTime = ns.ScrapeTime.Add(d)
		ns.NodeSample.Time = ns.NodeSample.Time.Add(d)
		ns.NodeSample.Values[ResourceCPU] += 15
		for j := range ns.Pods {
			ns.Pods[j].Time = ns.Pods[j].Time.Add(d)
			ns.Pods[j].Values[ResourceCPU] += 0.2
		}
		for j := range ns.Containers {
			ns.Containers[j].Time = ns.Containers[j].Time.Add(d)
			ns.Containers[j].Values[ResourceCPU] += 0.1
		}
	}
}

// BenchmarkWrite writes scrape rounds of 1000 nodes × 30 pods × 2 containers.
func BenchmarkWrite(b *testing.B) {
	db := newTestDB(b, Config{})
	batch := genBatch(1000, 30, 2)
	// The first round creates the series; measure the steady state.
	write(b, db, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		advance(&batch, 15*time.Second)
		if err := db.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch.Len())*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkPodUsage computes the current window of pods in a cluster of 1000 nodes × 30
// pods × 2 containers.
func BenchmarkPodUsage(b *testing.B) {
	db := newTestDB(b, Config{})
	batch := genBatch(1000, 30, 2)
	write(b, db, batch)
	advance(&batch, 15*time.Second)
	write(b, db, batch)
	var all []PodRef
	for _, ns := range batch.Nodes {
		for _, p := range ns.Pods {
			all = append(all, PodRef{Namespace: p.Namespace, Name: p.Pod})
		}
	}
	for _, n := range []int{100, len(all)} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			refs := all[:n]
			b.ReportAllocs()
			for b.Loop() {
				if got := db.PodUsage(refs); len(got) != n {
					b.Fatalf("PodUsage returned %d pods, want %d", len(got), n)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "pods/s")
		})
	}
}

// BenchmarkRestart measures a restart of a store of 1000 nodes × 30 pods × 2 containers
// (62,000 series of each kind): Open (WAL replay from the memory snapshot, and the current
// window from the window snapshot or rebuilt from the stored points) until NodeUsage and
// PodUsage answer for every node and pod, which is when a restarted Hindsight serves
// kubectl top again. Before each restart (not timed), one more round is written at the
// current time, so that the stored points are fresh however long the benchmark runs.
func BenchmarkRestart(b *testing.B) {
	const nodes, podsPerNode, res = 1000, 30, 15 * time.Second
	batch := genBatch(nodes, podsPerNode, 2)
	names := make([]string, 0, nodes)
	refs := make([]PodRef, 0, nodes*podsPerNode)
	for _, n := range batch.Nodes {
		names = append(names, n.Node)
		for _, p := range n.Pods {
			refs = append(refs, PodRef{Namespace: p.Namespace, Name: p.Pod})
		}
	}
	for _, from := range []string{restoredFromSnapshot, restoredFromTSDB} {
		b.Run("from="+from, func(b *testing.B) {
			cfg := Config{Dir: b.TempDir(), Resolution: res}
			db, err := Open(cfg, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				b.Fatal(err)
			}
			// Two rounds before the one of each restart.
			advance(&batch, time.Now().Add(-2*res).Sub(batch.Nodes[0].ScrapeTime))
			for range 2 {
				if err := db.Write(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
				advance(&batch, res)
			}
			for b.Loop() {
				b.StopTimer()
				advance(&batch, time.Since(batch.Nodes[0].ScrapeTime))
				if err := db.Write(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				if from == restoredFromTSDB {
					if err := os.Remove(filepath.Join(cfg.Dir, windowSnapshotFile)); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if db, err = Open(cfg, slog.New(slog.DiscardHandler), nil); err != nil {
					b.Fatal(err)
				}
				gotNodes, gotPods := len(db.NodeUsage(names)), len(db.PodUsage(refs))
				if gotNodes != nodes || gotPods != nodes*podsPerNode {
					b.Fatalf("after restart: %d nodes and %d pods served, want %d and %d", gotNodes, gotPods, nodes, nodes*podsPerNode)
				}
			}
			b.StopTimer()
			if err := db.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/restart")
		})
	}
}

// BenchmarkCheckClock is the kubelet-clock check of one scrape round of 1000 nodes × 30
// pods × 2 containers, which the scraper runs before building the batch and DB.Write runs
// again on what it is given: its cost per round, to set beside BenchmarkWrite's.
func BenchmarkCheckClock(b *testing.B) {
	batch := genBatch(1000, 30, 2)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch.Nodes {
			if err := CheckClock(&batch.Nodes[i], 15*time.Second); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/round")
}

// BenchmarkRollup rolls up two hours (one 5m batch; the 1h tier's batch is six hours, so
// it writes nothing here) of 100 nodes × 30 pods × 2 containers at 15s: 24,200 samples a
// round, 11.6 million in all. It reports the rollup's CPU per hour of raw data and per
// million raw samples, and its ratio to the time DB.Write took to store the same rounds
// (the scrape loop's storage share); CPU scales with the samples, so ×10 gives 1,000 nodes.
func BenchmarkRollup(b *testing.B) {
	const rounds = 2 * 240
	db := newTestDB(b, Config{TierRetention: [NumTiers]time.Duration{0, -1}})
	batch := genBatch(100, 30, 2)
	start := time.Now()
	for range rounds {
		if err := db.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
		advance(&batch, 15*time.Second)
	}
	writeDur := time.Since(start)
	samples := float64(batch.Len()) * rounds
	end := batch.Nodes[0].ScrapeTime
	db.now = func() time.Time { return end.Add(time.Hour) }
	s := db.tiers[Tier5m]
	first := t0.UnixMilli() / tierDefs[Tier5m].batch.Milliseconds() * tierDefs[Tier5m].batch.Milliseconds()
	var written uint64
	for b.Loop() {
		meta, ok, err := db.rollupBatch(b.Context(), s, first, first+tierDefs[Tier5m].batch.Milliseconds())
		if err != nil || !ok {
			b.Fatalf("rollupBatch: %v (written %v)", err, ok)
		}
		written = meta.Stats.NumSamples
		b.StopTimer()
		if err := os.RemoveAll(filepath.Join(s.dir, meta.ULID.String())); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	per := b.Elapsed().Seconds() / float64(b.N)
	hours := end.Sub(t0).Hours()
	b.ReportMetric(per/hours, "s/h-of-raw")
	b.ReportMetric(per/(samples/1e6), "s/Msample")
	b.ReportMetric(per/writeDur.Seconds(), "rollup/write")
	b.ReportMetric(float64(written), "rollup-samples")
}
