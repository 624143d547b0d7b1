package bench

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
)

// BenchmarkPromQLNamespaceChart90d runs a Grafana panel's 90-day queries of a 100-pod
// namespace through Prometheus' engine (the engine package promapi runs), at 3h steps (721
// points) with Grafana's $__rate_interval of a 3h step: CPU per pod and memory peaks per pod
// (the store holds pod series). raw reads the raw samples; auto reads them as
// max_source_resolution=auto does (the 5m tier: a fifth of the 3h step and of the 3h
// range). It logs how far auto's values are from raw's.
func BenchmarkPromQLNamespaceChart90d(b *testing.B) {
	spec := ns100Pods90d
	const step = 3 * time.Hour
	start, end := storeEnd.Add(-90*24*time.Hour), storeEnd
	for _, qc := range []struct{ name, query string }{
		{"cpu", `sum by (pod) (rate(pod_cpu_usage_seconds_total{namespace="` + benchNamespace + `"}[3h15s]))`},
		{"memory", `max by (pod) (max_over_time(pod_memory_working_set_bytes{namespace="` + benchNamespace + `"}[3h15s]))`},
	} {
		var raw promql.Matrix
		for _, src := range []string{"raw", "auto"} {
			b.Run(qc.name+"/res="+src, func(b *testing.B) {
				f := store(b, spec)
				var q storage.Queryable = f.db.Queryable()
				if src == "auto" {
					q = f.db.DownsampledQueryable(0, true)
				}
				eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e9, Timeout: 10 * time.Minute, LookbackDelta: 5 * time.Minute})
				run := func() (promql.Matrix, int64) {
					qry, err := eng.NewRangeQuery(b.Context(), q, nil, qc.query, start, end, step)
					if err != nil {
						b.Fatal(err)
					}
					defer qry.Close()
					res := qry.Exec(b.Context())
					if res.Err != nil {
						b.Fatal(res.Err)
					}
					m, err := res.Matrix()
					if err != nil {
						b.Fatal(err)
					}
					out := make(promql.Matrix, len(m))
					for i, s := range m {
						out[i] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...)}
					}
					return out, qry.Stats().Samples.TotalSamples
				}
				m, samples := run()
				if len(m) != spec.Pods {
					b.Fatalf("%d series, want %d", len(m), spec.Pods)
				}
				points := 0
				for _, s := range m {
					points += len(s.Floats)
				}
				b.Logf("%s: %d series, %d points, %d samples read", qc.query, len(m), points, samples)
				if src == "raw" {
					raw = m
				} else if raw != nil {
					b.Logf("auto against raw: %s", compareMatrices(raw, m))
				}
				b.ReportMetric(float64(samples), "samples/op")
				for b.Loop() {
					run()
				}
			})
		}
	}
}

// compareMatrices says how far b's values are from a's, series and steps matched.
func compareMatrices(a, b promql.Matrix) string {
	maxRel, sumRel, n, missing := 0.0, 0.0, 0, 0
	for i := range a {
		if i >= len(b) || a[i].Metric.String() != b[i].Metric.String() {
			return fmt.Sprintf("series %d differ", i)
		}
		at := map[int64]float64{}
		for _, p := range b[i].Floats {
			at[p.T] = p.F
		}
		for _, p := range a[i].Floats {
			v, ok := at[p.T]
			if !ok {
				missing++
				continue
			}
			if p.F != 0 {
				rel := math.Abs(v-p.F) / math.Abs(p.F)
				maxRel, sumRel, n = max(maxRel, rel), sumRel+rel, n+1
			}
		}
	}
	return fmt.Sprintf("relative difference max %.3g%%, mean %.3g%% over %d points; %d raw points missing", maxRel*100, sumRel/float64(max(n, 1))*100, n, missing)
}
