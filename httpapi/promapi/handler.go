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

// guard bounds the body and authorizes the request, whatever its path.
func (h *Handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
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

// finish writes the response and releases what the result holds.
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, res result) {
	if res.done != nil {
		defer res.done()
	}
	if res.err != nil {
		switch {
		case res.err.typ == errorCanceled:
			h.log.Debug("request canceled", "path", r.URL.Path, "err", res.err.err)
		case res.err.code >= 500:
			h.log.Warn("request failed", "path", r.URL.Path, "type", res.err.typ, "err", res.err.err)
		}
		writeError(w, res.err)
	} else {
		writeSuccess(w, h.log, res)
	}
}

// writeSuccess writes {"status":"success","data":...,"warnings":[...],"infos":[...]}
// through Prometheus' own codec.
func writeSuccess(w http.ResponseWriter, log *slog.Logger, res result) {
	warns, infos := res.warnings.AsStrings(res.query, 10, 10)
	b, err := v1.JSONCodec{}.Encode(&v1.Response{Status: "success", Data: res.data, Warnings: warns, Infos: infos})
	if err != nil {
		log.Error("encoding response", "err", err)
		writeError(w, newError(errorInternal, fmt.Errorf("encode response: %w", err)))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(b); err != nil {
		log.Debug("writing response", "err", err)
	}
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

// acquire waits for a slot of the query budget while ctx lasts and returns its release.
func (h *Handler) acquire(ctx context.Context) (func(), *apiError) {
	release, err := h.budget.Acquire(ctx)
	if err != nil {
		return nil, queueError(err)
	}
	return release, nil
}
