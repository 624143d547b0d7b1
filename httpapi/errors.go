package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/hindsight-metrics/hindsight/httpapi/budget"
	"github.com/hindsight-metrics/hindsight/tsdb"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// apiError is an error with the HTTP status it answers, and the parameter at fault.
type apiError struct {
	status int
	reason string
	param  string
	msg    string
	// retryAfter, when set, is the Retry-After header's seconds.
	retryAfter string
}

func (e *apiError) Error() string { return e.msg }

// errorBody is the JSON of every error response: a Kubernetes Status (kind, apiVersion,
// status "Failure", code, reason, message), so that kubectl and client-go show the message
// of an error answered through the kube-apiserver, plus the parameter a 400 is about.
type errorBody struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Status     string `json:"status"`
	Code       int    `json:"code"`
	Reason     string `json:"reason"`
	Parameter  string `json:"parameter,omitempty"`
	Message    string `json:"message"`
}

// paramError is a 400 naming the parameter.
func paramError(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, reason: "BadParameter", param: param,
		msg: param + ": " + fmt.Sprintf(format, args...)}
}

// limitError is a 422: a query over a documented limit.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

func notFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, reason: "NotFound", msg: fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) *apiError {
	return &apiError{status: http.StatusForbidden, reason: "Forbidden", msg: fmt.Sprintf(format, args...)}
}

// isForbidden reports whether err is a 403 of authorize.
func isForbidden(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status == http.StatusForbidden
}

// busyError translates a budget's refusal: ErrBusy is 429 Too Many Requests with
// Retry-After, saying why (what); an ended context is the timeout or cancellation it is.
func busyError(err error, what string) error {
	if !errors.Is(err, budget.ErrBusy) {
		return err
	}
	return &apiError{status: http.StatusTooManyRequests, reason: "TooManyRequests", retryAfter: budget.RetryAfter,
		msg: what + ": try again in " + budget.RetryAfter + "s"}
}

// isNotFound reports whether err is a 404.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status == http.StatusNotFound
}

// errUnauthenticated answers a request without a user.
var errUnauthenticated = &apiError{status: http.StatusUnauthorized, reason: "Unauthorized", msg: "authentication required"}

// toAPIError translates an error to its response; errors of ours keep their status.
func toAPIError(err error) *apiError {
	var ae *apiError
	var le *limitError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &le):
		return &apiError{status: http.StatusUnprocessableEntity, reason: "LimitExceeded", msg: le.msg}
	case errors.Is(err, tsdb.ErrTooManySeries), errors.Is(err, catalog.ErrTooMany):
		return &apiError{status: http.StatusUnprocessableEntity, reason: "LimitExceeded",
			msg: err.Error() + ": narrow the query (a label selector, a namespace, a workload)"}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, reason: "Timeout",
			msg: "the query took longer than the limit (--history-query-timeout): narrow it or use a larger step"}
	case errors.Is(err, tsdb.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, reason: "Unavailable", msg: "the server is shutting down"}
	case errors.Is(err, context.Canceled):
		return &apiError{status: http.StatusServiceUnavailable, reason: "Unavailable", msg: "the request was cancelled (by the client, or because the server is shutting down)"}
	}
	return &apiError{status: http.StatusInternalServerError, reason: "InternalError", msg: err.Error()}
}

// writeError answers err as JSON, whatever format was asked for: a CSV reader would
// otherwise take the message for data.
func writeError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae.status >= 500 {
		log.Error("History query failed", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if ae.retryAfter != "" {
		w.Header().Set("Retry-After", ae.retryAfter)
	}
	w.WriteHeader(ae.status)
	_ = json.NewEncoder(w).Encode(errorBody{Kind: "Status", APIVersion: "v1", Status: "Failure", Code: ae.status,
		Reason: ae.reason, Parameter: ae.param, Message: ae.msg})
}
