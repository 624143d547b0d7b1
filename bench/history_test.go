package bench

import (
	"fmt"
	"net/url"
	"testing"
	"time"
)

// Macro benchmarks of the history API (/history/v1/...): the real handler over a real
// TSDB and catalog holding days of 15s samples, requests served in-process (no network,
// no API server filters; an allow-all authorizer). Run them with
//
//	go test -run '^$' -bench History -benchtime 3x -timeout 60m ./bench/
//
// The first run writes the synthetic stores (minutes; see store), later runs reuse them.
// Each benchmark logs how long its store took to write and its size on disk.

const (
	week  = 7 * 24 * time.Hour
	month = 30 * 24 * time.Hour
	res   = 15 * time.Second
)

var (
	// onePod7d: one node running the single pod ns/p, 7 days (40,320 rounds).
	onePod7d = storeSpec{Name: "pod7d", Nodes: 1, Pods: 1, Rounds: int(week / res), Resolution: res}
	// ns1000Pods7d: 1,000 pods of namespace ns on 20 nodes, 7 days: 82 million samples.
	ns1000Pods7d = storeSpec{Name: "ns1000pods7d", Nodes: 20, Pods: 1000, Rounds: int(week / res), Resolution: res}
	// cluster30d: 50 nodes and 10 pods, 30 days (172,800 rounds), with a retention of 40
	// days so that nothing of the month is deleted: 21 million samples.
	cluster30d = storeSpec{Name: "cluster30d", Nodes: 50, Pods: 10, Rounds: int(month / res), Resolution: res,
		Retention: 40 * 24 * time.Hour}
	// ns100Pods90d: 100 pods of namespace ns on 10 nodes, 90 days (518,400 rounds), with a
	// retention of 100 days: 114 million samples.
	ns100Pods90d = storeSpec{Name: "ns100pods90d", Nodes: 10, Pods: 100, Rounds: int(90 * 24 * time.Hour / res), Resolution: res,
		Retention: 100 * 24 * time.Hour}
)

// BenchmarkHistoryPod7d reads one pod over 7 days, CPU and memory, at the default step
// (15m: 673 points): in a store of that one pod, and in the 1,000-pod namespace (where
// the TSDB picks the pod's series by UID among 1,000).
func BenchmarkHistoryPod7d(b *testing.B) {
	for _, tc := range []struct {
		name string
		spec storeSpec
		pod  string
	}{
		{"store=1pod", onePod7d, onePod7d.podName(0)},
		{"store=1000pods", ns1000Pods7d, ns1000Pods7d.podName(421)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := store(b, tc.spec)
			q := url.Values{
				"start":    {storeEnd.Add(-week).Format(time.RFC3339)},
				"end":      {storeEnd.Format(time.RFC3339)},
				"resource": {"cpu,memory"},
			}
			measure(b, f, queryCase{
				target:     fmt.Sprintf("/history/v1/namespaces/%s/pods/%s?%s", benchNamespace, tc.pod, q.Encode()),
				seriesRead: 1,
				check: func(r *response) error {
					if err := wantSeries(r, 1); err != nil {
						return err
					}
					if err := wantValues(r); err != nil {
						return err
					}
					return wantSummary(r, "p95")
				},
			})
		})
	}
}

// BenchmarkHistoryNamespaceP95_1000Pods7d summarizes a 1,000-pod namespace over 7 days:
// the p95 of CPU of every pod (1,000 series, view=summary), and the namespace's total
// (CPU and memory, p95 of the summed steps).
//
// Each runs with resolution=raw (every raw sample, the default for this step) and
// resolution=5m (the 5m tier's windows: the p95 of 5-minute averages).
func BenchmarkHistoryNamespaceP95_1000Pods7d(b *testing.B) {
	spec := ns1000Pods7d
	for _, res := range []string{"raw", "5m"} {
		b.Run("pods/res="+res, func(b *testing.B) {
			f := store(b, spec)
			measure(b, f, queryCase{
				target:     "/history/v1/namespaces/" + benchNamespace + "/pods?start=-7d&view=summary&summary=p95&resource=cpu&resolution=" + res,
				seriesRead: spec.Pods,
				check: func(r *response) error {
					if err := wantSeries(r, spec.Pods); err != nil {
						return err
					}
					if err := wantSources(r, res); err != nil {
						return err
					}
					return wantSummary(r, "p95")
				},
			})
		})
	}
	b.Run("total", func(b *testing.B) {
		f := store(b, spec)
		measure(b, f, queryCase{
			target:     "/history/v1/namespaces/" + benchNamespace + "?start=-7d&view=summary&summary=p95",
			seriesRead: spec.Pods,
			check: func(r *response) error {
				if err := wantMembers(r, spec.Pods); err != nil {
					return err
				}
				return wantSummary(r, "p95")
			},
		})
	})
}

// BenchmarkHistoryClusterSummary30d summarizes the cluster (the sum of its 50 nodes) over
// 30 days, CPU and memory, every aggregation, at the default step (1h: 721 points): from
// the raw samples, from the 5m tier (what resolution=auto picks for 1h steps) and from the
// 1h tier.
func BenchmarkHistoryClusterSummary30d(b *testing.B) {
	spec := cluster30d
	for _, res := range []string{"raw", "5m", "1h"} {
		b.Run("res="+res, func(b *testing.B) {
			f := store(b, spec)
			measure(b, f, queryCase{
				target:     "/history/v1/cluster?start=-30d&view=summary&resolution=" + res,
				seriesRead: spec.Nodes,
				check: func(r *response) error {
					if err := wantMembers(r, spec.Nodes); err != nil {
						return err
					}
					if err := wantSources(r, res); err != nil {
						return err
					}
					return wantSummary(r, "p95")
				},
			})
		})
	}
}

// BenchmarkHistoryNamespaceChart90d charts a 100-pod namespace over 90 days, CPU and memory,
// at the default step (3h: 721 points), as a dashboard's 90-day panel asks: from the raw
// samples, and as resolution=auto reads it (the 5m tier: 3h steps are too short for the 1h
// tier's five windows).
func BenchmarkHistoryNamespaceChart90d(b *testing.B) {
	spec := ns100Pods90d
	for _, res := range []string{"raw", "auto"} {
		b.Run("res="+res, func(b *testing.B) {
			f := store(b, spec)
			measure(b, f, queryCase{
				target:     "/history/v1/namespaces/" + benchNamespace + "?start=-90d&resolution=" + res,
				seriesRead: spec.Pods,
				check: func(r *response) error {
					if err := wantMembers(r, spec.Pods); err != nil {
						return err
					}
					if err := wantValues(r); err != nil {
						return err
					}
					if res == "raw" {
						return wantSources(r, "raw")
					}
					// The first step ends where the store begins: its window is not
					// the tier's, and is read raw.
					if n := len(r.Query.Sources); n == 0 || r.Query.Sources[n-1].Source != "5m" {
						return fmt.Errorf("sources %v, want the 5m tier's after the first step", r.Query.Sources)
					}
					return nil
				},
			})
		})
	}
}
