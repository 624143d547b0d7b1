// Command hindsight is a drop-in replacement for metrics-server that does not forget: it
// scrapes every kubelet's /metrics/resource, keeps every sample in an embedded Prometheus
// TSDB, serves metrics.k8s.io and answers history queries.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"
)

// version is set at build time: -ldflags "-X main.version=$(git describe --tags --always --dirty)".
var version = "dev"

func main() {
	fs := pflag.NewFlagSet("hindsight", pflag.ContinueOnError)
	fs.SortFlags = false
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: hindsight [flags]\n\nHindsight serves metrics.k8s.io from kubelet resource metrics and keeps their history.\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "hindsight:", err)
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("hindsight", version)
		return
	}
	fmt.Fprintln(os.Stderr, "hindsight: the metrics pipeline is not wired yet; see --help")
	os.Exit(1)
}
