// Package scale runs Hindsight and metrics-server v0.9.0 side by side on one fake kubelet
// fleet (package fleet) at metrics-server's scale, on a local control plane (test/cluster),
// and measures both in the same run: memory, CPU per scrape round, whether rounds finish
// within the resolution, LIST latencies with one and with many clients, directly and through
// the aggregator, and the time from a start to a complete `kubectl top pods -A`. Hindsight
// alone: the ingest rate of its write path and disk bytes per sample after compaction on
// the fleet's data. Run writes nothing of its own; cmd/scale turns a Result into
// bench/results/<date>-<scenario>.md.
package scale

import (
	"fmt"
	"time"

	"github.com/hindsight-metrics/hindsight/bench/fleet"
)

// Scenario is one side-by-side run.
type Scenario struct {
	// Name names the results file ("1000x30").
	Name string
	Spec fleet.Spec
	// Resolution is both servers' --metric-resolution. Default 15s.
	Resolution time.Duration
	// Rounds is how many scrape rounds the steady-state figures span. Default 20.
	Rounds int
	// Backfill is how much of the fleet's past is written into Hindsight's store (through
	// its own write path) before it first starts, then compacted into a block. 0 writes
	// none; the restart figure is "with Backfill of stored data".
	Backfill time.Duration
	// Clients is the number of concurrent LIST clients of the loaded phase (default 20), each
	// sending PerClient requests (default 5); the one-client phase sends Single (default 30).
	Clients, PerClient, Single int
	// Workers create the fleet's objects at once. Default 32.
	Workers int
	// Aggregator measures LISTs through the kube-apiserver too. Default on (set NoAggregator).
	NoAggregator bool
	// NoRestart skips the start → complete `kubectl top` phase.
	NoRestart bool
	// NoLists skips the LIST latency phase (and the RSS after it): for a quicker run of
	// the other figures, such as the restart.
	NoLists bool
	// ProfileDir, when set, receives both servers' pprof profiles taken at the end of the
	// steady state: heap (<server>-heap.pb.gz, in-use and allocated) and CPU over two rounds
	// (<server>-cpu.pb.gz).
	ProfileDir string
}

// Scenarios are the named scenarios of make bench and make bench-full.
func Scenarios() map[string]Scenario {
	sc := func(nodes, pods int) Scenario {
		return Scenario{Name: fmt.Sprintf("%dx%d", nodes, pods), Spec: fleet.Spec{Nodes: nodes, PodsPerNode: pods}, Backfill: 2 * time.Hour}
	}
	return map[string]Scenario{"100x30": sc(100, 30), "1000x30": sc(1000, 30), "5000x30": sc(5000, 30)}
}

func (s Scenario) withDefaults() Scenario {
	if s.Resolution == 0 {
		s.Resolution = 15 * time.Second
	}
	if s.Rounds == 0 {
		s.Rounds = 20
	}
	if s.Clients == 0 {
		s.Clients = 20
	}
	if s.PerClient == 0 {
		s.PerClient = 5
	}
	if s.Single == 0 {
		s.Single = 30
	}
	if s.Workers == 0 {
		s.Workers = 32
	}
	s.Spec = s.Spec.WithDefaults()
	return s
}
