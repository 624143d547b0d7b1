package promapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/prometheus/promql"
	promtsdb "github.com/prometheus/prometheus/tsdb"
)

// errorType is the errorType of an error response; Prometheus' names, plus forbidden.
type errorType string

const (
	errorBadData     errorType = "bad_data"
	errorExec        errorType = "execution"
	errorTimeout     errorType = "timeout"
	errorCanceled    errorType = "canceled"
	errorUnavailable errorType = "unavailable"
	errorInternal    errorType = "internal"
	errorNotFound    errorType = "not_found"
	errorForbidden   errorType = "forbidden"
)

// apiError is an error response: its type, its status code and the error shown.
type apiError struct {
	typ  errorType
	code int
	err  error
}

func (e *apiError) Error() string { return fmt.Sprintf("%s: %v", e.typ, e.err) }

func newError(typ errorType, err error) *apiError {
	return &apiError{typ: typ, code: statusCode(typ), err: err}
}

// statusCode is the status code of an error type: Prometheus', except canceled and
// unavailable, which Prometheus answers with 499 and 500.
func statusCode(typ errorType) int {
	switch typ {
	case errorBadData:
		return http.StatusBadRequest
	case errorExec:
		return http.StatusUnprocessableEntity
	case errorTimeout, errorCanceled, errorUnavailable:
		return http.StatusServiceUnavailable
	case errorNotFound:
		return http.StatusNotFound
	case errorForbidden:
		return http.StatusForbidden
	default:
		return http.StatusInternalServerError
	}
}

// badParam is a bad_data error about one parameter, worded as Prometheus does.
func badParam(name string, err error) *apiError {
	return newError(errorBadData, fmt.Errorf("invalid parameter %q: %w", name, err))
}

// queueError is the error of a request whose context ended while it waited for a query
// slot, worded as the PromQL engine words a wait in its own queue.
func queueError(err error) *apiError {
	if errors.Is(err, context.DeadlineExceeded) {
		return newError(errorTimeout, promql.ErrQueryTimeout("query queue"))
	}
	return newError(errorCanceled, promql.ErrQueryCanceled("query queue"))
}

// storageError classifies an error of the engine or of the storage.
func (h *Handler) storageError(err error) *apiError {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		stErr    promql.ErrStorage
	)
	switch {
	case h.unavailable(err):
		return newError(errorUnavailable, err)
	case errors.As(err, &canceled):
		return newError(errorCanceled, err)
	case errors.As(err, &timeout):
		return newError(errorTimeout, err)
	case errors.As(err, &stErr):
		if h.unavailable(stErr.Err) {
			return newError(errorUnavailable, err)
		}
		return newError(errorInternal, err)
	case errors.Is(err, context.Canceled):
		return newError(errorCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return newError(errorTimeout, err)
	}
	return newError(errorExec, err)
}

// unavailable says whether err means the storage is not serving.
func (h *Handler) unavailable(err error) bool {
	if errors.Is(err, promtsdb.ErrNotReady) {
		return true
	}
	for _, u := range h.cfg.Unavailable {
		if u != nil && errors.Is(err, u) {
			return true
		}
	}
	return false
}
