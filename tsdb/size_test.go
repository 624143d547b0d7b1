package tsdb

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/tsdb/fileutil"
)

// noisyCluster generates scrape rounds whose timestamps and values vary as a real kubelet's
// do, which is close to the worst case for the TSDB's compression: every sample's time is
// up to 3s before the scrape (cAdvisor's housekeeping), CPU counters grow by a random
// amount at a per-object rate between 1 millicore and 2 cores, and working sets move by a
// random number of 4 KiB pages in most rounds. A constant-rate cluster (genBatch and
// advance) compresses several times better.
type noisyCluster struct {
	rng   *rand.Rand
	b     Batch
	rates map[*Sample]float64 // cores
}

func newNoisyCluster(nodes, podsPerNode, containersPerPod int) *noisyCluster {
	c := &noisyCluster{
		rng:   rand.New(rand.NewPCG(1, 2)),
		b:     genBatch(nodes, podsPerNode, containersPerPod),
		rates: make(map[*Sample]float64),
	}
	c.each(func(s *Sample) {
		c.rates[s] = math.Exp(c.rng.Float64()*math.Log(2000)) / 1000 // log-uniform 0.001..2
		s.Values[ResourceMemory] = float64(4096 * (1 + c.rng.IntN(500_000)))
		s.Values[ResourceCPU] = c.rng.Float64() * 1e5
	})
	return c
}

func (c *noisyCluster) each(f func(*Sample)) {
	for i := range c.b.Nodes {
		ns := &c.b.Nodes[i]
		f(&ns.NodeSample)
		for j := range ns.Pods {
			f(&ns.Pods[j].Sample)
		}
		for j := range ns.Containers {
			f(&ns.Containers[j].Sample)
		}
	}
}

// round returns the scrape round at t. The batch is reused: write it before the next call.
func (c *noisyCluster) round(t time.Time) Batch {
	for i := range c.b.Nodes {
		c.b.Nodes[i].ScrapeTime = t
	}
	c.each(func(s *Sample) {
		prev := s.Time
		s.Time = t.Add(-time.Duration(c.rng.IntN(3000)) * time.Millisecond)
		if !prev.IsZero() {
			s.Values[ResourceCPU] += c.rates[s] * s.Time.Sub(prev).Seconds() * (0.5 + c.rng.Float64())
		}
		if c.rng.IntN(10) < 7 {
			s.Values[ResourceMemory] = max(4096, s.Values[ResourceMemory]+float64(4096*(c.rng.IntN(513)-256)))
		}
	})
	return c.b
}

// regularCluster is genBatch advanced by exactly one resolution with constant increments.
type regularCluster struct{ b Batch }

func (c *regularCluster) round(time.Time) Batch {
	advance(&c.b, DefaultResolution)
	return c.b
}

// BenchmarkDiskBytesPerSample measures what the TSDB keeps on disk per sample: it writes
// days of 15s rounds of 10 nodes × 30 pods × 2 containers (2,420 series) through DB.Write,
// compacts, and reports
//
//	block-B/sample  bytes of the persisted blocks per sample they hold (what retention deletes)
//	dir-B/sample    bytes of the whole TSDB directory (blocks, WAL, head chunks) per sample written
//	wal-MiB         size of the WAL at the end (it holds the last ~2-3h on top of the blocks)
//
// for noisy values (newNoisyCluster, what DiskBytesPerSample is based on) and for regular
// ones. Run it with -benchtime=1x: one iteration writes millions of samples.
func BenchmarkDiskBytesPerSample(b *testing.B) {
	const nodes, pods, containers = 10, 30, 2
	for _, tc := range []struct {
		shape string
		days  int
		gen   func() func(time.Time) Batch
	}{
		{"noisy", 1, func() func(time.Time) Batch { return newNoisyCluster(nodes, pods, containers).round }},
		{"noisy", 7, func() func(time.Time) Batch { return newNoisyCluster(nodes, pods, containers).round }},
		{"regular", 7, func() func(time.Time) Batch {
			return (&regularCluster{genBatch(nodes, pods, containers)}).round
		}},
	} {
		b.Run(fmt.Sprintf("shape=%s/days=%d", tc.shape, tc.days), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				db := newTestDB(b, Config{Retention: 365 * 24 * time.Hour})
				next := tc.gen()
				b.StartTimer()
				rounds := tc.days * int(24*time.Hour/DefaultResolution)
				start := t0.Add(-time.Duration(tc.days) * 24 * time.Hour)
				for i := range rounds {
					if err := db.Write(context.Background(), next(start.Add(time.Duration(i)*DefaultResolution))); err != nil {
						b.Fatal(err)
					}
				}
				if err := db.tsdb.Compact(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				var blockBytes int64
				var blockSamples uint64
				for _, blk := range db.tsdb.Blocks() {
					blockBytes += blk.Size()
					blockSamples += blk.Meta().Stats.NumSamples
				}
				dirBytes, err := fileutil.DirSize(db.cfg.tsdbDir())
				if err != nil {
					b.Fatal(err)
				}
				walBytes, err := fileutil.DirSize(db.cfg.tsdbDir() + "/wal")
				if err != nil {
					b.Fatal(err)
				}
				written := testutil.ToFloat64(db.m.appended)
				b.ReportMetric(float64(blockBytes)/float64(blockSamples), "block-B/sample")
				b.ReportMetric(float64(dirBytes)/written, "dir-B/sample")
				b.ReportMetric(float64(walBytes)/(1<<20), "wal-MiB")
				b.ReportMetric(written/float64(tc.days)/float64(2420), "samples/series/day")
				b.ReportMetric(float64(len(db.tsdb.Blocks())), "blocks")
				b.StartTimer()
			}
		})
	}
}
