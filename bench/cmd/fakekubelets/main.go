// Command fakekubelets serves a fleet's kubelets (package fleet) on 127.0.0.1, one TLS port
// per node, until it gets SIGTERM or SIGINT. Once every port listens it writes the node →
// port map as JSON to -ports (atomically), so a benchmark can create the Node objects with
// those ports in status.daemonEndpoints.kubeletEndpoint.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hindsight-metrics/hindsight/bench/fleet"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakekubelets:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		s          fleet.Spec
		epoch      int64
		cert, key  string
		portsFile  string
		statsEvery time.Duration
	)
	flag.IntVar(&s.Nodes, "nodes", 100, "nodes")
	flag.IntVar(&s.PodsPerNode, "pods-per-node", 30, "pods per node")
	flag.IntVar(&s.ContainersPerPod, "containers-per-pod", 2, "containers per pod")
	flag.IntVar(&s.Namespaces, "namespaces", 10, "namespaces")
	flag.IntVar(&s.Deployments, "deployments", 100, "deployments")
	flag.Int64Var(&epoch, "epoch", 0, "the fleet's epoch, Unix seconds (required; the same in every process that must agree)")
	flag.StringVar(&cert, "tls-cert-file", "", "serving certificate (PEM)")
	flag.StringVar(&key, "tls-private-key-file", "", "serving key (PEM)")
	flag.StringVar(&portsFile, "ports", "", "write the node → port map here (JSON)")
	flag.DurationVar(&statsEvery, "stats-every", time.Minute, "log request counts this often")
	flag.Parse()
	if epoch == 0 || cert == "" || key == "" || portsFile == "" {
		return fmt.Errorf("-epoch, -tls-cert-file, -tls-private-key-file and -ports are required")
	}
	s.Epoch = time.Unix(epoch, 0)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return fmt.Errorf("load serving certificate: %w", err)
	}
	srv, err := fleet.Listen(s, kp)
	if err != nil {
		return err
	}
	b, err := json.Marshal(srv.Ports())
	if err != nil {
		return err
	}
	tmp := portsFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Clean(portsFile)); err != nil {
		return err
	}
	log.Info("serving", "nodes", s.Nodes, "podsPerNode", s.PodsPerNode, "ports", portsFile)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		t := time.NewTicker(statsEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				req, builds := srv.Counts()
				log.Info("stats", "requests", req, "bodies", builds)
			}
		}
	}()
	return srv.Serve(ctx)
}
