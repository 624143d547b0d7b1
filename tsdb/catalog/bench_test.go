package catalog

import (
	"fmt"
	"hash/fnv"
	"path/filepath"
	"testing"
	"time"
)

// benchPods returns n pods of n/50 Deployments on n/100 nodes in 20 namespaces.
func benchPods(n int) []PodRecord {
	pods := make([]PodRecord, n)
	for i := range pods {
		deploy := fmt.Sprint("app-", i%max(1, n/50))
		p := webPod(benchUID(i), fmt.Sprintf("%s-7d9f-%d", deploy, i), fmt.Sprint("node-", i%max(1, n/100)))
		p.Namespace = fmt.Sprint("ns-", i%20)
		p.Owner = Owner{Kind: "Deployment", Name: deploy}
		p.Controller = Owner{Kind: "ReplicaSet", Name: deploy + "-7d9f"}
		p.Labels = map[string]string{"app": deploy, "pod-template-hash": "7d9f", "team": "t"}
		pods[i] = p
	}
	return pods
}

// benchUID returns a UID as random as the API server's, but deterministic.
func benchUID(i int) string {
	h := fnv.New128a()
	fmt.Fprint(h, i)
	b := h.Sum(nil)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// BenchmarkUpsertPods measures queueing and writing 10k pod observations (the initial list
// of a large cluster, or its churn), in batches of the default size.
func BenchmarkUpsertPods(b *testing.B) {
	const n = 10_000
	pods := benchPods(n)
	c, clk := newTestCatalog(b, Options{})
	b.ReportAllocs()
	round := 0
	for b.Loop() {
		round++
		clk.Set(time.Duration(round) * time.Second)
		for i := range pods {
			if i%2 == 0 { // half of the pods are resized each round
				pods[i].Containers[1].Requests[cpu] = int64(100 + round)
			}
			if err := c.UpsertPod(pods[i]); err != nil {
				b.Fatal(err)
			}
		}
		flush(b, c)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "pods/s")
}

// BenchmarkPodsByOwner looks up one Deployment's 50 pods in a catalog of 10k, the history
// API's workload query.
func BenchmarkPodsByOwner(b *testing.B) {
	const n = 10_000
	c, _ := newTestCatalog(b, Options{BatchSize: n})
	for _, p := range benchPods(n) {
		if err := c.UpsertPod(p); err != nil {
			b.Fatal(err)
		}
	}
	flush(b, c)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		ns := fmt.Sprint("ns-", i%20)
		pods, err := c.PodsByOwner(ns, "Deployment", fmt.Sprint("app-", i%20), time.Time{}, time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		if len(pods) == 0 {
			b.Fatalf("no pods of %s/app-%d", ns, i%20)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkOpen measures opening (and checking) a catalog of 10k pods, part of a restart.
func BenchmarkOpen(b *testing.B) {
	const n = 10_000
	path := filepath.Join(b.TempDir(), "catalog.db")
	c, err := Open(path, Options{BatchSize: n}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range benchPods(n) {
		if err := c.UpsertPod(p); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	size := fileSize(path)
	for b.Loop() {
		c, err := Open(path, Options{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/n*1e6, "µs/pod")
	b.ReportMetric(float64(size)/n, "file-bytes/pod")
}
