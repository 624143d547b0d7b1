package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/hindsight-metrics/hindsight/bench/fleet"
	"github.com/hindsight-metrics/hindsight/test/cluster"
)

const (
	acceptJSON     = "application/json"
	acceptProtobuf = "application/vnd.kubernetes.protobuf"
)

// get sends GET path to cfg's host and returns the body, failing on any status but 200.
func get(ctx context.Context, hc *http.Client, cfg *rest.Config, path, accept string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.300s", path, resp.Status, body)
	}
	return body, nil
}

func httpClient(cfg *rest.Config) (*http.Client, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("http client for %s: %w", cfg.Host, err)
	}
	hc.Timeout = 2 * time.Minute
	return hc, nil
}

// servedPods lists server i's pod metrics on its own port.
func (r *run) servedPods(ctx context.Context, hc *http.Client, i int) (map[string]bool, error) {
	body, err := get(ctx, hc, r.direct[i], "/apis/metrics.k8s.io/v1beta1/pods", acceptJSON)
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []struct {
			Metadata struct{ Namespace, Name string }
		}
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("decode pod metrics: %w", err)
	}
	m := make(map[string]bool, len(l.Items))
	for _, it := range l.Items {
		m[it.Metadata.Namespace+"/"+it.Metadata.Name] = true
	}
	return m, nil
}

// missing counts the fleet's pods that a complete answer at t must hold and served lacks:
// every pod but those with a container restarted in the last three resolutions (rightly
// missing under metrics-server's fresh-container rule until its second point).
func (r *run) missing(served map[string]bool, t time.Time) int {
	n := 0
	for g := range r.sc.Spec.Pods() {
		p := r.sc.Spec.Pod(g)
		if !served[p.Namespace+"/"+p.Name] && !r.sc.Spec.RecentlyRestarted(p, t, 3*r.sc.Resolution) {
			n++
		}
	}
	return n
}

// waitComplete polls server i's pod metrics until they are complete.
func (r *run) waitComplete(ctx context.Context, i int, timeout time.Duration) error {
	hc, err := httpClient(r.direct[i])
	if err != nil {
		return err
	}
	last := -1
	err = cluster.Poll(ctx, timeout, 250*time.Millisecond, "every pod served", func(ctx context.Context) (bool, error) {
		served, err := r.servedPods(ctx, hc, i)
		if err != nil {
			return false, nil // not serving yet
		}
		last = r.missing(served, time.Now())
		return last == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%w (%d pods missing at the last try)", err, last)
	}
	return nil
}

// waitBoth waits until both servers are complete and records when each got there, counted
// from since[i].
func (r *run) waitBoth(ctx context.Context, since [2]time.Time, timeout time.Duration, record func(i int, d time.Duration)) error {
	var g errgroup.Group
	for i := range 2 {
		g.Go(func() error {
			if err := r.waitComplete(ctx, i, timeout); err != nil {
				return fmt.Errorf("%s: %w", r.res.Servers[i].Name, err)
			}
			record(i, time.Since(since[i]))
			return nil
		})
	}
	return g.Wait()
}

// scrapeMetrics reads server i's /metrics.
func (r *run) scrapeMetrics(ctx context.Context, hc *http.Client, i int) (map[string]*dto.MetricFamily, error) {
	body, err := get(ctx, hc, r.direct[i], "/metrics", "text/plain")
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(body))
}

// tickNames are each server's round-duration histograms.
var tickNames = [2]string{"hindsight_manager_tick_duration_seconds", "metrics_server_manager_tick_duration_seconds"}

// ticks is a round-duration histogram's count, sum and count up to the resolution.
type ticks struct {
	count, within uint64
	sum           float64
}

func tickStats(mf map[string]*dto.MetricFamily, name string, resolution time.Duration) (ticks, error) {
	f, ok := mf[name]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetHistogram() == nil {
		return ticks{}, fmt.Errorf("no histogram %s", name)
	}
	h := f.GetMetric()[0].GetHistogram()
	t := ticks{count: h.GetSampleCount(), sum: h.GetSampleSum()}
	found := false
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() >= resolution.Seconds() {
			t.within, found = b.GetCumulativeCount(), true
			break
		}
	}
	if !found {
		return ticks{}, fmt.Errorf("%s has no bucket at or above %s", name, resolution)
	}
	return t, nil
}

func gauge(mf map[string]*dto.MetricFamily, name string) (float64, error) {
	f, ok := mf[name]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge() == nil {
		return 0, fmt.Errorf("no gauge %s", name)
	}
	return f.GetMetric()[0].GetGauge().GetValue(), nil
}

// steady samples both servers once per round for Rounds rounds, after two rounds of warm-up.
func (r *run) steady(ctx context.Context) error {
	var hcs [2]*http.Client
	for i := range 2 {
		var err error
		if hcs[i], err = httpClient(r.direct[i]); err != nil {
			return err
		}
	}
	read := func() (t [2]ticks, cpu [3]float64, err error) {
		for i := range 2 {
			mf, err := r.scrapeMetrics(ctx, hcs[i], i)
			if err != nil {
				return t, cpu, err
			}
			if t[i], err = tickStats(mf, tickNames[i], r.sc.Resolution); err != nil {
				return t, cpu, err
			}
			st, err := r.procs[i]().Stats()
			if err != nil {
				return t, cpu, err
			}
			cpu[i] = st.CPUSeconds
		}
		st, err := r.fleetP.Stats()
		cpu[2] = st.CPUSeconds
		return t, cpu, err
	}
	// Warm-up: two more rounds of each server.
	t0, _, err := read()
	if err != nil {
		return err
	}
	if err := cluster.Poll(ctx, 4*r.sc.Resolution+time.Minute, time.Second, "two warm-up rounds", func(context.Context) (bool, error) {
		t, _, err := read()
		return err == nil && t[0].count >= t0[0].count+2 && t[1].count >= t0[1].count+2, err
	}); err != nil {
		return err
	}
	begin := time.Now()
	tStart, cpuStart, err := read()
	if err != nil {
		return err
	}
	var rss, anon, heap [2][]float64
	var fleetRSS int64
	tk := time.NewTicker(r.sc.Resolution)
	defer tk.Stop()
	for range r.sc.Rounds {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
		for i := range 2 {
			st, err := r.procs[i]().Stats()
			if err != nil {
				return err
			}
			rss[i] = append(rss[i], float64(st.RSSBytes))
			anon[i] = append(anon[i], float64(st.AnonRSSBytes))
			mf, err := r.scrapeMetrics(ctx, hcs[i], i)
			if err != nil {
				return err
			}
			v, err := gauge(mf, "go_memstats_heap_inuse_bytes")
			if err != nil {
				return err
			}
			heap[i] = append(heap[i], v)
		}
		st, err := r.fleetP.Stats()
		if err != nil {
			return err
		}
		fleetRSS = max(fleetRSS, st.RSSBytes)
	}
	tEnd, cpuEnd, err := read()
	if err != nil {
		return err
	}
	elapsed := time.Since(begin)
	for i := range 2 {
		s := &r.res.Servers[i]
		s.RSS, s.AnonRSS, s.Heap = stat(rss[i]), stat(anon[i]), stat(heap[i])
		s.Rounds = int(tEnd[i].count - tStart[i].count)
		s.RoundsOver = s.Rounds - int(tEnd[i].within-tStart[i].within)
		if s.Rounds > 0 {
			s.CPUPerRound = (cpuEnd[i] - cpuStart[i]) / float64(s.Rounds)
			s.TickMean = (tEnd[i].sum - tStart[i].sum) / float64(s.Rounds)
		}
		r.logf("%s: RSS %s mean, %s max; heap %s; CPU %s per round over %d rounds (%d over %s)", s.Name,
			mib(s.RSS.Mean), mib(s.RSS.Max), mib(s.Heap.Mean), ms(s.CPUPerRound), s.Rounds, s.RoundsOver, r.sc.Resolution)
	}
	if r.sc.ProfileDir != "" {
		if err := r.profiles(ctx); err != nil {
			return err
		}
	}
	r.res.Fleet.CPUPerRound = (cpuEnd[2] - cpuStart[2]) / (elapsed.Seconds() / r.sc.Resolution.Seconds())
	r.res.Fleet.RSS = fleetRSS
	if r.res.Fleet.Requests, err = r.fleetRequests(ctx); err != nil {
		return fmt.Errorf("fleet stats: %w", err)
	}
	return nil
}

// fleetRequests reads how many requests the fleet has answered, from node 0's port.
func (r *run) fleetRequests(ctx context.Context) (int64, error) {
	n, err := r.client.CoreV1().Nodes().Get(ctx, fleet.NodeName(0), metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	cfg := rest.CopyConfig(r.direct[0]) // the cluster CA and an admin client certificate
	cfg.Host = fmt.Sprintf("https://127.0.0.1:%d", n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	hc, err := httpClient(cfg)
	if err != nil {
		return 0, err
	}
	body, err := get(ctx, hc, cfg, fleet.StatsPath, "application/json")
	if err != nil {
		return 0, err
	}
	var stats struct{ Requests int64 }
	if err := json.Unmarshal(body, &stats); err != nil {
		return 0, fmt.Errorf("decode %s: %w", fleet.StatsPath, err)
	}
	return stats.Requests, nil
}

// lists measures LIST latencies: for each path, resource and encoding, one client then
// Clients at once, on Hindsight then metrics-server, so both take the same load.
func (r *run) lists(ctx context.Context) error {
	if r.sc.NoLists {
		return nil
	}
	type target struct {
		path string
		cfg  func(i int) *rest.Config
		ver  func(i int) string
	}
	targets := []target{{"direct", func(i int) *rest.Config { return r.direct[i] }, func(int) string { return "v1beta1" }}}
	if !r.sc.NoAggregator {
		targets = append(targets, target{"aggregator", func(int) *rest.Config { return r.aggregated }, func(i int) string { return r.versions[i] }})
	}
	for _, tg := range targets {
		for _, res := range []string{"pods", "nodes"} {
			for _, enc := range []struct{ name, accept string }{{"json", acceptJSON}, {"protobuf", acceptProtobuf}} {
				for _, clients := range []int{1, r.sc.Clients} {
					for i := range 2 {
						cfg := tg.cfg(i)
						n := r.sc.Single
						if clients > 1 {
							n = r.sc.PerClient
						}
						lat, err := listLoad(ctx, cfg, "/apis/metrics.k8s.io/"+tg.ver(i)+"/"+res, enc.accept, clients, n)
						if err != nil {
							return fmt.Errorf("%s %s %s %s: %w", r.res.Servers[i].Name, tg.path, res, enc.name, err)
						}
						s := &r.res.Servers[i]
						if s.Lists == nil {
							s.Lists = map[string]Latency{}
						}
						k := listKey(res, enc.name, tg.path, clients)
						s.Lists[k] = lat
						r.logf("%s %s: p50 %s p99 %s", s.Name, k, dur(lat.P50), dur(lat.P99))
					}
				}
			}
		}
	}
	// What the load left behind, read as soon as it has ended.
	for i := range 2 {
		st, err := r.procs[i]().Stats()
		if err != nil {
			return err
		}
		s := &r.res.Servers[i]
		s.RSSAfterLoad, s.AnonRSSAfterLoad, s.PeakRSS = st.RSSBytes, st.AnonRSSBytes, st.PeakRSSBytes
	}
	return nil
}

// listLoad sends n GETs from each of clients goroutines and returns the latencies.
func listLoad(ctx context.Context, cfg *rest.Config, path, accept string, clients, n int) (Latency, error) {
	hc, err := httpClient(cfg)
	if err != nil {
		return Latency{}, err
	}
	var mu sync.Mutex
	var d []time.Duration
	var size int64
	g, ctx := errgroup.WithContext(ctx)
	for range clients {
		g.Go(func() error {
			for range n {
				begin := time.Now()
				body, err := get(ctx, hc, cfg, path, accept)
				if err != nil {
					return err
				}
				el := time.Since(begin)
				mu.Lock()
				d = append(d, el)
				size = int64(len(body))
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Latency{}, err
	}
	return latency(d, size), nil
}

// profiles saves both servers' heap profiles and CPU profiles over two rounds, taken at once.
func (r *run) profiles(ctx context.Context) error {
	if err := os.MkdirAll(r.sc.ProfileDir, 0o755); err != nil {
		return err
	}
	secs := int(2 * r.sc.Resolution.Seconds())
	var g errgroup.Group
	for i := range 2 {
		for _, p := range []struct{ name, path string }{
			{"heap", "/debug/pprof/heap"},
			{"cpu", fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)},
		} {
			g.Go(func() error {
				hc, err := httpClient(r.direct[i])
				if err != nil {
					return err
				}
				body, err := get(ctx, hc, r.direct[i], p.path, "application/octet-stream")
				if err != nil {
					return fmt.Errorf("%s %s profile: %w", r.res.Servers[i].Name, p.name, err)
				}
				return os.WriteFile(filepath.Join(r.sc.ProfileDir, r.res.Servers[i].Name+"-"+p.name+".pb.gz"), body, 0o644)
			})
		}
	}
	return g.Wait()
}
