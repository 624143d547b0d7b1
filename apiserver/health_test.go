package apiserver

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/server/healthz"
)

func TestHealthChecks(t *testing.T) {
	t.Parallel()
	errNoMetrics := errors.New("no metrics to serve")
	yes := func() bool { return true }
	no := func() bool { return false }
	tests := []struct {
		name     string
		check    healthz.HealthChecker
		wantName string
		wantErr  string
	}{
		{name: "storage ready", check: StorageReadyCheck(func() error { return nil }), wantName: "metric-storage-ready"},
		{name: "storage not ready", check: StorageReadyCheck(func() error { return errNoMetrics }), wantName: "metric-storage-ready", wantErr: "no metrics to serve"},
		{name: "informers synced", check: InformerSyncCheck(yes, yes), wantName: "metric-informer-sync"},
		{name: "node informer not synced", check: InformerSyncCheck(no, yes), wantName: "metric-informer-sync", wantErr: "cache for node informer has not synced"},
		{name: "pod informer not synced", check: InformerSyncCheck(yes, no), wantName: "metric-informer-sync", wantErr: "cache for pod informer has not synced"},
		{name: "metadata informer synced", check: MetadataInformerSyncCheck(yes), wantName: "metadata-informer-sync"},
		{name: "metadata informer not synced", check: MetadataInformerSyncCheck(no), wantName: "metadata-informer-sync", wantErr: "metadata informer for pods has not synced"},
		{name: "collection timely", check: CollectionTimelyCheck(func() error { return nil }), wantName: "metric-collection-timely"},
		{name: "collection late", check: CollectionTimelyCheck(func() error { return errors.New("metric collection didn't finish on time") }), wantName: "metric-collection-timely", wantErr: "metric collection didn't finish on time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.check.Name(); got != tc.wantName {
				t.Errorf("Name() = %q; want %q", got, tc.wantName)
			}
			err := tc.check.Check(httptest.NewRequest("GET", "/readyz", nil))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Check() = %v; want nil", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("Check() = %v; want %q", err, tc.wantErr)
			}
		})
	}
}

// TestInformationalCheck checks that a failing informational check is reported when asked
// for alone, with the reason, and does not fail /readyz.
func TestInformationalCheck(t *testing.T) {
	t.Parallel()
	errFull := errors.New("storage not writable since 2026-01-02T03:04:05Z (3 failed writes in a row): no space left on device")
	tests := []struct {
		name     string
		health   error
		path     string
		wantCode int
		wantBody string // substring
	}{
		{name: "healthy, aggregate", path: "/readyz", wantCode: http.StatusOK, wantBody: "ok"},
		{name: "healthy, individual", path: "/readyz/storage-writable", wantCode: http.StatusOK, wantBody: "ok"},
		{name: "failing, aggregate", health: errFull, path: "/readyz", wantCode: http.StatusOK, wantBody: "ok"},
		{name: "failing, aggregate verbose", health: errFull, path: "/readyz?verbose", wantCode: http.StatusOK, wantBody: "[+]storage-writable ok"},
		{name: "failing, individual", health: errFull, path: "/readyz/storage-writable", wantCode: http.StatusInternalServerError, wantBody: errFull.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mux := http.NewServeMux()
			healthz.InstallReadyzHandler(mux, InformationalCheck("storage-writable", func() error { return tc.health }))
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.wantCode || !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("GET %s = %d %q, want %d with %q", tc.path, rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
			}
		})
	}
}
