package scraper

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

const (
	// MinResolution is the shortest scrape period, as metrics-server enforces.
	MinResolution = 10 * time.Second

	defaultConcurrency  = 256
	defaultMaxAttempts  = 3
	defaultRetryBackoff = time.Second
	// Start delays are spread like metrics-server's: up to 8 ms per node, at most 4 s.
	delayPerNode = 8 * time.Millisecond
	maxDelay     = 4 * time.Second
	// minAttemptTime is the least time worth starting a retry with.
	minAttemptTime = time.Second
	// timelyFactor × Resolution is how old the last tick may be before CheckTimely fails.
	timelyFactor = 1.5
)

// Reasons counted by hindsight_scrape_errors_total.
const (
	ReasonAddress    = "address"     // no usable address, port or path for the node
	ReasonTimeout    = "timeout"     // the request or the round ran out of time
	ReasonTLS        = "tls"         // the kubelet's certificate did not verify
	ReasonNetwork    = "network"     // connection refused, reset, DNS, …
	ReasonHTTPStatus = "http_status" // the kubelet answered other than 200
	ReasonTooLarge   = "too_large"   // the body exceeded MaxBodyBytes
	ReasonDecode     = "decode"      // the body did not decode
	ReasonWrite      = "write"       // the Writer rejected the round's batch
	ReasonClockSkew  = "clock_skew"  // the node's sample times are off its scrape time by more than tsdb.ClockSkewBound
)

// maxListedClocks is how many skewed nodes CheckClocks names.
const maxListedClocks = 10

// Config configures a Scraper. Fields document their zero value.
type Config struct {
	// Resolution is the scrape period (--metric-resolution); at least MinResolution. A round
	// starts at once and then every Resolution; a round's requests and retries end within it.
	Resolution time.Duration
	// Concurrency bounds how many nodes are fetched at once. Zero means 256.
	Concurrency int
	// NodeSelector limits which nodes are scraped (-l/--node-selector). Nil means every node.
	NodeSelector labels.Selector
	// MaxAttempts is how many times a failing node is tried within one round, retries
	// included; retries stop earlier when the period runs out. Zero means 3.
	MaxAttempts int
	// RetryBackoff is the wait before the first retry; it doubles for each further one.
	// Zero means 1s.
	RetryBackoff time.Duration
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Resolution < MinResolution {
		errs = append(errs, fmt.Errorf("metric resolution %v is below %v", c.Resolution, MinResolution))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("scrape concurrency %d is negative", c.Concurrency))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("scrape attempts %d is negative", c.MaxAttempts))
	}
	if c.RetryBackoff < 0 {
		errs = append(errs, fmt.Errorf("scrape retry backoff %v is negative", c.RetryBackoff))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = defaultConcurrency
	}
	if c.NodeSelector == nil {
		c.NodeSelector = labels.Everything()
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = defaultMaxAttempts
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = defaultRetryBackoff
	}
	return c
}

// Writer persists one scrape round. *tsdb.DB implements it.
type Writer interface {
	Write(ctx context.Context, b tsdb.Batch) error
}

// PodUIDs tells which pods the API knows and where it places them, typically from a pod
// informer's cache. *inventory.PodUIDs implements it.
type PodUIDs interface {
	// PodNode returns the UID of namespace/name and the node the API places it on
	// (spec.nodeName, "" while it is not scheduled); ok is false when the pod is not known.
	PodNode(namespace, name string) (uid, node string, ok bool)
}

// Fetcher scrapes one node once. *KubeletClient implements it. The result must have Node set;
// its ScrapeTime is when the request was sent.
type Fetcher interface {
	Fetch(ctx context.Context, node *corev1.Node) (tsdb.NodeScrape, error)
}

// Scraper scrapes every selected node once per Resolution and writes one tsdb.Batch per round.
type Scraper struct {
	cfg     Config
	nodes   corev1listers.NodeLister
	pods    PodUIDs
	fetcher Fetcher
	w       Writer
	log     *slog.Logger
	m       metrics

	mu       sync.Mutex // guards lastTick
	lastTick time.Time

	// known holds the nodes that may have per-node self-metric series. Only Run's goroutine
	// touches it, between rounds.
	known map[string]struct{}

	clockMu sync.Mutex // guards skewed
	// skewed holds the nodes whose last successful scrape was outside tsdb.ClockSkewBound,
	// with their offset. Entries go when the node's clock recovers or it leaves the list.
	skewed map[string]time.Duration
}

// New wires a Scraper and registers its self-metrics on reg. pods decides which pod samples
// are kept (see placePods).
func New(cfg Config, nodes corev1listers.NodeLister, pods PodUIDs, f Fetcher, w Writer, log *slog.Logger, reg prometheus.Registerer) (*Scraper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nodes == nil || pods == nil || f == nil || w == nil || log == nil || reg == nil {
		return nil, errors.New("scraper: nil node lister, pod lookup, fetcher, writer, logger or registerer")
	}
	cfg = cfg.withDefaults()
	m := newMetrics(cfg.Resolution)
	if err := m.register(reg); err != nil {
		return nil, err
	}
	return &Scraper{
		cfg:     cfg,
		nodes:   nodes,
		pods:    pods,
		fetcher: f,
		w:       w,
		log:     log,
		m:       m,
		known:   make(map[string]struct{}),
		skewed:  make(map[string]time.Duration),
	}, nil
}

// Run scrapes a round at once and then every Resolution until ctx is done; it returns nil on a
// clean stop. A round that overruns its period delays the next one; it never overlaps it.
func (s *Scraper) Run(ctx context.Context) error {
	s.log.Info("scraper started", "resolution", s.cfg.Resolution, "concurrency", s.cfg.Concurrency,
		"nodeSelector", s.cfg.NodeSelector.String(), "maxAttempts", s.cfg.MaxAttempts)
	t := time.NewTicker(s.cfg.Resolution)
	defer t.Stop()
	start := time.Now()
	for {
		s.round(ctx, start)
		select {
		case <-ctx.Done():
			s.log.Info("scraper stopped")
			return nil
		case <-t.C:
			// Not the tick's own time: after a round that overran, that one is stale and would
			// shorten the next round's period.
			start = time.Now()
		}
	}
}

// LastTick returns when the last round started; zero before the first.
func (s *Scraper) LastTick() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastTick
}

// CheckTimely is the metric-collection-timely liveness check: it fails when the last round
// started more than 1.5 × Resolution before now. Before the first round it passes: on a
// large cluster the informers' first sync, which the scraper waits for,
// can take minutes, and failing liveness then would restart the process in a loop that
// never gets past the sync. Readiness (metric-informer-sync) reports a start that is slow.
func (s *Scraper) CheckTimely(now time.Time) error {
	last := s.LastTick()
	if last.IsZero() {
		return nil
	}
	limit := time.Duration(timelyFactor * float64(s.cfg.Resolution))
	if since := now.Sub(last); since > limit {
		return fmt.Errorf("last scrape round started %v ago, more than %v", since.Round(time.Millisecond), limit)
	}
	return nil
}

// round lists the nodes, fetches them within one period and writes what answered.
func (s *Scraper) round(ctx context.Context, start time.Time) {
	s.mu.Lock()
	s.lastTick = start
	s.mu.Unlock()

	nodes, err := s.nodes.List(s.cfg.NodeSelector)
	if err != nil {
		// A cache lister does not fail in practice; keep the previous nodes' series.
		s.log.Warn("list nodes", "err", err)
		return
	}
	results := s.fetchAll(ctx, start, nodes)
	s.prune(nodes)
	if ctx.Err() != nil {
		// Shutting down: the round is incomplete and the store is about to close.
		return
	}

	b := tsdb.Batch{Nodes: make([]tsdb.NodeScrape, 0, len(nodes))}
	for _, r := range results {
		if r != nil && s.checkClock(r) {
			b.Nodes = append(b.Nodes, *r)
		}
	}
	if err := s.w.Write(ctx, b); err != nil {
		// The storage logs once when writes start and stop failing and reports it in its
		// health check; a line per round would only repeat that.
		s.m.errors.WithLabelValues(ReasonWrite).Inc()
		s.log.Debug("write scrape round", "nodes", len(b.Nodes), "err", err)
	}
	d := time.Since(start)
	s.m.tickDuration.Observe(d.Seconds())
	s.log.Debug("scrape round done", "nodes", len(nodes), "scraped", len(b.Nodes), "failed", len(nodes)-len(b.Nodes), "duration", d)
}

// fetchAll scrapes nodes with bounded concurrency, each after a random start delay, and
// returns one result per node (nil for a node that failed).
func (s *Scraper) fetchAll(ctx context.Context, start time.Time, nodes []*corev1.Node) []*tsdb.NodeScrape {
	results := make([]*tsdb.NodeScrape, len(nodes))
	if len(nodes) == 0 {
		return results
	}
	roundCtx, cancel := context.WithDeadline(ctx, start.Add(s.cfg.Resolution))
	defer cancel()

	// Random start offsets spread the load on the network and the apiserver-side proxies like
	// metrics-server's, but are applied by this launcher in order, so that a node waiting for
	// its offset does not hold a concurrency slot.
	spread := min(delayPerNode*time.Duration(len(nodes)), maxDelay)
	type job struct {
		i     int
		delay time.Duration
	}
	jobs := make([]job, len(nodes))
	for i := range nodes {
		jobs[i] = job{i: i, delay: rand.N(spread)}
	}
	slices.SortFunc(jobs, func(a, b job) int { return cmp.Compare(a.delay, b.delay) })

	var g errgroup.Group
	g.SetLimit(s.cfg.Concurrency)
	timer := time.NewTimer(0)
	defer timer.Stop()
launch:
	for _, j := range jobs {
		if wait := time.Until(start.Add(j.delay)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-roundCtx.Done():
				break launch
			case <-timer.C:
			}
		}
		node := nodes[j.i]
		g.Go(func() error {
			if r, ok := s.scrapeNode(ctx, roundCtx, node); ok {
				results[j.i] = &r
			}
			return nil
		})
	}
	_ = g.Wait()
	return results
}

// scrapeNode fetches one node, retrying a transient failure while the round has time left.
// parent is Run's context: its end is a shutdown, not a failure.
func (s *Scraper) scrapeNode(parent, ctx context.Context, node *corev1.Node) (tsdb.NodeScrape, bool) {
	backoff := s.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		r, err := s.fetchOnce(ctx, node)
		if err == nil {
			s.placePods(&r, node.Name)
			return r, true
		}
		if parent.Err() != nil {
			return tsdb.NodeScrape{}, false
		}
		reason := classify(err)
		s.m.errors.WithLabelValues(reason).Inc()
		retry := attempt < s.cfg.MaxAttempts && retryable(err) && ctx.Err() == nil
		if deadline, ok := ctx.Deadline(); retry && ok && time.Until(deadline) < backoff+minAttemptTime {
			retry = false
		}
		s.log.Debug("scrape node failed", "node", node.Name, "attempt", attempt, "reason", reason, "retry", retry, "err", err)
		if !retry {
			return tsdb.NodeScrape{}, false
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return tsdb.NodeScrape{}, false
		case <-t.C:
		}
		backoff *= 2
	}
}

// fetchOnce is one request with its self-metrics.
func (s *Scraper) fetchOnce(ctx context.Context, node *corev1.Node) (tsdb.NodeScrape, error) {
	begin := time.Now()
	r, err := s.fetcher.Fetch(ctx, node)
	if errors.Is(err, errNoAddress) {
		// No request was sent.
		return r, err
	}
	s.m.requestDuration.WithLabelValues(node.Name).Observe(time.Since(begin).Seconds())
	s.m.lastRequestTime.WithLabelValues(node.Name).Set(float64(time.Now().Unix()))
	s.m.requestTotal.WithLabelValues(strconv.FormatBool(err == nil)).Inc()
	if err == nil && r.Node == "" {
		r.Node = node.Name
	}
	return r, err
}

// prune deletes the per-node self-metric series and clock state of nodes that left the node
// list, so that node churn does not grow /metrics (metrics-server never prunes them).
func (s *Scraper) prune(nodes []*corev1.Node) {
	current := make(map[string]struct{}, len(nodes))
	for _, n := range nodes {
		current[n.Name] = struct{}{}
	}
	for name := range s.known {
		if _, ok := current[name]; !ok {
			s.m.requestDuration.DeleteLabelValues(name)
			s.m.lastRequestTime.DeleteLabelValues(name)
		}
	}
	s.known = current
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	for name := range s.skewed {
		if _, ok := current[name]; !ok {
			delete(s.skewed, name)
		}
	}
}

// checkClock reports whether r's sample times are within tsdb.ClockSkewBound of its scrape
// time. A node outside it is left out of the round, as a failed scrape is: its samples
// would make the TSDB refuse every other node's (one far ahead moves the head), and
// re-timing them to the scrape time would invent the interval metrics-server's window
// divides by. It is counted (reason clock_skew) every round, and logged when it starts
// and stops being outside the bound.
func (s *Scraper) checkClock(r *tsdb.NodeScrape) bool {
	err := tsdb.CheckClock(r, s.cfg.Resolution)
	var skew *tsdb.ClockSkewError
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	_, was := s.skewed[r.Node]
	if errors.As(err, &skew) {
		s.m.errors.WithLabelValues(ReasonClockSkew).Inc()
		s.skewed[r.Node] = skew.Offset
		if !was {
			s.log.Warn("kubelet clock is off: its samples are not stored and its window is not served until it is back",
				"node", r.Node, "offset", tsdb.FormatOffset(skew.Offset), "bound", skew.Bound)
		}
		return false
	}
	if was {
		delete(s.skewed, r.Node)
		off, _ := r.ClockOffset()
		s.log.Info("kubelet clock is back within bound: its samples are stored again", "node", r.Node, "offset", tsdb.FormatOffset(off))
	}
	return true
}

// CheckClocks is the informational kubelet-clocks readiness check: it fails while the last
// successful scrape of any node was outside tsdb.ClockSkewBound, naming the nodes (the
// first ten by name) with their offsets.
func (s *Scraper) CheckClocks() error {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	if len(s.skewed) == 0 {
		return nil
	}
	names := make([]string, 0, len(s.skewed))
	for name := range s.skewed {
		names = append(names, name)
	}
	slices.Sort(names)
	var list strings.Builder
	for i, name := range names[:min(len(names), maxListedClocks)] {
		if i > 0 {
			list.WriteString(", ")
		}
		fmt.Fprintf(&list, "%s %s", name, tsdb.FormatOffset(s.skewed[name]))
	}
	if more := len(names) - maxListedClocks; more > 0 {
		fmt.Fprintf(&list, " and %d more", more)
	}
	return fmt.Errorf("%d kubelet clocks are off the scraper's by more than %s; their samples are not stored and their windows not served: %s",
		len(names), tsdb.ClockSkewBound(s.cfg.Resolution), list.String())
}

// classify names the reason of a failed fetch for hindsight_scrape_errors_total.
func classify(err error) string {
	var (
		status  *StatusError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		verify  *tls.CertificateVerificationError
		netErr  net.Error
	)
	switch {
	case errors.Is(err, errNoAddress):
		return ReasonAddress
	case errors.As(err, &status):
		return ReasonHTTPStatus
	case errors.Is(err, ErrBodyTooLarge):
		return ReasonTooLarge
	case errors.Is(err, errDecode):
		return ReasonDecode
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid):
		return ReasonTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout
	default:
		return ReasonNetwork
	}
}

// retryable reports whether trying again within the same period may help.
func retryable(err error) bool {
	switch classify(err) {
	case ReasonAddress, ReasonTLS, ReasonTooLarge:
		return false
	case ReasonHTTPStatus:
		var status *StatusError
		errors.As(err, &status)
		return status.Code >= 500 || status.Code == http.StatusRequestTimeout || status.Code == http.StatusTooManyRequests
	}
	return true
}

// metrics are the scraper's self-metrics, mirroring metrics-server's families under the
// hindsight_ prefix.
type metrics struct {
	requestDuration *prometheus.HistogramVec
	requestTotal    *prometheus.CounterVec
	lastRequestTime *prometheus.GaugeVec
	tickDuration    prometheus.Histogram
	errors          *prometheus.CounterVec
	dropped         *prometheus.CounterVec
}

func newMetrics(resolution time.Duration) metrics {
	return metrics{
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "hindsight", Subsystem: "kubelet", Name: "request_duration_seconds",
			Help:    "Duration of requests to the kubelet API in seconds.",
			Buckets: prometheus.DefBuckets,
		}, []string{"node"}),
		requestTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hindsight", Subsystem: "kubelet", Name: "request_total",
			Help: "Number of requests sent to the kubelet API.",
		}, []string{"success"}),
		lastRequestTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "hindsight", Subsystem: "kubelet", Name: "last_request_time_seconds",
			Help: "Time of the last request to the kubelet API since the Unix epoch in seconds.",
		}, []string{"node"}),
		tickDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "hindsight", Subsystem: "manager", Name: "tick_duration_seconds",
			Help:    "The total time spent collecting and storing metrics in seconds.",
			Buckets: bucketsUpTo(resolution),
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hindsight", Subsystem: "scrape", Name: "errors_total",
			Help: "Failed kubelet scrape attempts (and rejected batch writes) by reason.",
		}, []string{"reason"}),
		dropped: newDroppedSamples(),
	}
}

// register registers every collector on reg, or none of them.
func (m metrics) register(reg prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.requestDuration, m.requestTotal, m.lastRequestTime, m.tickDuration, m.errors, m.dropped} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return fmt.Errorf("register scraper metrics: %w", err)
		}
		done = append(done, c)
	}
	return nil
}

// bucketsUpTo extends the default buckets past d, the longest expected duration, the way
// metrics-server sizes its tick histogram, so that time-outs are visible.
func bucketsUpTo(d time.Duration) []float64 {
	b := slices.Clone(prometheus.DefBuckets)
	top, sec := b[len(b)-1], d.Seconds()
	if sec > top {
		b = append(b, top+(sec-top)/2, sec, sec*1.5, sec*2)
	}
	return b
}
