package promapi

import (
	"net/http"
	"runtime"

	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// serveBuildInfo serves status/buildinfo.
func (h *Handler) serveBuildInfo(*http.Request) result {
	return result{data: &v1.PrometheusVersion{Version: h.cfg.Version, Revision: h.cfg.Revision, GoVersion: runtime.Version()}}
}
