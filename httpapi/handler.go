package httpapi

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/hindsight-metrics/hindsight/httpapi/budget"
	"github.com/hindsight-metrics/hindsight/tsdb"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// Prefix is where the history API lives; cmd mounts the handler there.
const Prefix = "/history/v1/"

// GroupVersion is the history API as an aggregated API group: through the kube-apiserver,
// /apis/history.hindsight.dev/v1/<path> is Prefix<path>, and the kube-apiserver's RBAC
// sees a resource request of this group (/apis/history.hindsight.dev/v1/namespaces/shop/deployments/web
// is get deployments.history.hindsight.dev "web" in namespace shop) before the handler's
// own per-namespace checks.
var GroupVersion = schema.GroupVersion{Group: "history.hindsight.dev", Version: "v1"}

// Samples answers range queries over the stored series. *tsdb.DB implements it.
type Samples interface {
	Range(ctx context.Context, sel tsdb.Selector, q tsdb.RangeQuery, fn func(*tsdb.RangeSeries) error) error
	// Plan returns where each step of q is read: raw samples or a downsampled tier.
	Plan(q tsdb.RangeQuery) []tsdb.RangePart
}

// Catalog finds pods and nodes, live or gone. *catalog.Catalog implements it.
type Catalog interface {
	Pod(uid string) (catalog.PodRecord, error)
	PodsByName(ns, name string) ([]catalog.PodRecord, error)
	PodsByOwner(ns, kind, name string, from, to time.Time) ([]catalog.PodRecord, error)
	PodsMatching(ns string, match func(map[string]string) bool, from, to time.Time) ([]catalog.PodRecord, error)
	Node(name string) (catalog.NodeRecord, error)
	Nodes(from, to time.Time) ([]catalog.NodeRecord, error)
	Namespaces() ([]string, error)
}

// Authorizer decides whether a user may read an object's metrics: the API server's
// delegated authorizer (SubjectAccessReview, with its own short cache).
type Authorizer interface {
	Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error)
}

// Defaults of Config's limits.
const (
	DefaultMaxPoints    = 11_000
	DefaultMaxSeries    = 1_000
	DefaultQueryTimeout = time.Minute
	// maxValues bounds the values one response holds (series × steps × resources), so
	// that the largest allowed response stays within about 100 MB of memory.
	maxValues = 4_000_000
)

// Config is what New needs. Samples, Catalog and Authorizer are required.
type Config struct {
	Samples    Samples
	Catalog    Catalog
	Authorizer Authorizer
	// Namespaces, when not nil, gives each namespace's current incarnation: readers who
	// are not cluster-wide see a namespace's history from its creation on (authz.go).
	Namespaces Namespaces
	// Resolution is the scrape interval (--metric-resolution): the smallest default step.
	// 0 means 15s.
	Resolution time.Duration
	// MaxPoints bounds the steps of one series (--history-max-points). 0 means 11,000.
	MaxPoints int
	// MaxSeries bounds the series of one response, and the pods summed into one total
	// (--history-max-series). 0 means 1,000.
	MaxSeries int
	// QueryTimeout bounds one request's time (--history-query-timeout). 0 means 1m.
	QueryTimeout time.Duration
	// MaxResponseBytes bounds one encoded response (--history-max-response-bytes); a
	// larger one is refused with 422. 0 means 64 MiB.
	MaxResponseBytes int
	// WriteTimeout bounds the writing of one response (--history-write-timeout). 0 means
	// 30s.
	WriteTimeout time.Duration
	// Budget bounds the queries computed at once, shared with the other APIs that read
	// the same storage. A request takes a slot once it is authorized, when it first
	// reads the TSDB, and releases it once its response is encoded, before writing it;
	// when the budget's short queue is full or its wait runs out, it answers 429 with
	// Retry-After. Nil means a budget of the handler's own (budget.New(budget.DefaultSize())).
	Budget *budget.Budget
	// InFlight bounds the requests served at once, from authorization to the last byte
	// written, shared with the Prometheus API: the history APIs' own in-flight limit,
	// apart from metrics.k8s.io's (--max-requests-inflight). A request beyond it is
	// refused at once with 429. Nil means no limit of the handler's own.
	InFlight *budget.Budget
	// Log receives failed queries. Nil discards.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Registerer receives the self-metrics (hindsight_history_requests_total and
	// hindsight_history_request_duration_seconds). Nil keeps them unregistered.
	Registerer prometheus.Registerer
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.Samples == nil {
		errs = append(errs, errors.New("history api: Samples is required"))
	}
	if c.Catalog == nil {
		errs = append(errs, errors.New("history api: Catalog is required"))
	}
	if c.Authorizer == nil {
		errs = append(errs, errors.New("history api: Authorizer is required"))
	}
	for name, v := range map[string]int{"MaxPoints": c.MaxPoints, "MaxSeries": c.MaxSeries, "MaxResponseBytes": c.MaxResponseBytes} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("history api: %s must not be negative, got %d", name, v))
		}
	}
	if c.Resolution < 0 || c.QueryTimeout < 0 {
		errs = append(errs, errors.New("history api: Resolution and QueryTimeout must not be negative"))
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, errors.New("history api: WriteTimeout must not be negative"))
	}
	return errors.Join(errs...)
}

// Handler serves the history API under Prefix.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	router  chi.Router
	metrics *selfMetrics
}

var _ http.Handler = (*Handler)(nil)

// New returns the handler of the history API.
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Resolution = cmp.Or(cfg.Resolution, tsdb.DefaultResolution)
	cfg.MaxPoints = cmp.Or(cfg.MaxPoints, DefaultMaxPoints)
	cfg.MaxSeries = cmp.Or(cfg.MaxSeries, DefaultMaxSeries)
	cfg.QueryTimeout = cmp.Or(cfg.QueryTimeout, DefaultQueryTimeout)
	cfg.MaxResponseBytes = cmp.Or(cfg.MaxResponseBytes, budget.DefaultMaxResponseBytes)
	cfg.WriteTimeout = cmp.Or(cfg.WriteTimeout, budget.DefaultWriteTimeout)
	if cfg.Budget == nil {
		cfg.Budget, _ = budget.New(budget.DefaultSize()) // cannot fail: a positive size
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newSelfMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, log: cfg.Log, metrics: m}
	r := chi.NewRouter()
	// JSON and CSV answers shrink five- to ninefold with gzip (curl --compressed; TestGzip).
	r.Use(h.requireUser, h.limitInFlight, getOnly, middleware.Compress(5, "application/json", "text/csv"))
	r.Route("/history/v1", func(r chi.Router) {
		r.Get("/", h.index)
		r.Get("/openapi.json", serveOpenAPI)
		r.Get("/cluster", h.query("cluster", h.cluster))
		r.Get("/nodes", h.query("nodes", h.nodes))
		r.Get("/nodes/{node}", h.query("node", h.node))
		r.Get("/namespaces", h.query("namespaces", h.namespaces))
		r.Get("/namespaces/{namespace}", h.query("namespace", h.namespace))
		r.Get("/namespaces/{namespace}/pods", h.query("pods", h.pods))
		r.Get("/namespaces/{namespace}/pods/{pod}", h.query("pod", h.podByName))
		r.Get("/namespaces/{namespace}/pods/{pod}/containers", h.query("containers", h.containersByName))
		r.Get("/namespaces/{namespace}/{workloads}/{name}", h.query("workload", h.workload))
		r.Get("/pods/{uid}", h.query("podByUID", h.podByUID))
		r.Get("/pods/{uid}/containers", h.query("containersByUID", h.containersByUID))
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, h.log, r, notFound("no history endpoint at %s; GET %s lists them", r.URL.Path, Prefix))
	})
	h.router = r
	return h, nil
}

// ServeHTTP serves one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.router.ServeHTTP(w, r) }

// requireUser refuses a request without an authenticated user: the API server's
// authentication filter always sets one, so this only guards a mounting mistake.
func (h *Handler) requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := request.UserFrom(r.Context()); !ok || u == nil {
			writeError(w, h.log, r, errUnauthenticated)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limitInFlight refuses a request at once with 429 when InFlight requests are served.
func (h *Handler) limitInFlight(next http.Handler) http.Handler {
	if h.cfg.InFlight == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, err := h.cfg.InFlight.Acquire(r.Context())
		if err != nil {
			writeError(w, h.log, r, busyError(err, fmt.Sprintf("%d history and Prometheus requests are being served, the most at once", h.cfg.InFlight.Size())))
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

func getOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			writeError(w, nil, r, &apiError{status: http.StatusMethodNotAllowed, reason: "MethodNotAllowed", msg: r.Method + " is not allowed; the history API is read with GET"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// endpoint computes a response from a request's parsed query.
type endpoint func(ctx context.Context, r *http.Request, q *query) (*result, error)

// query wraps an endpoint: parse, compute within the timeout (the endpoint authorizes,
// then takes a slot of the budget when it first reads the TSDB), encode into a buffer
// of at most MaxResponseBytes, release the slot, and write within WriteTimeout; the
// request is counted and timed under the endpoint label name.
func (h *Handler) query(name string, e endpoint) http.HandlerFunc {
	return h.metrics.instrument(name, func(w http.ResponseWriter, r *http.Request) {
		now := h.cfg.Now()
		q, err := parseQuery(r.URL.Query(), r.Header.Get("Accept"), now, limits{resolution: h.cfg.Resolution, maxPoints: h.cfg.MaxPoints})
		if err != nil {
			writeError(w, h.log, r, err)
			return
		}
		q.slot = &slot{budget: h.cfg.Budget}
		body, contentType, err := h.compute(r, q, e)
		q.slot.free()
		if err != nil {
			writeError(w, h.log, r, err)
			return
		}
		if len(q.parts) > 0 {
			w.Header().Set(headerSources, sourcesHeader(q))
		}
		h.write(w, r, body, contentType)
	})
}

// compute runs e and encodes its result, within the query timeout.
func (h *Handler) compute(r *http.Request, q *query, e endpoint) (*cappedBuffer, string, error) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueryTimeout)
	defer cancel()
	res, err := e(ctx, r, q)
	if err != nil {
		return nil, "", err
	}
	body := &cappedBuffer{max: h.cfg.MaxResponseBytes}
	contentType, err := encode(body, q, res)
	if errors.Is(err, errTooLarge) {
		return nil, "", &limitError{msg: fmt.Sprintf("the response is larger than the limit of %d bytes (--history-max-response-bytes): narrow the query or use a larger step", h.cfg.MaxResponseBytes)}
	}
	if err != nil {
		return nil, "", fmt.Errorf("encode the response: %w", err)
	}
	return body, contentType, nil
}

// write sends an encoded response; a client that does not take it within WriteTimeout is
// cut off (where the connection supports write deadlines: HTTP/1 and HTTP/2 do).
func (h *Handler) write(w http.ResponseWriter, r *http.Request, body *cappedBuffer, contentType string) {
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		h.log.Debug("Setting a write deadline failed", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", contentType)
	if _, err := body.WriteTo(w); err != nil {
		h.log.Debug("Writing a history response failed", "path", r.URL.Path, "err", err)
	}
}

// slot is a request's query slot: taken when the request first reads the TSDB, which it
// does only once it is authorized, and freed once its response is encoded.
type slot struct {
	budget  *budget.Budget
	mu      sync.Mutex
	release func()
}

// acquire takes the slot unless the request holds it already. A nil slot (a query built
// by a test) takes nothing.
func (s *slot) acquire(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release != nil {
		return nil
	}
	release, err := s.budget.Acquire(ctx)
	if err != nil {
		return busyError(err, fmt.Sprintf("all %d query slots (shared with the Prometheus API) are taken and %d more queries wait", s.budget.Size(), s.budget.Queue()))
	}
	s.release = release
	return nil
}

// free releases the slot if it was taken.
func (s *slot) free() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release != nil {
		s.release()
	}
}

// The index lists the endpoints.
func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(indexJSON)
}

var indexJSON = []byte(`{"endpoints":[` +
	`"/history/v1/cluster",` +
	`"/history/v1/nodes","/history/v1/nodes/{node}",` +
	`"/history/v1/namespaces","/history/v1/namespaces/{namespace}",` +
	`"/history/v1/namespaces/{namespace}/pods","/history/v1/namespaces/{namespace}/pods/{pod}",` +
	`"/history/v1/namespaces/{namespace}/pods/{pod}/containers",` +
	`"/history/v1/namespaces/{namespace}/{deployments|statefulsets|daemonsets|replicasets|jobs|cronjobs}/{name}",` +
	`"/history/v1/pods/{uid}","/history/v1/pods/{uid}/containers"],` +
	`"openapi":"/history/v1/openapi.json"}` + "\n")

//go:embed openapi.json
var openAPIJSON []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIJSON)
}
