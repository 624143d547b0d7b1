package inventory

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func TestNamespacesIncarnation(t *testing.T) {
	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if err := idx.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "team-a", UID: "uid-2", CreationTimestamp: metav1.NewTime(created),
	}}); err != nil {
		t.Fatal(err)
	}
	n := Namespaces{Lister: corev1listers.NewNamespaceLister(idx)}
	for _, tc := range []struct {
		name    string
		uid     string
		created time.Time
		ok      bool
	}{
		{"team-a", "uid-2", created, true},
		{"team-b", "", time.Time{}, false},
	} {
		uid, c, ok := n.Incarnation(tc.name)
		if uid != tc.uid || !c.Equal(tc.created) || ok != tc.ok {
			t.Errorf("Incarnation(%q) = %q, %v, %v; want %q, %v, %v", tc.name, uid, c, ok, tc.uid, tc.created, tc.ok)
		}
	}
}
