package tsdb_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// Two scrapes of a node give its current window: CPU is the rate between the two
// cumulative readings, memory the last working set.
func Example() {
	dir, err := os.MkdirTemp("", "hindsight-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	db, err := tsdb.Open(tsdb.Config{Dir: dir, Resolution: 15 * time.Second}, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	t0 := time.UnixMilli(1_700_000_000_000)
	for i, cpuSeconds := range []float64{357.5, 360.5} {
		ts := t0.Add(time.Duration(i) * 15 * time.Second)
		s := tsdb.Sample{Time: ts}
		s.Set(tsdb.ResourceCPU, cpuSeconds)
		s.Set(tsdb.ResourceMemory, 1.6e9)
		b := tsdb.Batch{Nodes: []tsdb.NodeScrape{{
			Node:       "node-1",
			ScrapeTime: ts,
			NodeSample: s,
			HasNode:    true,
		}}}
		if err := db.Write(context.Background(), b); err != nil {
			log.Fatal(err)
		}
	}
	for _, u := range db.NodeUsage([]string{"node-1"}) {
		fmt.Printf("%s: cpu=%dn memory=%d window=%s\n", u.Node, u.CPUNanoCores, u.MemoryBytes, u.Window)
	}
	fmt.Println("ready:", db.Ready() == nil)
	// Output:
	// node-1: cpu=200000000n memory=1600000000 window=15s
	// ready: true
}
