// Command hindsight is a drop-in replacement for metrics-server that does not forget: it
// scrapes every kubelet's /metrics/resource, keeps every sample in an embedded Prometheus
// TSDB, serves metrics.k8s.io (v1 and v1beta1) and answers history queries.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	genericapiserver "k8s.io/apiserver/pkg/server"
	cliflag "k8s.io/component-base/cli/flag"
)

// version is set at build time: -ldflags "-X main.version=$(git describe --tags --always --dirty)".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o := newOptions()
	nfs := o.flags()
	fs := pflag.NewFlagSet("hindsight", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, name := range nfs.Order {
		fs.AddFlagSet(nfs.FlagSets[name])
	}
	fs.Usage = func() { usage(stderr, nfs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "hindsight:", err)
		return 2
	}
	if o.showVersion {
		fmt.Fprintln(stdout, "hindsight", version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hindsight: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "hindsight: invalid flags:\n%s\n", indent(err.Error()))
		return 2
	}
	ctx := genericapiserver.SetupSignalContext()
	if err := serve(ctx, o, stderr); err != nil {
		fmt.Fprintln(stderr, "hindsight:", err)
		return 1
	}
	return 0
}

func usage(w io.Writer, nfs cliflag.NamedFlagSets) {
	fmt.Fprintf(w, "Usage: hindsight [flags]\n\n"+
		"Hindsight serves metrics.k8s.io from kubelet resource metrics, like metrics-server,\n"+
		"and keeps every sample on disk for history queries.\n")
	cliflag.PrintSections(w, nfs, 100)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
