package promapi

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the handler's own metrics; a nil *metrics records nothing.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg *checkedRegisterer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_promapi_requests_total",
			Help: "Requests to the Prometheus API, by endpoint and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hindsight_promapi_request_duration_seconds",
			Help:    "Time to answer a request to the Prometheus API, waiting for a query slot included.",
			Buckets: []float64{.005, .025, .1, .5, 1, 2.5, 10, 30, 120},
		}, []string{"handler"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// instrument counts and times the requests next serves under the handler label name,
// with promhttp's instrumentation; a nil m returns next.
func (m *metrics) instrument(name string, next http.HandlerFunc) http.HandlerFunc {
	if m == nil {
		return next
	}
	l := prometheus.Labels{"handler": name}
	return promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(l),
		promhttp.InstrumentHandlerDuration(m.duration.MustCurryWith(l), next))
}

// checkedRegisterer turns the PromQL engine's MustRegister into Register, so that a
// registry that refuses its metrics makes New fail instead of panicking. After the first
// refusal it registers nothing more and unregisters what it registered.
type checkedRegisterer struct {
	reg  prometheus.Registerer
	mu   sync.Mutex
	done []prometheus.Collector
	err  error
}

// newCheckedRegisterer returns nil for a nil reg.
func newCheckedRegisterer(reg prometheus.Registerer) *checkedRegisterer {
	if reg == nil {
		return nil
	}
	return &checkedRegisterer{reg: reg}
}

func (c *checkedRegisterer) Register(col prometheus.Collector) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if err := c.reg.Register(col); err != nil {
		c.err = err
		for _, d := range c.done {
			c.reg.Unregister(d)
		}
		c.done = nil
		return err
	}
	c.done = append(c.done, col)
	return nil
}

func (c *checkedRegisterer) MustRegister(cols ...prometheus.Collector) {
	for _, col := range cols {
		_ = c.Register(col) // kept in c.err, reported by Err
	}
}

func (c *checkedRegisterer) Unregister(col prometheus.Collector) bool { return c.reg.Unregister(col) }

// Err is the first registration error; nil for a nil c.
func (c *checkedRegisterer) Err() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return nil
}
