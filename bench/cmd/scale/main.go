// Command scale runs side-by-side scenarios (package scale) and writes each one's figures
// to <out>/<date>-<scenario>.md. make bench runs 100x30; make bench-full 1000x30 and
// 5000x30.
//
//	go run ./bench/cmd/scale -scenarios 100x30 -out bench/results
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hindsight-metrics/hindsight/bench/scale"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func run() error {
	all := scale.Scenarios()
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	slices.Sort(names)
	list := flag.String("scenarios", "100x30", "comma-separated scenarios: "+strings.Join(names, ", "))
	out := flag.String("out", "bench/results", "directory of the results files")
	rounds := flag.Int("rounds", 0, "steady-state rounds (0: the scenario's, 20)")
	backfill := flag.Duration("backfill", -1, "history written before Hindsight starts (-1: the scenario's, 2h)")
	noLists := flag.Bool("no-lists", false, "skip the LIST latency phase")
	profiles := flag.String("profiles", "", "save both servers' heap and CPU profiles here (a directory per scenario)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, name := range strings.Split(*list, ",") {
		sc, ok := all[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("no scenario %q (have %s)", name, strings.Join(names, ", "))
		}
		if *rounds > 0 {
			sc.Rounds = *rounds
		}
		if *backfill >= 0 {
			sc.Backfill = *backfill
		}
		sc.NoLists = *noLists
		if *profiles != "" {
			sc.ProfileDir = filepath.Join(*profiles, sc.Name)
		}
		begin := time.Now()
		res, err := scale.Run(ctx, sc, os.Stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.Name, err)
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		path := filepath.Join(*out, begin.UTC().Format("2006-01-02")+"-"+sc.Name+".md")
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := res.WriteMarkdown(f); err != nil {
			_ = f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "scale: %s written (%s)\n", path, time.Since(begin).Round(time.Second))
	}
	return nil
}
