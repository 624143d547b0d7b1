package promapi

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"

	"github.com/hindsight-metrics/hindsight/httpapi/budget"
)

// Fixed limits on requests.
const (
	// MaxBodyBytes bounds a request body (a POSTed form).
	MaxBodyBytes = 1 << 20
	// MaxQueryBytes bounds the query parameter and each match[].
	MaxQueryBytes = 64 << 10
	// MaxMatchers bounds the number of match[] parameters of a request.
	MaxMatchers = 100
	// MaxPoints bounds the points per series of a range query, as in Prometheus.
	MaxPoints = 11000
)

// Defaults of Config's zero values.
const (
	DefaultMaxSamples    = 50_000_000
	DefaultTimeout       = 2 * time.Minute
	DefaultLookbackDelta = 5 * time.Minute
	// DefaultListLimit is the default and largest limit of /series, /labels and
	// /label/<name>/values: a longer answer is cut, with a warning, as Prometheus cuts one
	// at its limit parameter.
	DefaultListLimit = 10_000
)

// subqueryStep is the step of a subquery written without one (rate(x[5m:])): Prometheus
// uses its global evaluation interval, one minute by default.
const subqueryStep = time.Minute

// Config configures a Handler. Prefix, Queryable and Authorize are required; any other
// field left zero takes the default given with it.
type Config struct {
	// Prefix is the path the API is served under, such as "/prometheus/api/v1": the
	// handler serves Prefix+"/query" and so on and is given full request paths. It must
	// start with "/" and hold none of "{}*"; a trailing "/" is ignored.
	Prefix string

	// Queryable is the storage that queries read: tsdb.DB.Queryable() in production.
	Queryable storage.Queryable

	// Authorize decides whether a request may be served: a non-nil error answers 403
	// with the error's text. It is called for every request before any parameter is
	// parsed, with the request body already bounded to MaxBodyBytes.
	Authorize func(r *http.Request) error

	// Downsampled, when not nil, serves query's and query_range's max_source_resolution
	// parameter (resolution.go): in production the tsdb.DB, whose tiers it reads. Nil
	// means every query reads Queryable, whatever the parameter says.
	Downsampled Downsampler

	// Scope, when not nil, decides which series each query, series, labels and label
	// values request reads (see Scope and the package documentation's Authorization):
	// it is called once per request, after Authorize, with the namespaces the request
	// names. Nil means every request that Authorize lets through reads every series.
	Scope ScopeFunc

	// Version is status/buildinfo's version. Grafana reads it as a Prometheus version
	// when it detects the data source's features, so the default is EngineVersion().
	Version string
	// Revision is status/buildinfo's revision; empty by default.
	Revision string

	// MaxSamples bounds the samples a query may hold at once. Default 50,000,000.
	MaxSamples int
	// Timeout bounds a request, its wait for a query slot included. Default 2m.
	Timeout time.Duration
	// ListLimit is the limit of /series, /labels and /label/<name>/values when the
	// request gives none (or 0), and the largest a request may give. Default 10,000.
	ListLimit int
	// MaxResponseBytes bounds one encoded response; a larger one fails with 422. The
	// encoding's memory is bounded by MaxSamples. Default 64 MiB.
	MaxResponseBytes int
	// WriteTimeout bounds the writing of one response: a client that reads slower is
	// cut off. The query slot is released before writing. Default 30s.
	WriteTimeout time.Duration
	// LookbackDelta is how far back an instant vector looks for a sample. Default 5m.
	LookbackDelta time.Duration
	// Budget bounds the requests that read storage at once, shared with the other APIs
	// that read the same storage. A request takes a slot after it is authorized and
	// releases it once its response is encoded, before writing; when the budget's short
	// queue is full or its wait runs out it answers 429 with Retry-After. Nil means a
	// budget of this handler's own (budget.New(budget.DefaultSize())).
	Budget *budget.Budget
	// InFlight bounds the requests served at once, from authorization to the last byte
	// written, shared with the history API; a request beyond it is refused at once with
	// 429. Nil means no limit of the handler's own.
	InFlight *budget.Budget

	// Unavailable lists errors (compared with errors.Is) that mean the storage is not
	// serving, tsdb.ErrClosed for instance: a request failing with one of them answers
	// 503 unavailable instead of 422 execution. The Prometheus TSDB's ErrNotReady
	// always does. Empty by default.
	Unavailable []error

	// Registerer, when not nil, gets the handler's and the PromQL engine's metrics
	// (hindsight_promapi_*, prometheus_engine_*). Nil by default: no metrics.
	Registerer prometheus.Registerer
}

// withDefaults checks the required fields and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	c.Prefix = strings.TrimSuffix(c.Prefix, "/")
	switch {
	case c.Prefix == "":
		errs = append(errs, errors.New("prefix is required"))
	case !strings.HasPrefix(c.Prefix, "/"):
		errs = append(errs, fmt.Errorf("prefix %q does not start with /", c.Prefix))
	case strings.ContainsAny(c.Prefix, "{}*"):
		errs = append(errs, fmt.Errorf("prefix %q holds one of {}*", c.Prefix))
	}
	if c.Queryable == nil {
		errs = append(errs, errors.New("queryable is required"))
	}
	if c.Authorize == nil {
		errs = append(errs, errors.New("authorize is required: the api is never served without authorization"))
	}
	for name, v := range map[string]int64{
		"max samples":    int64(c.MaxSamples),
		"timeout":        int64(c.Timeout),
		"lookback delta": int64(c.LookbackDelta),
		"list limit":     int64(c.ListLimit),
		"max response":   int64(c.MaxResponseBytes),
		"write timeout":  int64(c.WriteTimeout),
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s is negative", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	c.Version = cmp.Or(c.Version, EngineVersion())
	c.MaxSamples = cmp.Or(c.MaxSamples, DefaultMaxSamples)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.LookbackDelta = cmp.Or(c.LookbackDelta, DefaultLookbackDelta)
	c.ListLimit = cmp.Or(c.ListLimit, DefaultListLimit)
	c.MaxResponseBytes = cmp.Or(c.MaxResponseBytes, budget.DefaultMaxResponseBytes)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, budget.DefaultWriteTimeout)
	if c.Budget == nil {
		c.Budget, _ = budget.New(budget.DefaultSize()) // cannot fail: a positive size
	}
	return c, nil
}

// prometheusModule is the module whose PromQL engine this package runs.
const prometheusModule = "github.com/prometheus/prometheus"

// engineRelease is the release of the Prometheus module in go.mod, for binaries without
// build information (tests); TestEngineVersion fails when go.mod moves on.
const engineRelease = "3.15.0"

// EngineVersion returns the Prometheus release whose PromQL engine is linked in, such as
// "3.15.0" for the Go module v0.315.0: from the build information, or else the release
// of go.mod's module when this package was last changed.
func EngineVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == prometheusModule {
				if v, ok := releaseOf(dep.Version); ok {
					return v
				}
			}
		}
	}
	return engineRelease
}

// releaseOf maps the Go module version of Prometheus to its release: v0.315.2 is 3.15.2.
func releaseOf(module string) (string, bool) {
	parts := strings.SplitN(strings.TrimPrefix(module, "v0."), ".", 2)
	if len(parts) != 2 || !strings.HasPrefix(module, "v0.") {
		return "", false
	}
	n, err := strconv.Atoi(parts[0])
	if err != nil || n < 100 {
		return "", false
	}
	patch, _, _ := strings.Cut(parts[1], "-")
	if _, err := strconv.Atoi(patch); err != nil {
		return "", false
	}
	return fmt.Sprintf("%d.%d.%s", n/100, n%100, patch), true
}
