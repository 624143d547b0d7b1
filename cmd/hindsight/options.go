package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	cliflag "k8s.io/component-base/cli/flag"

	"github.com/hindsight-metrics/hindsight/apiserver"
	"github.com/hindsight-metrics/hindsight/httpapi"
	"github.com/hindsight-metrics/hindsight/httpapi/budget"
	"github.com/hindsight-metrics/hindsight/scraper"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

// defaultPromMaxSamples bounds a PromQL query's samples in memory to about 160 MB, so that
// four concurrent queries fit beside the TSDB in a pod of a few hundred MiB; Prometheus'
// 50 million (800 MB) is sized for a dedicated server.
const defaultPromMaxSamples = 10_000_000

// options holds every flag. Flag names follow metrics-server v0.9.0 wherever it has one, so
// Hindsight replaces it in place; the rest are Hindsight's own (storage, logging).
type options struct {
	server *apiserver.Options

	kubeconfig string

	resolution   time.Duration
	nodeSelector string

	kubeletPort              int
	kubeletUseNodeStatusPort bool
	kubeletAddressTypes      []string
	kubeletInsecureTLS       bool
	kubeletCA                string
	kubeletClientCert        string
	kubeletClientKey         string
	kubeletTimeout           time.Duration
	kubeletMaxBody           string
	kubeletMaxInFlight       string

	storagePath   string
	retention     time.Duration
	retentionSize string
	// tierRetention is --retention-5m and --retention-1h (tsdb.Config.TierRetention).
	tierRetention [tsdb.NumTiers]time.Duration
	// blockDuration is the hidden, test-only --storage-block-duration (tsdb.Config.BlockDuration).
	blockDuration time.Duration

	historyMaxPoints    int
	historyMaxSeries    int
	historyQueryTimeout time.Duration
	historyInFlight     int
	historyQueries      int
	historyMaxResponse  string
	historyWriteTimeout time.Duration
	promMaxSamples      int

	logLevel  string
	logFormat string

	showVersion bool
}

func newOptions() *options {
	return &options{
		server:              apiserver.NewOptions(),
		resolution:          15 * time.Second,
		kubeletPort:         10250,
		kubeletAddressTypes: addressTypeStrings(scraper.DefaultAddressTypes),
		kubeletTimeout:      10 * time.Second,
		kubeletMaxBody:      "8Mi",
		kubeletMaxInFlight:  "256Mi",
		storagePath:         "/var/lib/hindsight",
		retention:           tsdb.DefaultRetention,
		retentionSize:       "0",
		tierRetention:       [tsdb.NumTiers]time.Duration{tsdb.DefaultTierRetention(tsdb.Tier5m), tsdb.DefaultTierRetention(tsdb.Tier1h)},
		historyMaxPoints:    httpapi.DefaultMaxPoints,
		historyMaxSeries:    httpapi.DefaultMaxSeries,
		historyQueryTimeout: httpapi.DefaultQueryTimeout,
		historyInFlight:     budget.DefaultInFlight,
		historyQueries:      budget.DefaultSize(),
		historyMaxResponse:  resource.NewQuantity(budget.DefaultMaxResponseBytes, resource.BinarySI).String(),
		historyWriteTimeout: budget.DefaultWriteTimeout,
		promMaxSamples:      defaultPromMaxSamples,
		logLevel:            "info",
		logFormat:           "text",
	}
}

func (o *options) flags() cliflag.NamedFlagSets {
	var nfs cliflag.NamedFlagSets
	o.server.AddNamedFlags(&nfs)

	fs := nfs.FlagSet("kubelet client")
	fs.IntVar(&o.kubeletPort, "kubelet-port", o.kubeletPort, "The port to use to connect to Kubelets.")
	fs.BoolVar(&o.kubeletUseNodeStatusPort, "kubelet-use-node-status-port", o.kubeletUseNodeStatusPort, "Use the port in the node status. Takes precedence over --kubelet-port flag.")
	fs.StringSliceVar(&o.kubeletAddressTypes, "kubelet-preferred-address-types", o.kubeletAddressTypes, "The priority of node address types to use when determining which address to use to connect to a particular node.")
	fs.BoolVar(&o.kubeletInsecureTLS, "kubelet-insecure-tls", o.kubeletInsecureTLS, "Do not verify CA of serving certificates presented by Kubelets; no bearer token is then sent to them. For testing purposes only.")
	fs.StringVar(&o.kubeletCA, "kubelet-certificate-authority", o.kubeletCA, "Path to the CA to use to validate the Kubelet's serving certificates.")
	fs.StringVar(&o.kubeletClientCert, "kubelet-client-certificate", o.kubeletClientCert, "Path to a client cert file for TLS, presented to kubelets (re-read when it changes); with --kubelet-client-key. Without them, the kubeconfig's client certificate is used, else its bearer token. No bearer token is sent beside a client certificate, nor with --kubelet-insecure-tls.")
	fs.StringVar(&o.kubeletClientKey, "kubelet-client-key", o.kubeletClientKey, "Path to a client key file for TLS; with --kubelet-client-certificate.")
	fs.DurationVar(&o.kubeletTimeout, "kubelet-request-timeout", o.kubeletTimeout, "The length of time to wait before giving up on a single request to Kubelet. Non-zero values should contain a corresponding time unit (e.g. 1s, 2m, 3h).")
	fs.StringVar(&o.kubeletMaxBody, "kubelet-max-response-size", o.kubeletMaxBody, "Largest /metrics/resource response accepted from one kubelet, as a quantity (e.g. 8Mi); a larger one fails that node's scrape.")
	fs.StringVar(&o.kubeletMaxInFlight, "kubelet-max-bytes-in-flight", o.kubeletMaxInFlight, "Memory for kubelet responses being read and decoded at once, as a quantity; each reserves --kubelet-max-response-size of it, so at most this divided by that are read at once. At least --kubelet-max-response-size.")

	fs = nfs.FlagSet("metrics")
	fs.DurationVar(&o.resolution, "metric-resolution", o.resolution, "The resolution at which Hindsight will retain metrics, must set value at least 10s.")
	fs.StringVarP(&o.nodeSelector, "node-selector", "l", o.nodeSelector, "Selector (label query) to filter on, not including uninitialized ones, supports '=', '==', and '!='.(e.g. -l key1=value1,key2=value2).")

	fs = nfs.FlagSet("storage")
	fs.StringVar(&o.storagePath, "storage-path", o.storagePath, "Directory that holds every sample (Prometheus TSDB) and the object catalog; mount a PersistentVolume here.")
	fs.DurationVar(&o.retention, "retention", o.retention, "How long raw samples (every scrape) are kept; the tiers keep rollups longer (--retention-5m, --retention-1h).")
	fs.StringVar(&o.retentionSize, "retention-size", o.retentionSize, "Largest size of the stored samples (blocks, WAL and head chunks), as a quantity (e.g. 8Gi); the oldest are deleted first. The 5m and 1h tiers get 28% and 12% of it while they are on, the raw samples the rest. 0 means no size limit. Set it below the volume's size: a full volume loses history (the current window is still served).")
	for t := range tsdb.NumTiers {
		fs.DurationVar(&o.tierRetention[t], "retention-"+t.String(), o.tierRetention[t], fmt.Sprintf("How long the %s rollups (average and maximum CPU and memory per %s of every node, pod and container) are kept; 0 turns the tier off. They are written from the raw samples once those are final, in batches, and answer long ranges fast after the raw samples are gone.", t, t.Resolution()))
	}
	fs.DurationVar(&o.blockDuration, "storage-block-duration", o.blockDuration, "Test only: the TSDB's block range (0: Prometheus' 2h), so that head chunk writes and head compactions come within minutes.")
	_ = fs.MarkHidden("storage-block-duration")

	fs = nfs.FlagSet("history")
	fs.IntVar(&o.historyMaxPoints, "history-max-points", o.historyMaxPoints, "Most steps in one series of a /history/v1 range query; more is refused with 422, naming the smallest step that fits. (/prometheus/api/v1 keeps Prometheus' own limit, 11,000.)")
	fs.IntVar(&o.historyMaxSeries, "history-max-series", o.historyMaxSeries, "Most series in one /history/v1 response; more is refused with 422.")
	fs.DurationVar(&o.historyQueryTimeout, "history-query-timeout", o.historyQueryTimeout, "Longest time one /history/v1 or /prometheus/api/v1 query may take; a slower one is cancelled with 503.")
	fs.IntVar(&o.historyQueries, "history-max-queries", o.historyQueries, "Most /history/v1 and /prometheus/api/v1 queries computed at once (the default is half the CPUs Go runs on, at most 4); a few more wait up to a second, the rest are refused at once with 429 and Retry-After. Queries are CPU-bound: keep CPUs free for metrics.k8s.io.")
	fs.IntVar(&o.historyInFlight, "history-max-requests-inflight", o.historyInFlight, "Most /history/v1 and /prometheus/api/v1 requests served at once, from authorization to the last byte written; more are refused at once with 429 and Retry-After. This is their own limit: --max-requests-inflight bounds metrics.k8s.io alone, so that history load never takes the HPA's places.")
	fs.StringVar(&o.historyMaxResponse, "history-max-response-bytes", o.historyMaxResponse, "Largest encoded /history/v1 or /prometheus/api/v1 response (before gzip), as a quantity (e.g. 64Mi); a larger one is refused with 422.")
	fs.DurationVar(&o.historyWriteTimeout, "history-write-timeout", o.historyWriteTimeout, "Longest time writing one /history/v1 or /prometheus/api/v1 response may take; a client that reads slower is cut off. The response is computed and its query slot released before writing begins.")
	fs.IntVar(&o.promMaxSamples, "prometheus-max-samples", o.promMaxSamples, "Most samples one /prometheus/api/v1 query may hold in memory at once (about 16 bytes each); more fails the query with 422. Prometheus' own default is 50,000,000.")

	fs = nfs.FlagSet("kubernetes client")
	fs.StringVar(&o.kubeconfig, "kubeconfig", o.kubeconfig, "The path to the kubeconfig used to connect to the Kubernetes API server and the Kubelets (defaults to in-cluster config)")

	fs = nfs.FlagSet("logging")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "Least severe messages logged: debug, info, warn or error.")
	fs.StringVar(&o.logFormat, "log-format", o.logFormat, "Log format: text or json.")

	fs = nfs.FlagSet("misc")
	fs.BoolVar(&o.showVersion, "version", o.showVersion, "Print the version and exit.")
	return nfs
}

// validate reports every problem with the flags at once.
func (o *options) validate() error {
	errs := []error{o.server.Validate()}
	if o.resolution < scraper.MinResolution {
		errs = append(errs, fmt.Errorf("--metric-resolution should be a time duration at least %s, but value %s provided", scraper.MinResolution, o.resolution))
	}
	if o.resolution <= o.kubeletTimeout {
		errs = append(errs, fmt.Errorf("--metric-resolution should be larger than --kubelet-request-timeout, but metric-resolution value %s kubelet-request-timeout value %s provided", o.resolution, o.kubeletTimeout))
	}
	if _, err := labels.Parse(o.nodeSelector); err != nil {
		errs = append(errs, fmt.Errorf("--node-selector: %w", err))
	}
	if (o.kubeletClientCert == "") != (o.kubeletClientKey == "") {
		errs = append(errs, errors.New("--kubelet-client-certificate and --kubelet-client-key must be given together"))
	}
	maxBody, errBody := parseBytes("--kubelet-max-response-size", o.kubeletMaxBody)
	if errBody != nil {
		errs = append(errs, errBody)
	}
	if inFlight, err := parseBytes("--kubelet-max-bytes-in-flight", o.kubeletMaxInFlight); err != nil {
		errs = append(errs, err)
	} else if errBody == nil && inFlight < maxBody {
		errs = append(errs, fmt.Errorf("--kubelet-max-bytes-in-flight %s is less than --kubelet-max-response-size %s", o.kubeletMaxInFlight, o.kubeletMaxBody))
	}
	if size, err := parseBytes("--retention-size", o.retentionSize); err != nil {
		errs = append(errs, err)
	} else if need := tsdb.MinRetentionSize(tsdb.DefaultExpectedSeries, o.resolution); size > 0 && size < need {
		errs = append(errs, fmt.Errorf("--retention-size %s (%d bytes) is less than one day of samples needs: about %d bytes for %d series at --metric-resolution %s, %d bytes per sample; give at least that, or 0 for no size limit",
			o.retentionSize, size, need, tsdb.DefaultExpectedSeries, o.resolution, tsdb.DiskBytesPerSample))
	}
	for t := range tsdb.NumTiers {
		if o.tierRetention[t] < 0 {
			errs = append(errs, fmt.Errorf("--retention-%s must not be negative, got %s", t, o.tierRetention[t]))
		}
	}
	if o.historyMaxPoints < 3 {
		errs = append(errs, fmt.Errorf("--history-max-points must be at least 3 (an aligned grid of a range takes up to two points more than it spans), got %d", o.historyMaxPoints))
	}
	if o.historyMaxSeries < 1 {
		errs = append(errs, fmt.Errorf("--history-max-series must be at least 1, got %d", o.historyMaxSeries))
	}
	if o.historyQueries < 1 {
		errs = append(errs, fmt.Errorf("--history-max-queries must be at least 1, got %d", o.historyQueries))
	}
	if o.historyInFlight < 1 {
		errs = append(errs, fmt.Errorf("--history-max-requests-inflight must be at least 1, got %d", o.historyInFlight))
	}
	if n, err := parseBytes("--history-max-response-bytes", o.historyMaxResponse); err != nil {
		errs = append(errs, err)
	} else if n < 1<<10 || n > 1<<31-1 {
		errs = append(errs, fmt.Errorf("--history-max-response-bytes must be between 1Ki and 2Gi, got %s", o.historyMaxResponse))
	}
	if o.historyWriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--history-write-timeout must be positive, got %s", o.historyWriteTimeout))
	}
	if o.promMaxSamples < 1 {
		errs = append(errs, fmt.Errorf("--prometheus-max-samples must be at least 1, got %d", o.promMaxSamples))
	}
	if o.historyQueryTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--history-query-timeout must be positive, got %s", o.historyQueryTimeout))
	}
	if o.storagePath == "" {
		errs = append(errs, errors.New("--storage-path must not be empty"))
	}
	if _, err := o.level(); err != nil {
		errs = append(errs, err)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format must be text or json, got %q", o.logFormat))
	}
	return errors.Join(errs...)
}

func (o *options) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(o.logLevel)); err != nil {
		return 0, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", o.logLevel)
	}
	return l, nil
}

func (o *options) kubeletConfig() scraper.KubeletConfig {
	maxBody, _ := parseBytes("", o.kubeletMaxBody)      // validated
	inFlight, _ := parseBytes("", o.kubeletMaxInFlight) // validated
	types := make([]corev1.NodeAddressType, 0, len(o.kubeletAddressTypes))
	for _, t := range o.kubeletAddressTypes {
		types = append(types, corev1.NodeAddressType(strings.TrimSpace(t)))
	}
	return scraper.KubeletConfig{
		Port:                  o.kubeletPort,
		UseNodeStatusPort:     o.kubeletUseNodeStatusPort,
		PreferredAddressTypes: types,
		InsecureTLS:           o.kubeletInsecureTLS,
		CAFile:                o.kubeletCA,
		ClientCertFile:        o.kubeletClientCert,
		ClientKeyFile:         o.kubeletClientKey,
		Timeout:               o.kubeletTimeout,
		MaxBodyBytes:          maxBody,
		MaxBytesInFlight:      inFlight,
	}
}

func (o *options) storageConfig() tsdb.Config {
	size, _ := parseBytes("", o.retentionSize) // validated
	cfg := tsdb.Config{Dir: o.storagePath, Retention: o.retention, RetentionSize: size, Resolution: o.resolution, BlockDuration: o.blockDuration}
	for t, r := range o.tierRetention {
		cfg.TierRetention[t] = r
		if r == 0 {
			cfg.TierRetention[t] = -1 // off
		}
	}
	return cfg
}

// maxResponseBytes is --history-max-response-bytes in bytes (validated already).
func (o *options) maxResponseBytes() int {
	n, _ := parseBytes("--history-max-response-bytes", o.historyMaxResponse)
	return int(n)
}

func parseBytes(flag, s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a quantity such as 512Mi or 8Gi: %w", flag, s, err)
	}
	if q.Sign() < 0 {
		return 0, fmt.Errorf("%s must not be negative, got %s", flag, s)
	}
	return q.Value(), nil
}

func addressTypeStrings(ts []corev1.NodeAddressType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}
