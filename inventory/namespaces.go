package inventory

import (
	"time"

	corev1listers "k8s.io/client-go/listers/core/v1"
)

// Namespaces tells the current incarnation of a namespace from the namespace informer's
// cache: its UID and creation time. The catalog and the TSDB key pods on the namespace's
// name, so a namespace deleted and re-created under the same name shares its history
// with the earlier one; the read APIs show a namespace-scoped reader only what follows
// the current incarnation's creation. It is the read APIs' httpapi.Namespaces.
type Namespaces struct {
	Lister corev1listers.NamespaceLister
}

// Incarnation returns the UID and creation time of the namespace called name; ok is
// false when the cache holds no such namespace (deleted, or the cache not synced yet).
func (n Namespaces) Incarnation(name string) (uid string, created time.Time, ok bool) {
	ns, err := n.Lister.Get(name)
	if err != nil {
		return "", time.Time{}, false
	}
	return string(ns.UID), ns.CreationTimestamp.Time, true
}
