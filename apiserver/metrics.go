package apiserver

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// apiMetrics are the self-metrics of the metrics.k8s.io endpoints.
type apiMetrics struct {
	// freshness is observed once per served node or pod: request time minus the point's timestamp.
	freshness prometheus.Observer
}

// newAPIMetrics registers the self-metrics on reg; a nil reg keeps them unregistered. When reg
// already holds an identical collector (a second Server in one process, as in tests), that one
// is reused.
func newAPIMetrics(reg prometheus.Registerer) (*apiMetrics, error) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "hindsight",
		Subsystem: "api",
		Name:      "metric_freshness_seconds",
		Help:      "Age of the metric points served by metrics.k8s.io, in seconds: request time minus the point's timestamp.",
		// metrics-server's buckets: 1s to ~6.5 min.
		Buckets: prometheus.ExponentialBuckets(1, 1.364, 20),
	})
	if reg != nil {
		if err := reg.Register(h); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register hindsight_api_metric_freshness_seconds: %w", err)
			}
			existing, ok := are.ExistingCollector.(prometheus.Histogram)
			if !ok {
				return nil, fmt.Errorf("register hindsight_api_metric_freshness_seconds: %w", err)
			}
			h = existing
		}
	}
	return &apiMetrics{freshness: h}, nil
}

func (m *apiMetrics) observeFreshness(now, ts time.Time) {
	m.freshness.Observe(now.Sub(ts).Seconds())
}
