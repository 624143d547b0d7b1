package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/hindsight-metrics/hindsight/httpapi"
	"github.com/hindsight-metrics/hindsight/tsdb"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// Synthetic stores.
//
// A store is a Hindsight storage directory (the TSDB in <dir>/tsdb and the catalog in
// <dir>/catalog.db) filled with Rounds scrape rounds of a fake cluster, every Resolution,
// the last one at storeEnd. Writing one takes minutes, so a store is written once per
// process and kept under os.TempDir()/hindsight-bench/<key>, where the next run finds it:
// it is written in <dir>.building-<pid>, closed, marked complete (storeMarker) and only
// then renamed into place, so a directory under its final name is always complete.
// Change fixtureVersion when the generator changes, to stop reusing older stores.

// fixtureVersion is part of every store's key.
const fixtureVersion = 3 // 2: the stores hold the downsampled tiers (rolled up after compaction); 3: 24h batches for 1h

// storeEnd is the time of every store's last round, and the handler's "now": relative
// ranges (start=-7d) then always cover the same samples. It is in the past, so that the
// storage never holds a sample from the future of the wall clock.
var storeEnd = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// benchNamespace holds every pod of every store.
const benchNamespace = "ns"

// maxGap is the TSDB's longest interval over which a CPU rate is computed (2.5
// resolutions): a range query reads that much before its first step.
func (s storeSpec) maxGap() time.Duration { return s.Resolution * 5 / 2 }

// storeMarker is the file that marks a store complete; it holds its buildInfo.
const storeMarker = "bench-store.json"

// storeSpec describes a synthetic store.
type storeSpec struct {
	Name  string
	Nodes int
	// Pods are the pods of benchNamespace, spread round-robin over the first nodes. Each
	// has its own pod-level series (CPU counter and working set); there are no container
	// samples (the history endpoints used here read pod and node series only).
	Pods       int
	Rounds     int
	Resolution time.Duration
	Retention  time.Duration
}

// key names the store's directory: every parameter that changes its content.
func (s storeSpec) key() string {
	return fmt.Sprintf("%s-n%d-p%d-r%d-res%s-ret%s-end%d-v%d", s.Name, s.Nodes, s.Pods, s.Rounds,
		s.Resolution, s.Retention, storeEnd.Unix(), fixtureVersion)
}

// start is the time of the first round.
func (s storeSpec) start() time.Time {
	return storeEnd.Add(-time.Duration(s.Rounds-1) * s.Resolution)
}

// samples is how many samples the store holds: CPU and memory of every node and pod.
func (s storeSpec) samples() int64 { return int64(s.Rounds) * int64(s.Nodes+s.Pods) * 2 }

// roundsIn counts the rounds whose scrape time is in (from, to].
func (s storeSpec) roundsIn(from, to time.Time) int {
	first, res := s.start(), s.Resolution
	kmin := 0
	if from.After(first) || from.Equal(first) {
		kmin = int(from.Sub(first)/res) + 1
	}
	kmax := s.Rounds - 1
	if to.Before(first) {
		return 0
	}
	if to.Before(storeEnd) {
		kmax = int(to.Sub(first) / res)
	}
	return max(0, kmax-kmin+1)
}

func (s storeSpec) nodeName(n int) string { return fmt.Sprintf("node-%03d", n) }

// podName is "p" in a store of one pod, else pod-NNNN.
func (s storeSpec) podName(i int) string {
	if s.Pods == 1 {
		return "p"
	}
	return fmt.Sprintf("pod-%04d", i)
}

func podUID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

// podNode is the node pod i runs on.
func (s storeSpec) podNode(i int) int { return i % s.Nodes }

// buildInfo is what the marker file records about a store's writing.
type buildInfo struct {
	Key          string  `json:"key"`
	Samples      int64   `json:"samples"`
	Appended     float64 `json:"appended"`
	Skipped      float64 `json:"skipped"`
	WriteSeconds float64 `json:"writeSeconds"` // the rounds' db.Write calls
	SettleSecs   float64 `json:"settleSeconds"`
	TotalSeconds float64 `json:"totalSeconds"` // open to close, compaction included
	Bytes        int64   `json:"bytes"`
	TSDBBytes    int64   `json:"tsdbBytes"`
	WALBytes     int64   `json:"walBytes"`
	CatalogBytes int64   `json:"catalogBytes"`
	Blocks       int     `json:"blocks"`
	PeakRSSBytes int64   `json:"peakRSSBytes"` // of the whole process while it wrote the store
	BuiltAt      string  `json:"builtAt"`
	// RollupSeconds is one rollup pass over the whole store (both tiers), after
	// compaction; TierBytes each tier's directory after it, by tier name.
	RollupSeconds float64            `json:"rollupSeconds"`
	TierBytes     map[string]int64   `json:"tierBytes"`
	TierSamples   map[string]float64 `json:"tierSamples"`
}

func (bi buildInfo) String() string {
	return fmt.Sprintf("%d samples written in %.1fs (%.0f samples/s; %.1fs more until compaction settled, %.1fs in all), "+
		"%d bytes on disk (%.2f B/sample: tsdb %d of which WAL %d, %d blocks; catalog %d), peak RSS while writing %.0f MiB",
		bi.Samples, bi.WriteSeconds, float64(bi.Samples)/bi.WriteSeconds, bi.SettleSecs, bi.TotalSeconds,
		bi.Bytes, float64(bi.Bytes)/float64(bi.Samples), bi.TSDBBytes, bi.WALBytes, bi.Blocks, bi.CatalogBytes,
		float64(bi.PeakRSSBytes)/(1<<20)) +
		fmt.Sprintf("; rollup of both tiers %.1fs (%.3f of the write time), tiers %v bytes, %v samples", bi.RollupSeconds, bi.RollupSeconds/bi.WriteSeconds, bi.TierBytes, bi.TierSamples)
}

// fixture is an open store and the history API over it.
type fixture struct {
	spec    storeSpec
	dir     string
	db      *tsdb.DB
	cat     *catalog.Catalog
	handler http.Handler
	build   buildInfo
	reused  bool
	openDur time.Duration
	bytes   int64 // on disk when opened
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[string]*fixtureOnce{}
)

type fixtureOnce struct {
	once sync.Once
	f    *fixture
	err  error
}

// store returns the open store of spec, writing it first when no earlier run left it. It
// skips b under -short: writing a store takes minutes.
func store(b *testing.B, spec storeSpec) *fixture {
	b.Helper()
	if testing.Short() {
		b.Skipf("skipping: needs a synthetic store of %d samples (%s), which takes minutes to write the first time", spec.samples(), spec.Name)
	}
	fixturesMu.Lock()
	fo := fixtures[spec.key()]
	if fo == nil {
		fo = &fixtureOnce{}
		fixtures[spec.key()] = fo
	}
	fixturesMu.Unlock()
	fo.once.Do(func() { fo.f, fo.err = openOrBuild(spec) })
	if fo.err != nil {
		b.Fatalf("store %s: %v", spec.Name, fo.err)
	}
	f := fo.f
	how := "written by this run"
	if f.reused {
		how = "reused from an earlier run (figures of its writing)"
	}
	b.Logf("store %s at %s, %s: %s; opened in %s, %d bytes on disk now",
		spec.Name, f.dir, how, f.build, f.openDur.Round(time.Millisecond), f.bytes)
	return f
}

// closeFixtures closes every open store; TestMain calls it.
func closeFixtures() {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	for _, fo := range fixtures {
		if fo.f != nil {
			if err := errors.Join(fo.f.db.Close(), fo.f.cat.Close()); err != nil {
				fmt.Fprintf(os.Stderr, "close store %s: %v\n", fo.f.spec.Name, err)
			}
		}
	}
}

func openOrBuild(spec storeSpec) (*fixture, error) {
	root := filepath.Join(os.TempDir(), "hindsight-bench")
	dir := filepath.Join(root, spec.key())
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	removeStaleBuilds(dir)
	if info, err := readMarker(dir); err == nil {
		f, err := openStore(spec, dir)
		if err == nil {
			f.build, f.reused = info, true
			return f, nil
		}
		if errors.Is(err, tsdb.ErrLocked) || errors.Is(err, catalog.ErrLocked) {
			return nil, fmt.Errorf("another process uses %s: %w", dir, err)
		}
		// A damaged store: write it again.
		fmt.Fprintf(os.Stderr, "bench: store %s does not open (%v): writing it again\n", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	building := fmt.Sprintf("%s.building-%d", dir, os.Getpid())
	if err := os.RemoveAll(building); err != nil {
		return nil, err
	}
	info, err := buildStore(spec, building)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("write store: %w", err), os.RemoveAll(building))
	}
	if err := os.Rename(building, dir); err != nil {
		// Another process completed the same store first: use its.
		if _, merr := readMarker(dir); merr != nil {
			return nil, errors.Join(fmt.Errorf("move the store into place: %w", err), os.RemoveAll(building))
		}
		_ = os.RemoveAll(building)
	}
	f, err := openStore(spec, dir)
	if err != nil {
		return nil, err
	}
	f.build = info
	return f, nil
}

// removeStaleBuilds removes the half-written stores of processes that are gone.
func removeStaleBuilds(dir string) {
	matches, _ := filepath.Glob(dir + ".building-*")
	for _, m := range matches {
		pid, err := strconv.Atoi(m[strings.LastIndexByte(m, '-')+1:])
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(m)
		}
	}
}

func readMarker(dir string) (buildInfo, error) {
	var info buildInfo
	b, err := os.ReadFile(filepath.Join(dir, storeMarker))
	if err != nil {
		return info, err
	}
	return info, json.Unmarshal(b, &info)
}

func tsdbConfig(spec storeSpec, dir string) tsdb.Config {
	return tsdb.Config{Dir: dir, Retention: spec.Retention, Resolution: spec.Resolution,
		ExpectedSeries: 2 * (spec.Nodes + spec.Pods)}
}

func catalogPath(dir string) string { return filepath.Join(dir, "catalog.db") }

func fixedNow() time.Time { return storeEnd }

// allowAll is an authorizer that allows every request.
var allowAll = authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
	return authorizer.DecisionAllow, "", nil
})

// benchQueryTimeout replaces the handler's 1-minute default, so that a slow query still
// gives a figure; queryStats warns when a query takes longer than the default.
const benchQueryTimeout = 30 * time.Minute

func openStore(spec storeSpec, dir string) (*fixture, error) {
	start := time.Now()
	db, err := tsdb.Open(tsdbConfig(spec, dir), nil, nil)
	if err != nil {
		return nil, err
	}
	cat, err := catalog.Open(catalogPath(dir), catalog.Options{Now: fixedNow, CompactEvery: -1}, nil)
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	h, err := httpapi.New(httpapi.Config{
		Samples: db, Catalog: cat, Authorizer: allowAll,
		Resolution: spec.Resolution, QueryTimeout: benchQueryTimeout, Now: fixedNow,
	})
	if err != nil {
		return nil, errors.Join(err, db.Close(), cat.Close())
	}
	f := &fixture{spec: spec, dir: dir, db: db, cat: cat, handler: h, openDur: time.Since(start)}
	f.bytes, _ = dirSize(dir)
	return f, nil
}

// buildStore writes spec's store into dir and marks it complete.
func buildStore(spec storeSpec, dir string) (info buildInfo, err error) {
	ctx := context.Background()
	debug.FreeOSMemory()
	resetPeakRSS()
	begin := time.Now()
	reg := prometheus.NewRegistry()
	db, err := tsdb.Open(tsdbConfig(spec, dir), nil, reg)
	if err != nil {
		return info, err
	}
	cat, err := catalog.Open(catalogPath(dir), catalog.Options{Now: fixedNow, CompactEvery: -1}, nil)
	if err != nil {
		return info, errors.Join(err, db.Close())
	}
	defer func() {
		if cerr := errors.Join(db.Close(), cat.Close()); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := fillCatalog(ctx, spec, cat); err != nil {
		return info, err
	}

	gen := newCluster(spec)
	writeStart := time.Now()
	for i := range spec.Rounds {
		if err := db.Write(ctx, gen.round(i)); err != nil {
			return info, fmt.Errorf("round %d: %w", i, err)
		}
	}
	info.WriteSeconds = time.Since(writeStart).Seconds()
	settleStart := time.Now()
	if err := settleCompaction(reg, spec); err != nil {
		return info, err
	}
	info.SettleSecs = time.Since(settleStart).Seconds()
	// The rollups, in one pass: the store's end is in the past, so every window is final.
	rollupStart := time.Now()
	if err := db.Rollup(ctx); err != nil {
		return info, fmt.Errorf("rollup: %w", err)
	}
	info.RollupSeconds = time.Since(rollupStart).Seconds()
	info.Appended = gauge(reg, "hindsight_storage_appended_samples_total")
	info.Skipped = gauge(reg, "hindsight_storage_skipped_samples_total")
	info.Blocks = int(gauge(reg, "prometheus_tsdb_blocks_loaded"))
	if err := errors.Join(db.Close(), cat.Close()); err != nil {
		return info, err
	}
	info.TotalSeconds = time.Since(begin).Seconds()
	info.Key, info.Samples = spec.key(), spec.samples()
	info.PeakRSSBytes = peakRSS()
	info.BuiltAt = time.Now().UTC().Format(time.RFC3339)
	if info.Appended != float64(info.Samples) {
		return info, fmt.Errorf("the TSDB appended %.0f samples of %d (%.0f skipped)", info.Appended, info.Samples, info.Skipped)
	}
	if info.Bytes, err = dirSize(dir); err != nil {
		return info, err
	}
	info.TSDBBytes, _ = dirSize(filepath.Join(dir, "tsdb"))
	info.WALBytes, _ = dirSize(filepath.Join(dir, "tsdb", "wal"))
	info.TierBytes, info.TierSamples = map[string]int64{}, map[string]float64{}
	for t := range tsdb.NumTiers {
		info.TierBytes[t.String()], _ = dirSize(filepath.Join(dir, "tiers", t.String()))
		info.TierSamples[t.String()] = gaugeWith(reg, "hindsight_rollup_samples_written_total", "tier", t.String())
	}
	if st, err := os.Stat(catalogPath(dir)); err == nil {
		info.CatalogBytes = st.Size()
	}
	m, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return info, err
	}
	return info, os.WriteFile(filepath.Join(dir, storeMarker), append(m, '\n'), 0o644)
}

// settleCompaction waits until the TSDB has compacted its head down to the last ~3h and
// no compaction has run for a few seconds, so that the store is in the state of a server
// that has been running all along, and no compaction runs during the measurements.
func settleCompaction(reg *prometheus.Registry, spec storeSpec) error {
	const poll, quiet, limit = 500 * time.Millisecond, 4 * time.Second, 15 * time.Minute
	headLimit := float64((3*time.Hour + 2*spec.Resolution).Milliseconds())
	deadline := time.Now().Add(limit)
	var lastCompactions float64 = -1
	var stableSince time.Time
	for time.Now().Before(deadline) {
		head := gauge(reg, "prometheus_tsdb_head_max_time") - gauge(reg, "prometheus_tsdb_head_min_time")
		busy := gauge(reg, "prometheus_tsdb_compaction_populating_block") > 0
		n := gauge(reg, "prometheus_tsdb_compactions_total") + gauge(reg, "prometheus_tsdb_blocks_loaded")
		switch {
		case head > headLimit || busy || n != lastCompactions:
			lastCompactions, stableSince = n, time.Time{}
		case stableSince.IsZero():
			stableSince = time.Now()
		case time.Since(stableSince) >= quiet:
			return nil
		}
		time.Sleep(poll)
	}
	return fmt.Errorf("compaction did not settle within %s", limit)
}

// gauge returns the sum of the values of the metric family name on reg, 0 when absent.
func gauge(reg *prometheus.Registry, name string) float64 { return gaugeWith(reg, name, "", "") }

// gaugeWith is gauge over the series whose label has value (every series when label is "").
func gaugeWith(reg *prometheus.Registry, name, label, value string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return math.NaN()
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == label && l.GetValue() == value }) {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// fillCatalog records every node and pod, live since before the first round, with their
// requests, limits, capacity and allocatable.
func fillCatalog(ctx context.Context, spec storeSpec, cat *catalog.Catalog) error {
	first := spec.start().Add(-time.Hour)
	for n := range spec.Nodes {
		err := cat.UpsertNode(catalog.NodeRecord{
			Name: spec.nodeName(n), UID: fmt.Sprintf("node-uid-%03d", n),
			Labels:       map[string]string{"kubernetes.io/hostname": spec.nodeName(n), "topology.kubernetes.io/zone": fmt.Sprintf("zone-%c", 'a'+n%3)},
			Capacity:     map[string]int64{"cpu": 8000, "memory": 32 << 30},
			Allocatable:  map[string]int64{"cpu": 7800, "memory": 30 << 30},
			Zone:         fmt.Sprintf("zone-%c", 'a'+n%3),
			InstanceType: "bench.2xlarge",
			FirstSeen:    first, LastSeen: storeEnd,
		})
		if err != nil {
			return err
		}
	}
	for i := range spec.Pods {
		app := fmt.Sprintf("app-%02d", i%20)
		err := cat.UpsertPod(catalog.PodRecord{
			UID: podUID(i), Namespace: benchNamespace, Name: spec.podName(i), Node: spec.nodeName(spec.podNode(i)),
			Labels:     map[string]string{"app": app, "tier": []string{"web", "worker", "db"}[i%3]},
			Owner:      catalog.Owner{Kind: "Deployment", Name: app},
			Controller: catalog.Owner{Kind: "ReplicaSet", Name: app + "-5d8f7c9b6"},
			QoSClass:   "Burstable",
			Containers: []catalog.ContainerSpec{
				{Name: "app", Requests: map[string]int64{"cpu": int64(100 + 50*(i%10)), "memory": int64(256+64*(i%8)) << 20},
					Limits: map[string]int64{"memory": int64(512+128*(i%8)) << 20}},
				{Name: "sidecar", Requests: map[string]int64{"cpu": 50, "memory": 64 << 20},
					Limits: map[string]int64{"cpu": 200, "memory": 128 << 20}},
			},
			FirstSeen: first, LastSeen: storeEnd,
		})
		if err != nil {
			return err
		}
	}
	return cat.Flush(ctx)
}

// cluster generates the rounds of a store. Every object's CPU rate follows a daily sine
// around its own base rate, with noise; its working set a daily sine plus a random walk of
// 4 KiB pages. Sample times lag the scrape by up to 3s, as cAdvisor's do. Values and
// times depend only on the seed, so every run writes the same store.
type cluster struct {
	spec  storeSpec
	rng   *rand.Rand
	b     tsdb.Batch
	objs  []*tsdb.Sample // nodes' then pods', in batch order
	base  []float64      // cores
	phase []float64
	mem   []float64 // base working set, bytes
	walk  []float64
}

func newCluster(spec storeSpec) *cluster {
	c := &cluster{spec: spec, rng: rand.New(rand.NewPCG(uint64(spec.Nodes), uint64(spec.Pods)))}
	c.b.Nodes = make([]tsdb.NodeScrape, spec.Nodes)
	perNode := make([]int, spec.Nodes)
	for i := range spec.Pods {
		perNode[spec.podNode(i)]++
	}
	for n := range spec.Nodes {
		c.b.Nodes[n] = tsdb.NodeScrape{Node: spec.nodeName(n), HasNode: true, Pods: make([]tsdb.PodSample, 0, perNode[n])}
	}
	for i := range spec.Pods {
		ns := &c.b.Nodes[spec.podNode(i)]
		ns.Pods = append(ns.Pods, tsdb.PodSample{Namespace: benchNamespace, Pod: spec.podName(i), UID: podUID(i)})
	}
	for n := range c.b.Nodes {
		ns := &c.b.Nodes[n]
		c.add(&ns.NodeSample, 0.5+5.5*c.rng.Float64(), float64(4<<30)+c.rng.Float64()*float64(20<<30))
		for j := range ns.Pods {
			// Log-uniform between 10 millicores and 2 cores; 50 MiB to 2 GiB.
			c.add(&ns.Pods[j].Sample, math.Exp(math.Log(0.01)+c.rng.Float64()*math.Log(200)),
				float64(50<<20)+c.rng.Float64()*float64(2<<30-50<<20))
		}
	}
	return c
}

func (c *cluster) add(s *tsdb.Sample, cores, mem float64) {
	s.Set(tsdb.ResourceCPU, c.rng.Float64()*1e6)
	s.Set(tsdb.ResourceMemory, 0) // set by round
	c.objs = append(c.objs, s)
	c.base = append(c.base, cores)
	c.phase = append(c.phase, c.rng.Float64()*2*math.Pi)
	c.mem = append(c.mem, mem)
	c.walk = append(c.walk, 0)
}

// round returns round i (rounds must be asked for in order). The batch is reused.
func (c *cluster) round(i int) tsdb.Batch {
	scrape := c.spec.start().Add(time.Duration(i) * c.spec.Resolution)
	for n := range c.b.Nodes {
		c.b.Nodes[n].ScrapeTime = scrape
	}
	day := 2 * math.Pi * float64(scrape.Unix()%86400) / 86400
	for k, s := range c.objs {
		prev := s.Time
		s.Time = scrape.Add(-time.Duration(c.rng.IntN(3000)) * time.Millisecond)
		wave := math.Sin(day + c.phase[k])
		if !prev.IsZero() {
			rate := c.base[k] * (1 + 0.6*wave) * (0.8 + 0.4*c.rng.Float64())
			s.Values[tsdb.ResourceCPU] += rate * s.Time.Sub(prev).Seconds()
		}
		if c.rng.IntN(10) < 7 {
			c.walk[k] += float64(4096 * (c.rng.IntN(513) - 256))
			c.walk[k] = max(-c.mem[k]/4, min(c.mem[k]/4, c.walk[k]))
		}
		s.Values[tsdb.ResourceMemory] = math.Round((c.mem[k]*(1+0.3*wave)+c.walk[k])/4096) * 4096
	}
	return c.b
}

// dirSize returns the bytes of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// resetPeakRSS resets the process's peak RSS (VmHWM) to its current RSS (Linux).
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns the process's peak RSS (VmHWM) in bytes, 0 when unknown.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// Serving requests.

// sink is a ResponseWriter that counts the body's bytes, and keeps them when buf is set.
type sink struct {
	header http.Header
	status int
	n      int64
	buf    *bytes.Buffer
}

func (s *sink) Header() http.Header { return s.header }
func (s *sink) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func (s *sink) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	s.n += int64(len(p))
	if s.buf != nil {
		s.buf.Write(p)
	}
	return len(p), nil
}

// benchUser is the authenticated user of every request.
var benchUser = &user.DefaultInfo{Name: "bench"}

// serve runs one GET of target through the handler, as the API server would after
// authenticating the user.
func serve(ctx context.Context, h http.Handler, target string, keep bool) *sink {
	r := httptest.NewRequest(http.MethodGet, target, nil).WithContext(request.WithUser(ctx, benchUser))
	s := &sink{header: make(http.Header)}
	if keep {
		s.buf = &bytes.Buffer{}
	}
	h.ServeHTTP(s, r)
	return s
}

// response is the part of a history response the benchmarks check.
type response struct {
	Query struct {
		Start       time.Time `json:"start"`
		End         time.Time `json:"end"`
		Step        string    `json:"step"`
		StepSeconds float64   `json:"stepSeconds"`
		Points      int       `json:"points"`
		Resources   []string  `json:"resources"`
		Sources     []struct {
			Source string `json:"source"`
		} `json:"sources"`
	} `json:"query"`
	Series []struct {
		Object struct {
			Kind    string `json:"kind"`
			Name    string `json:"name"`
			Members *int   `json:"members"`
		} `json:"object"`
		Resources map[string]struct {
			Values  []*float64          `json:"values"`
			Summary map[string]*float64 `json:"summary"`
		} `json:"resources"`
	} `json:"series"`
}

// queryCase is one request to measure.
type queryCase struct {
	target string
	// seriesRead is how many stored series the query reads per resource: every series of
	// the selection it hands to the TSDB.
	seriesRead int
	// check validates the decoded response of the first request.
	check func(*response) error
}

// measure checks tc's response once, then runs it b.N times and reports:
//
//	ms/query          wall time per request (handler, TSDB and JSON encoding)
//	samples/s         raw samples of the read series within the queried range, per second
//	points/s          values returned (series × resources × steps), per second; view=series only
//	alloc-MB/query    bytes allocated per request (runtime.MemStats.TotalAlloc)
//	peak-heap-MB      the heap's peak (live and not yet collected objects) above its level
//	                  after a GC before the first request, sampled every 2ms
//	peak-anon-RSS-MB  the process's peak anonymous RSS (no mmapped files), sampled every 2ms
//	peak-RSS-MB       the process's peak RSS during the requests (VmHWM, reset before them):
//	                  it includes the pages of the mmapped TSDB blocks that this or an
//	                  earlier benchmark touched, so it depends on the benchmarks run before
//	resp-KB           the response body
func measure(b *testing.B, f *fixture, tc queryCase) {
	b.Helper()
	ctx := b.Context()
	t0 := time.Now()
	first := serve(ctx, f.handler, tc.target, true)
	firstDur := time.Since(t0)
	if first.status != http.StatusOK {
		b.Fatalf("GET %s: %d %s", tc.target, first.status, first.buf.String())
	}
	var resp response
	if err := json.Unmarshal(first.buf.Bytes(), &resp); err != nil {
		b.Fatalf("GET %s: decode: %v", tc.target, err)
	}
	if err := tc.check(&resp); err != nil {
		b.Fatalf("GET %s: %v", tc.target, err)
	}
	step := time.Duration(resp.Query.StepSeconds * float64(time.Second))
	resources := len(resp.Query.Resources)
	rounds := f.spec.roundsIn(resp.Query.Start.Add(-step-f.spec.maxGap()), resp.Query.End)
	samples := float64(tc.seriesRead) * float64(resources) * float64(rounds)
	points := 0
	for _, s := range resp.Series {
		for _, r := range s.Resources {
			points += len(r.Values)
		}
	}
	b.Logf("GET %s: %d series, %d steps of %s from %s to %s, %d resources; reads %d series × %d resources × %d rounds = %.0f samples; %d bytes; first request %s",
		tc.target, len(resp.Series), resp.Query.Points, resp.Query.Step, resp.Query.Start.Format(time.RFC3339),
		resp.Query.End.Format(time.RFC3339), resources, tc.seriesRead, resources, rounds, samples, first.n,
		firstDur.Round(time.Millisecond))

	runtime.GC()
	debug.FreeOSMemory()
	rssOK := resetPeakRSS()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	hs := startHeapSampler()
	b.ReportAllocs()
	var bytesOut int64
	for b.Loop() {
		s := serve(ctx, f.handler, tc.target, false)
		if s.status != http.StatusOK {
			b.Fatalf("GET %s: status %d", tc.target, s.status)
		}
		bytesOut = s.n
	}
	peakHeap, peakAnon := hs.stop()
	runtime.ReadMemStats(&after)
	per := b.Elapsed().Seconds() / float64(b.N)
	if per > httpapi.DefaultQueryTimeout.Seconds() {
		b.Logf("WARNING: %.1fs per query is more than the default --history-query-timeout of %s", per, httpapi.DefaultQueryTimeout)
	}
	b.ReportMetric(per*1e3, "ms/query")
	b.ReportMetric(samples/per, "samples/s")
	if points > 0 { // view=series only
		b.ReportMetric(float64(points)/per, "points/s")
	}
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/1e6, "alloc-MB/query")
	b.ReportMetric(float64(peakHeap)/1e6, "peak-heap-MB")
	if rssOK {
		b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MB")
	}
	if peakAnon > 0 {
		b.ReportMetric(float64(peakAnon)/(1<<20), "peak-anon-RSS-MB")
	}
	b.ReportMetric(float64(bytesOut)/1e3, "resp-KB")
}

// heapSampler tracks, every 2ms, the peak of the heap's object bytes above its starting
// level and the peak of the process's anonymous RSS (resident minus file-backed and
// shared pages: the heap, stacks and the TSDB's anonymous memory, not the mmapped
// blocks).
type heapSampler struct {
	stopc chan struct{}
	done  chan [2]int64
}

const heapMetric = "/memory/classes/heap/objects:bytes"

func heapBytes(s []metrics.Sample) int64 {
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// anonRSS returns resident minus shared bytes from /proc/self/statm, 0 when unknown.
func anonRSS(buf []byte) int64 {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0
	}
	n, _ := f.Read(buf)
	f.Close()
	fields := strings.Fields(string(buf[:n]))
	if len(fields) < 3 {
		return 0
	}
	resident, err1 := strconv.ParseInt(fields[1], 10, 64)
	shared, err2 := strconv.ParseInt(fields[2], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (resident - shared) * int64(os.Getpagesize())
}

func startHeapSampler() *heapSampler {
	hs := &heapSampler{stopc: make(chan struct{}), done: make(chan [2]int64, 1)}
	s := []metrics.Sample{{Name: heapMetric}}
	buf := make([]byte, 256)
	base := heapBytes(s)
	go func() {
		peak, peakAnon := base, anonRSS(buf)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-hs.stopc:
				hs.done <- [2]int64{max(peak, heapBytes(s)) - base, max(peakAnon, anonRSS(buf))}
				return
			case <-t.C:
				peak, peakAnon = max(peak, heapBytes(s)), max(peakAnon, anonRSS(buf))
			}
		}
	}()
	return hs
}

// stop returns the peak heap growth and the peak anonymous RSS, in bytes.
func (hs *heapSampler) stop() (heap, anon int64) {
	close(hs.stopc)
	r := <-hs.done
	return r[0], r[1]
}

// Response checks.

func wantSeries(r *response, n int) error {
	if len(r.Series) != n {
		return fmt.Errorf("%d series, want %d", len(r.Series), n)
	}
	return nil
}

// wantSummary checks that every series has the aggregation agg of every resource.
func wantSummary(r *response, agg string) error {
	for i, s := range r.Series {
		for name, res := range s.Resources {
			if v := res.Summary[agg]; v == nil || math.IsNaN(*v) {
				return fmt.Errorf("series %d (%s %s): no %s of %s", i, s.Object.Kind, s.Object.Name, agg, name)
			}
		}
	}
	return nil
}

// wantSources checks that every step was read from source.
func wantSources(r *response, source string) error {
	if len(r.Query.Sources) == 0 {
		return errors.New("no sources in the response")
	}
	for _, s := range r.Query.Sources {
		if s.Source != source {
			return fmt.Errorf("steps read from %s, want all from %s", s.Source, source)
		}
	}
	return nil
}

func wantMembers(r *response, n int) error {
	if err := wantSeries(r, 1); err != nil {
		return err
	}
	if m := r.Series[0].Object.Members; m == nil || *m != n {
		return fmt.Errorf("members %v, want %d", m, n)
	}
	return nil
}

// wantValues checks that every series has a value at (almost) every step.
func wantValues(r *response) error {
	for i, s := range r.Series {
		for name, res := range s.Resources {
			if len(res.Values) != r.Query.Points {
				return fmt.Errorf("series %d %s: %d values, want %d", i, name, len(res.Values), r.Query.Points)
			}
			n := 0
			for _, v := range res.Values {
				if v != nil {
					n++
				}
			}
			if n < r.Query.Points-2 {
				return fmt.Errorf("series %d %s: %d values of %d steps", i, name, n, r.Query.Points)
			}
		}
	}
	return nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	closeFixtures()
	os.Exit(code)
}
