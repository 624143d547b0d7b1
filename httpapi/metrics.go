package httpapi

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// selfMetrics are the history API's self-metrics.
type selfMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newSelfMetrics(reg prometheus.Registerer) (*selfMetrics, error) {
	m := &selfMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_history_requests_total",
			Help: "History API requests, by endpoint and HTTP status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hindsight_history_request_duration_seconds",
			Help:    "Time to answer a history API request, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1ms to 65s
		}, []string{"endpoint"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.requests); err != nil {
		return nil, fmt.Errorf("history api: register metrics: %w", err)
	}
	if err := reg.Register(m.duration); err != nil {
		reg.Unregister(m.requests)
		return nil, fmt.Errorf("history api: register metrics: %w", err)
	}
	return m, nil
}

// instrument counts and times the requests next serves under the endpoint label name,
// with promhttp's instrumentation.
func (m *selfMetrics) instrument(endpoint string, next http.HandlerFunc) http.HandlerFunc {
	l := prometheus.Labels{"endpoint": endpoint}
	return promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(l),
		promhttp.InstrumentHandlerDuration(m.duration.MustCurryWith(l), next))
}
