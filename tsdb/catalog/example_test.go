package catalog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// A pod of Deployment web is deleted; its record is still found through its workload.
func Example() {
	dir, err := os.MkdirTemp("", "catalog-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	c, err := catalog.OpenOrRebuild(filepath.Join(dir, "catalog.db"), catalog.Options{Retention: 30 * 24 * time.Hour}, nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	_ = c.UpsertPod(catalog.PodRecord{
		UID: "6f1c", Namespace: "shop", Name: "web-7d9f-x2x4q", Node: "node-1",
		Owner:      catalog.Owner{Kind: "Deployment", Name: "web"},
		Controller: catalog.Owner{Kind: "ReplicaSet", Name: "web-7d9f"},
		Containers: []catalog.ContainerSpec{{Name: "web", Requests: map[string]int64{"cpu": 250, "memory": 256 << 20}}},
		LastSeen:   start, // the observation time; zero means now
	})
	_ = c.MarkPodDeleted("6f1c", start.Add(10*time.Minute))
	if err := c.Flush(context.Background()); err != nil { // Run does this in the background
		panic(err)
	}

	pods, err := c.PodsByOwner("shop", "Deployment", "web", start, start.Add(time.Hour))
	if err != nil {
		panic(err)
	}
	for _, p := range pods {
		fmt.Println(p.Name, p.Node, p.Controller, p.Containers[0].Requests["cpu"], "m", p.Deleted, p.LastSeen.Sub(p.FirstSeen))
	}
	// Output: web-7d9f-x2x4q node-1 ReplicaSet/web-7d9f 250 m true 10m0s
}
