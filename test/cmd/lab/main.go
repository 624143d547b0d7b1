// Command lab builds and runs Hindsight's local control plane (package test/cluster) outside
// of `go test`:
//
//	lab tools   build etcd, kube-apiserver, kube-controller-manager, kubectl, kwok, the
//	            metrics-server peer, promtool, helm and kubectl 1.37 into the tools cache
//	            (minutes the first time, then instant)
//	lab demo    start a local cluster with a simulated fleet and a metrics server, print what
//	            to type next, and stop everything on Ctrl-C
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "tools":
		err = runTools(ctx)
	case "demo":
		err = runDemo(ctx, os.Args[2:])
	case "-h", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: lab tools | lab demo [flags]
  tools  build the local control plane's binaries into the tools cache
  demo   run a local cluster with Hindsight's metrics API (see lab demo -h)`)
}
