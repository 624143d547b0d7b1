package scale

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// Result holds every figure of one run.
type Result struct {
	Scenario Scenario
	Started  time.Time
	Machine  string
	Versions map[string]string

	// Setup.
	CreateTime time.Duration // the fleet's objects, pods Running
	PodsPerSec float64

	// Hindsight's write path on the fleet's past (Backfill > 0).
	BackfillSamples  int64
	BackfillTime     time.Duration // decode + write
	BackfillWrite    time.Duration // DB.Write only
	BlockBytes       int64         // the compacted block of the backfill
	BlockKeep        time.Duration // the newest part of the backfill left in the head
	BlockSamples     uint64
	BackfillDirBytes int64 // the store before compaction (WAL, head chunks)

	Servers [2]ServerResult // Hindsight, metrics-server
	Fleet   FleetResult
	Notes   []string
}

// Server indexes Result.Servers.
const (
	Hindsight = iota
	MetricsServer
)

// ServerResult is one server's figures.
type ServerResult struct {
	Name string
	// Steady state, sampled once per round.
	RSS, AnonRSS, Heap Stat // bytes
	CPUPerRound        float64
	Rounds, RoundsOver int     // rounds counted by its tick histogram; those longer than the resolution
	TickMean           float64 // seconds
	FirstComplete      time.Duration
	// LIST latencies by key (see listKey).
	Lists map[string]Latency
	// After the loaded LIST phases.
	RSSAfterLoad, AnonRSSAfterLoad, PeakRSS int64
	// Start → complete kubectl top pods -A, and one kubectl top call at the end of it.
	StartToTop, TopCall time.Duration
	StartToList         time.Duration // start → a complete direct LIST
}

// FleetResult is the fake kubelets' own cost.
type FleetResult struct {
	CPUPerRound float64
	RSS         int64
	Requests    int64
}

// Stat is a mean and a max.
type Stat struct{ Mean, Max float64 }

func stat(v []float64) Stat {
	var s Stat
	for _, x := range v {
		s.Mean += x / float64(len(v))
		s.Max = max(s.Max, x)
	}
	return s
}

// Latency is a LIST phase's percentiles.
type Latency struct {
	N        int
	P50, P99 time.Duration
	Bytes    int64 // of one response
}

func latency(d []time.Duration, bytes int64) Latency {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	q := func(p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(math.Ceil(p*float64(len(d))))-1)]
	}
	return Latency{N: len(d), P50: q(0.5), P99: q(0.99), Bytes: bytes}
}

func listKey(resource, encoding, path string, clients int) string {
	return fmt.Sprintf("%s %s %s ×%d", resource, encoding, path, clients)
}

// WriteMarkdown writes the results file.
func (r *Result) WriteMarkdown(w io.Writer) error {
	sc := r.Scenario
	h, m := r.Servers[Hindsight], r.Servers[MetricsServer]
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Side by side: %s (%d nodes × %d pods × %d containers, %s)\n\n", sc.Name, sc.Spec.Nodes, sc.Spec.PodsPerNode, sc.Spec.ContainersPerPod, sc.Resolution)
	p("Run %s on %s. Versions: %s.\n\n", r.Started.UTC().Format(time.RFC3339), r.Machine, versions(r.Versions))
	p("Fleet: %d nodes, %d pods in %d namespaces, %d Deployments; objects created and pods set Running in %s (%.0f pods/s). ",
		sc.Spec.Nodes, sc.Spec.Pods(), sc.Spec.Namespaces, sc.Spec.Deployments, dur(r.CreateTime), r.PodsPerSec)
	p("Both servers scrape the same fake kubelets (one TLS port per node on 127.0.0.1) every %s; figures are from /proc and each server's /metrics, over %d rounds of steady state.\n\n", sc.Resolution, sc.Rounds)
	p("Ratios are Hindsight ÷ metrics-server: below 1 Hindsight is cheaper or faster.\n\n")

	p("## Steady state\n\n| | Hindsight | metrics-server | ratio |\n|---|---|---|---|\n")
	row := func(name string, hv, mv float64, f func(float64) string) {
		p("| %s | %s | %s | %s |\n", name, f(hv), f(mv), ratio(hv, mv))
	}
	row("RSS mean", h.RSS.Mean, m.RSS.Mean, mib)
	row("RSS max", h.RSS.Max, m.RSS.Max, mib)
	row("anonymous RSS mean (RssAnon: without mapped files)", h.AnonRSS.Mean, m.AnonRSS.Mean, mib)
	row("Go heap in use, mean", h.Heap.Mean, m.Heap.Mean, mib)
	row("Go heap in use, max", h.Heap.Max, m.Heap.Max, mib)
	row("CPU per scrape round", h.CPUPerRound, m.CPUPerRound, ms)
	row("mean round (tick) duration", h.TickMean, m.TickMean, ms)
	p("| rounds longer than %s | %d of %d | %d of %d | |\n", sc.Resolution, h.RoundsOver, h.Rounds, m.RoundsOver, m.Rounds)
	row("start → first complete LIST", h.FirstComplete.Seconds(), m.FirstComplete.Seconds(), secs)
	p("\nThe fleet itself (fakekubelets, answering both): %s CPU per round, RSS %s, %d requests.\n",
		ms(r.Fleet.CPUPerRound), mib(float64(r.Fleet.RSS)), r.Fleet.Requests)

	if len(h.Lists) > 0 {
		p("\n## LIST latency\n\n%d requests with one client; %d clients × %d requests at once. \"direct\" is the server's own port, \"aggregator\" through the kube-apiserver (Hindsight as metrics.k8s.io/v1, metrics-server as v1beta1, both registered at once).\n\n",
			sc.Single, sc.Clients, sc.PerClient)
		p("| request | Hindsight p50 | p99 | metrics-server p50 | p99 | ratio p50 | ratio p99 | response |\n|---|---|---|---|---|---|---|---|\n")
		keys := make([]string, 0, len(h.Lists))
		for k := range h.Lists {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			hl, ml := h.Lists[k], m.Lists[k]
			p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", k, dur(hl.P50), dur(hl.P99), dur(ml.P50), dur(ml.P99),
				ratio(hl.P50.Seconds(), ml.P50.Seconds()), ratio(hl.P99.Seconds(), ml.P99.Seconds()), kib(hl.Bytes))
		}
		p("\n| after the loaded LISTs | Hindsight | metrics-server | ratio |\n|---|---|---|---|\n")
		row("RSS", float64(h.RSSAfterLoad), float64(m.RSSAfterLoad), mib)
		row("anonymous RSS", float64(h.AnonRSSAfterLoad), float64(m.AnonRSSAfterLoad), mib)
		row("peak RSS of the run (VmHWM)", float64(h.PeakRSS), float64(m.PeakRSS), mib)
	}
	if h.StartToTop > 0 {
		p("\n## Start → complete `kubectl top pods -A`\n\n")
		if sc.Backfill > 0 {
			p("Hindsight restarted (SIGTERM, start) on its store of %s of backfilled history plus the run; metrics-server restarted the same way (it needs two scrapes). kubectl 1.37 reads Hindsight (v1), kubectl 1.34 metrics-server (v1beta1). \"Complete\" is every pod but those whose container restarted in the last three resolutions.\n\n", sc.Backfill)
		}
		p("| | Hindsight | metrics-server | ratio |\n|---|---|---|---|\n")
		row("start → complete direct LIST", h.StartToList.Seconds(), m.StartToList.Seconds(), secs)
		row("start → complete kubectl top", h.StartToTop.Seconds(), m.StartToTop.Seconds(), secs)
		row("one kubectl top pods -A call", h.TopCall.Seconds(), m.TopCall.Seconds(), secs)
	}
	if r.BackfillSamples > 0 {
		p("\n## Hindsight's store (no peer: metrics-server keeps nothing)\n\n")
		p("- Write path (scraper.Decode + tsdb.DB.Write, one process, as fast as it goes): %d samples of %s of the fleet's past in %s: **%.2f M samples/s** (%.2f M/s in DB.Write alone); one round of this fleet is %d samples, so one core ingests a round in %s.\n",
			r.BackfillSamples, sc.Backfill, r.BackfillTime.Round(100*time.Millisecond), float64(r.BackfillSamples)/r.BackfillTime.Seconds()/1e6,
			float64(r.BackfillSamples)/r.BackfillWrite.Seconds()/1e6, r.BackfillSamples/max(1, int64(sc.Backfill/sc.Resolution)),
			dur(time.Duration(float64(r.BackfillWrite)/float64(max(1, int64(sc.Backfill/sc.Resolution))))))
		if r.BlockSamples > 0 {
			p("- After compaction into one block (all but the newest %s, which stays in the head as when the TSDB compacts a head): %s for %d samples, **%.2f bytes per sample**; before it (WAL + head chunks) %s, %.2f bytes per sample of the whole backfill.\n",
				r.BlockKeep, mib(float64(r.BlockBytes)), r.BlockSamples, float64(r.BlockBytes)/float64(r.BlockSamples), mib(float64(r.BackfillDirBytes)), float64(r.BackfillDirBytes)/float64(r.BackfillSamples))
		}
	}
	if len(r.Notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func versions(v map[string]string) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+v[k])
	}
	return strings.Join(parts, ", ")
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func mib(v float64) string  { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
func kib(v int64) string    { return fmt.Sprintf("%.0f KiB", float64(v)/(1<<10)) }
func ms(v float64) string   { return fmt.Sprintf("%.1f ms", v*1000) }
func secs(v float64) string { return fmt.Sprintf("%.2f s", v) }
func dur(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
