package promapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/annotations"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/hindsight-metrics/hindsight/httpapi/budget"
	"github.com/hindsight-metrics/hindsight/httpapi/internal/querytime"
)

// Handler serves the Prometheus read API. It is safe for concurrent use.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	mux     *chi.Mux
	engine  *promql.Engine
	parser  parser.Parser
	budget  *budget.Budget
	metrics *metrics
	now     func() time.Time
}

// result is what an endpoint answers: data or an error, the warnings to show, and what
// to release once the response is written (a query's memory, a querier, a query slot).
type result struct {
	data     any // encoded by Prometheus' v1.JSONCodec
	err      *apiError
	warnings annotations.Annotations
	query    string // the query the warnings' positions refer to
	done     func()
}

// endpoint serves one path; the request's form is parsed already.
type endpoint func(r *http.Request) result

// New returns a Handler. It fails when a required field of cfg is missing or invalid,
// or when cfg.Registerer refuses the metrics (registered already, for instance). A nil
// log discards.
func New(cfg Config, log *slog.Logger) (*Handler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("promapi config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := newCheckedRegisterer(cfg.Registerer)
	p := parser.NewParser(parser.Options{})
	opts := promql.EngineOpts{
		Logger:                   log.With("component", "promql"),
		MaxSamples:               cfg.MaxSamples,
		Timeout:                  cfg.Timeout,
		LookbackDelta:            cfg.LookbackDelta,
		NoStepSubqueryIntervalFn: func(int64) int64 { return subqueryStep.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   p,
	}
	if reg != nil {
		opts.Reg = reg
	}
	h := &Handler{
		cfg:     cfg,
		log:     log,
		engine:  promql.NewEngine(opts),
		parser:  p,
		budget:  cfg.Budget,
		metrics: newMetrics(reg),
		now:     time.Now,
	}
	if err := reg.Err(); err != nil {
		return nil, fmt.Errorf("register promapi metrics: %w", err)
	}
	h.mux = h.routes()
	return h, nil
}

// ServeHTTP serves r, whose path is the full path (Config.Prefix included).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Route on the full path even when a parent chi router handed us its routing
	// context (chi's Mount): a nil context makes our mux start its own.
	r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, nil))
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) routes() *chi.Mux {
	m := chi.NewRouter()
	// Responses are gzipped for clients that accept it, as Prometheus does.
	m.Use(h.recoverer, middleware.Compress(5, "application/json"), h.guard)
	p := h.cfg.Prefix
	for path, ep := range map[string]endpoint{
		"/query":               h.query,
		"/query_range":         h.queryRange,
		"/series":              h.series,
		"/labels":              h.labelNames,
		"/label/{name}/values": h.labelValues,
		"/status/buildinfo":    h.serveBuildInfo,
		"/metadata":            constant(struct{}{}),   // {}: no metadata is stored
		"/query_exemplars":     constant([]struct{}{}), // []: no exemplars are stored
	} {
		hf := h.metrics.instrument(path, h.wrap(ep))
		m.Get(p+path, hf)
		m.Post(p+path, hf)
	}
	m.NotFound(h.metrics.instrument("other", func(w http.ResponseWriter, r *http.Request) {
		h.finish(w, r, result{err: newError(errorNotFound,
			fmt.Errorf("%s is not served: hindsight serves query, query_range, series, labels, label/<name>/values and status/buildinfo under %s", r.URL.Path, p))})
	}))
	m.MethodNotAllowed(h.metrics.instrument("other", func(w http.ResponseWriter, r *http.Request) {
		aerr := newError(errorBadData, fmt.Errorf("method %s is not allowed on %s: use GET or POST", r.Method, r.URL.Path))
		aerr.code = http.StatusMethodNotAllowed
		h.finish(w, r, result{err: aerr})
	}))
	return m
}

// guard bounds the body, takes a place of the in-flight limit and authorizes the request,
// whatever its path. (The query slot is taken by the endpoint, after this.)
func (h *Handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		if b := h.cfg.InFlight; b != nil {
			release, err := b.Acquire(r.Context())
			if err != nil {
				aerr := queueError(err)
				if errors.Is(err, budget.ErrBusy) {
					aerr = busyError(fmt.Sprintf("%d history and Prometheus requests are being served, the most at once", b.Size()))
				}
				h.metrics.instrument("busy", func(w http.ResponseWriter, r *http.Request) { h.finish(w, r, result{err: aerr}) }).ServeHTTP(w, r)
				return
			}
			defer release()
		}
		if err := h.cfg.Authorize(r); err != nil {
			h.log.Debug("request refused", "path", r.URL.Path, "err", err)
			h.metrics.instrument("forbidden", func(w http.ResponseWriter, r *http.Request) {
				h.finish(w, r, result{err: newError(errorForbidden, err)})
			}).ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recoverer answers 500 rather than dropping the connection when a handler panics.
func (h *Handler) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel is compared, never wrapped
				panic(v)
			}
			h.log.Error("panic serving request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeError(w, newError(errorInternal, errors.New("internal error")))
		}()
		next.ServeHTTP(w, r)
	})
}

// wrap turns an endpoint into a handler: form parsing and response.
func (h *Handler) wrap(ep endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			h.finish(w, r, result{err: formError(err)})
			return
		}
		h.finish(w, r, ep(r))
	}
}

// formError explains a form that does not parse.
func formError(err error) *apiError {
	if maxErr, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return newError(errorBadData, fmt.Errorf("error parsing form values: request body larger than %d bytes", maxErr.Limit))
	}
	return newError(errorBadData, fmt.Errorf("error parsing form values: %w", err))
}

// finish encodes the response, releases what the result holds (its query slot among
// them), then writes it within WriteTimeout: a slow client holds no slot.
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, res result) {
	var body []byte
	if res.err == nil {
		body, res.err = h.encodeSuccess(res)
	}
	if res.done != nil {
		res.done()
	}
	h.setWriteDeadline(w, r)
	if res.err != nil {
		switch {
		case res.err.typ == errorCanceled:
			h.log.Debug("request canceled", "path", r.URL.Path, "err", res.err.err)
		case res.err.code >= 500:
			h.log.Warn("request failed", "path", r.URL.Path, "type", res.err.typ, "err", res.err.err)
		}
		writeError(w, res.err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(body); err != nil {
		h.log.Debug("writing response", "err", err)
	}
}

// setWriteDeadline bounds the writing of the response where the connection supports it
// (HTTP/1 and HTTP/2 do).
func (h *Handler) setWriteDeadline(w http.ResponseWriter, r *http.Request) {
	err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		h.log.Debug("setting a write deadline", "path", r.URL.Path, "err", err)
	}
}

// encodeSuccess encodes {"status":"success","data":...,"warnings":[...],"infos":[...]}
// through Prometheus' own codec, at most MaxResponseBytes of it.
func (h *Handler) encodeSuccess(res result) ([]byte, *apiError) {
	warns, infos := res.warnings.AsStrings(res.query, 10, 10)
	b, err := v1.JSONCodec{}.Encode(&v1.Response{Status: "success", Data: res.data, Warnings: warns, Infos: infos})
	if err != nil {
		h.log.Error("encoding response", "err", err)
		return nil, newError(errorInternal, fmt.Errorf("encode response: %w", err))
	}
	if len(b) > h.cfg.MaxResponseBytes {
		return nil, newError(errorExec, fmt.Errorf("the response is %d bytes, more than the limit of %d: narrow the query, use a larger step or a limit", len(b), h.cfg.MaxResponseBytes))
	}
	return b, nil
}

// writeError writes {"status":"error","errorType":...,"error":...}, as Prometheus'
// respondError does.
func writeError(w http.ResponseWriter, e *apiError) {
	b, err := v1.JSONCodec{}.Encode(&v1.Response{Status: "error", ErrorType: string(e.typ), Error: e.err.Error()})
	if err != nil { // cannot happen: two strings
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if e.code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", budget.RetryAfter)
	}
	w.WriteHeader(e.code)
	_, _ = w.Write(b) // the client is gone; nothing to do
}

// constant is an endpoint that always answers data.
func constant(data any) endpoint {
	return func(*http.Request) result { return result{data: data} }
}

// requestContext is r's context bounded by Config.Timeout or, when shorter, by the
// timeout parameter.
func (h *Handler) requestContext(r *http.Request) (context.Context, context.CancelFunc, *apiError) {
	timeout := h.cfg.Timeout
	if v := r.Form.Get("timeout"); v != "" {
		d, err := querytime.Duration(v)
		if err != nil {
			return nil, nil, badParam("timeout", err)
		}
		if d <= 0 {
			return nil, nil, badParam("timeout", errors.New("timeout must be positive"))
		}
		timeout = min(timeout, d)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	return ctx, cancel, nil
}

// acquire takes a slot of the query budget, waiting in its short queue while ctx lasts,
// and returns its release. A full budget answers 429 with Retry-After.
func (h *Handler) acquire(ctx context.Context) (func(), *apiError) {
	release, err := h.budget.Acquire(ctx)
	if errors.Is(err, budget.ErrBusy) {
		return nil, busyError(fmt.Sprintf("all %d query slots (shared with the history API) are taken and %d more queries wait", h.budget.Size(), h.budget.Queue()))
	}
	if err != nil {
		return nil, queueError(err)
	}
	return release, nil
}

// busyError is 429 Too Many Requests (of type unavailable: Prometheus has no type of its
// own for it), saying why; writeError adds Retry-After.
func busyError(why string) *apiError {
	return &apiError{typ: errorUnavailable, code: http.StatusTooManyRequests,
		err: fmt.Errorf("%s: try again in %ss", why, budget.RetryAfter)}
}
