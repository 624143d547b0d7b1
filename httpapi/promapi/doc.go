// Package promapi serves Hindsight's history through the read half of the Prometheus HTTP
// API, so that Grafana can use Hindsight as a Prometheus data source and `promtool query`
// works against it. It is a chi http.Handler over a storage.Queryable (in production the
// TSDB of package tsdb) and Prometheus' own PromQL engine.
//
// # Endpoints
//
// Under Config.Prefix (for example /prometheus/api/v1), for GET and for POST with a
// form-encoded body (what promtool and Grafana send). The handler routes on the full
// request path: mount it with chi's Mount or an http.ServeMux pattern, not behind
// http.StripPrefix. Clients are pointed at the prefix less /api/v1 (promtool query
// instant https://host/prometheus ...).
//
//	query                 query, time (default now), timeout, limit, lookback_delta, max_source_resolution
//	query_range           query, start, end, step, timeout, limit, lookback_delta, max_source_resolution
//	series                match[] (one at least), start, end, limit
//	labels                match[], start, end, limit
//	label/<name>/values   match[], start, end, limit
//	status/buildinfo      Config.Version (default EngineVersion), Config.Revision
//	metadata              an empty object: the stored series carry no metadata
//	query_exemplars       an empty list: nothing stores exemplars
//
// max_source_resolution (raw, a duration or auto; resolution.go) lets a query read
// Config.Downsampled's tiers, as Thanos' query API does.
//
// Every other path answers 404 with errorType "not_found", and other methods 405. Times and
// durations are parsed by package querytime, as the history API parses them: Prometheus'
// syntax (RFC 3339 or Unix seconds; Prometheus durations or seconds), plus now and times
// relative to now. series, labels and label values default to all of time.
//
// Responses are Prometheus' JSON envelope, encoded by Prometheus' own codec
// (web/api/v1.JSONCodec, v1.Response, v1.QueryData, v1.PrometheusVersion):
// {"status":"success","data":...,"warnings":[...],"infos":[...]}, warnings and infos left
// out when empty; samples as [<unix seconds>, "<value>"]. Errors are
// {"status":"error","errorType":...,"error":...} with these status codes:
//
//	400 bad_data      a parameter that does not parse or exceeds a limit
//	403 forbidden     Config.Authorize or Config.Scope refused the request
//	404 not_found     an endpoint that is not served
//	422 execution     the query failed while running (too many samples, for example)
//	503 timeout       the timeout passed, waiting for a query slot or running
//	503 canceled      the client went away (Prometheus answers 499)
//	503 unavailable   the storage is closing or not ready (Config.Unavailable)
//	500 internal      a panic, or an error the engine reports as promql.ErrStorage
//
// # Limits
//
//   - A request body is read up to MaxBodyBytes (1 MiB); a query up to MaxQueryBytes
//     (64 KiB); at most MaxMatchers (100) match[] are taken, each up to MaxQueryBytes.
//   - A range query yields at most MaxPoints (11,000) points per series, step > 0, with
//     Prometheus' error message otherwise.
//   - Config.Budget (budget.DefaultSize(): half the CPUs, at most 4, when nil) bounds
//     the storage requests that run at once, shared with the history API; the others
//     wait in its short queue (budget.DefaultQueue waiters, each budget.DefaultMaxWait)
//     or are refused at once with 429. The wait counts towards the timeout.
//   - Config.Timeout (2m) bounds each request, waiting included; a timeout parameter can
//     only shorten it. Config.MaxSamples (50,000,000) bounds the samples a query holds.
//
// # Authorization
//
// Config.Authorize is required: New refuses a nil one, so the API is never served
// without authorization. It is called for every request, whatever the path, after the
// body has been bounded and before anything is parsed or read from storage; an error
// answers 403 with the error's text. Note that Prometheus clients (client_golang, hence
// promtool) retry a POST refused with 403 as a GET, so Authorize may be called twice for
// one client call.
//
// # Tenancy
//
// Config.Scope, when set, decides per request which series query, query_range, series,
// labels and label/<name>/values read (tenant.go). The request names namespaces with
// namespace="x" and namespace=~"x|y" matchers in its selectors and with namespace
// parameters (at most MaxNamespaces in all); Scope gets them, deduplicated and sorted,
// once per request, and answers a Scope: everything, or the node series (no namespace
// label) and/or some namespaces, each from a start time (its current incarnation's
// creation). Anything else is not the request's to read: the storage the engine and the
// endpoints get is wrapped so that every Select, hence every selector, subquery and
// function argument, gets the matcher namespace="x" of each part of the scope and the
// part's start; label names and values are read from those series (the TSDB's index
// would answer for whole blocks, and its open head chunks overlap every range). A Scope
// error answers 403. Package httpapi's PrometheusScope is the rule cmd wires: RBAC
// through SubjectAccessReviews and the namespace informer's incarnations.
package promapi
