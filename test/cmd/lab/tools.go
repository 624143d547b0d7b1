package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

func runTools(ctx context.Context) error {
	start := time.Now()
	t, err := cluster.EnsureTools(ctx, os.Stdout)
	if err != nil {
		return err
	}
	fmt.Printf("lab: control-plane tools ready in %s (%s)\n", t.Dir, time.Since(start).Round(100*time.Millisecond))
	return nil
}
