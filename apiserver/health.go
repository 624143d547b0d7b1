package apiserver

import (
	"errors"
	"net/http"
	"path"

	"k8s.io/apiserver/pkg/server/healthz"
)

// The check names are metrics-server's, so probes, dashboards and runbooks written for it work
// unchanged. Where cmd adds them (metrics-server's placement):
//
//	Config.ReadyzChecks: StorageReadyCheck, InformerSyncCheck
//	Config.LivezChecks:  CollectionTimelyCheck
//	Config.HealthChecks: MetadataInformerSyncCheck (/healthz, /livez and /readyz)
const (
	checkStorageReady         = "metric-storage-ready"
	checkInformerSync         = "metric-informer-sync"
	checkMetadataInformerSync = "metadata-informer-sync"
	checkCollectionTimely     = "metric-collection-timely"
)

// StorageReadyCheck returns the "metric-storage-ready" check: it fails with ready's error, for
// example "no metrics to serve" until the store can answer.
func StorageReadyCheck(ready func() error) healthz.HealthChecker {
	return healthz.NamedCheck(checkStorageReady, func(*http.Request) error { return ready() })
}

// InformerSyncCheck returns the "metric-informer-sync" check: it fails until both the node and
// the pod informer caches have synced (pass their HasSynced).
func InformerSyncCheck(nodesSynced, podsSynced func() bool) healthz.HealthChecker {
	return healthz.NamedCheck(checkInformerSync, func(*http.Request) error {
		if !nodesSynced() {
			return errors.New("cache for node informer has not synced")
		}
		if !podsSynced() {
			return errors.New("cache for pod informer has not synced")
		}
		return nil
	})
}

// MetadataInformerSyncCheck returns the "metadata-informer-sync" check: it fails until the
// pod informer has synced (pass its HasSynced). metrics-server's name is kept for probes
// and runbooks written for it, although Hindsight's one pod informer is not metadata-only.
func MetadataInformerSyncCheck(synced func() bool) healthz.HealthChecker {
	return healthz.NamedCheck(checkMetadataInformerSync, func(*http.Request) error {
		if !synced() {
			return errors.New("metadata informer for pods has not synced")
		}
		return nil
	})
}

// CollectionTimelyCheck returns the "metric-collection-timely" check for /livez: it fails with
// timely's error, for example when the last scrape tick started more than 1.5 × resolution ago.
func CollectionTimelyCheck(timely func() error) healthz.HealthChecker {
	return healthz.NamedCheck(checkCollectionTimely, func(*http.Request) error { return timely() })
}

// InformationalCheck returns a /readyz check that reports check's error when it is asked
// for alone (GET /readyz/<name> fails with 500 and the error) but always passes within the
// /readyz aggregate, which the kubelet's readiness probe reads.
//
// It is for a degraded state that loses history only, such as a full volume or a catalog
// that cannot be written: the current window is computed from memory and still right.
// Failing readiness would take the only replica out of the Service's endpoints, so the
// aggregator would answer 503 for metrics.k8s.io and the HPA would stop scaling, for a
// problem that an operator must fix; failing liveness would restart the container in a
// loop, which frees no space. Such a state shows as this check, a self-metric and one
// warning in the log. Reading the check alone takes a token allowed to get /readyz/* (the
// built-in system:monitoring role), like the kube-apiserver's own individual checks.
func InformationalCheck(name string, check func() error) healthz.HealthChecker {
	return healthz.NamedCheck(name, func(r *http.Request) error {
		if path.Base(r.URL.Path) != name {
			return nil // evaluated as part of /readyz
		}
		return check()
	})
}
