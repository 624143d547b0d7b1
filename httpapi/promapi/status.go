package promapi

import (
	"net/http"
	"runtime"
)

// serveBuildInfo serves status/buildinfo.
func (h *Handler) serveBuildInfo(*http.Request) result {
	return result{data: buildInfo{version: h.cfg.Version, revision: h.cfg.Revision, goVersion: runtime.Version()}}
}
