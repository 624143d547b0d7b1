package tsdb

import (
	"fmt"
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
			NodeSample: Sample{Time: t0, CPUSeconds: 1000, MemoryBytes: 8e9},
			HasNode:    true,
			Pods:       make([]PodSample, 0, podsPerNode),
			Containers: make([]ContainerSample, 0, podsPerNode*containersPerPod),
		}
		for p := range podsPerNode {
			namespace, pod := fmt.Sprintf("ns-%d", (n*podsPerNode+p)%10), fmt.Sprintf("pod-%04d-%02d", n, p)
			uid := fmt.Sprintf("uid-%04d-%02d", n, p)
			ns.Pods = append(ns.Pods, PodSample{Namespace: namespace, Pod: pod, UID: uid,
				Sample: Sample{Time: t0, CPUSeconds: 20, MemoryBytes: 2e8}})
			for c := range containersPerPod {
				ns.Containers = append(ns.Containers, ContainerSample{
					Namespace: namespace, Pod: pod, Container: fmt.Sprintf("container-%d", c), UID: uid,
					StartTime: old,
					Sample:    Sample{Time: t0, CPUSeconds: 10, MemoryBytes: 1e8},
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
		ns.NodeSample.CPUSeconds += 15
		for j := range ns.Pods {
			ns.Pods[j].Time = ns.Pods[j].Time.Add(d)
			ns.Pods[j].CPUSeconds += 0.2
		}
		for j := range ns.Containers {
			ns.Containers[j].Time = ns.Containers[j].Time.Add(d)
			ns.Containers[j].CPUSeconds += 0.1
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
