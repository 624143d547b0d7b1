package apiserver

import (
	"errors"
	"net/http"

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
// metadata-only pod informer has synced (pass its HasSynced).
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
