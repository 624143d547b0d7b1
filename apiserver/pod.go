package apiserver

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// podMetrics is the rest.Storage of pods.metrics.k8s.io: PodMetrics for every pod the lister
// knows that the source has a complete window for.
type podMetrics struct {
	source  MetricsSource
	pods    cache.GenericLister
	metrics *apiMetrics
	now     func() time.Time
}

var (
	_ rest.Storage              = (*podMetrics)(nil)
	_ rest.KindProvider         = (*podMetrics)(nil)
	_ rest.Scoper               = (*podMetrics)(nil)
	_ rest.Getter               = (*podMetrics)(nil)
	_ rest.Lister               = (*podMetrics)(nil)
	_ rest.TableConvertor       = (*podMetrics)(nil)
	_ rest.SingularNameProvider = (*podMetrics)(nil)
)

// New implements rest.Storage.
func (m *podMetrics) New() runtime.Object { return &metrics.PodMetrics{} }

// Destroy implements rest.Storage. There is nothing to release.
func (m *podMetrics) Destroy() {}

// Kind implements rest.KindProvider.
func (m *podMetrics) Kind() string { return "PodMetrics" }

// NamespaceScoped implements rest.Scoper.
func (m *podMetrics) NamespaceScoped() bool { return true }

// GetSingularName implements rest.SingularNameProvider. It is empty, as in metrics-server.
func (m *podMetrics) GetSingularName() string { return "" }

// NewList implements rest.Lister.
func (m *podMetrics) NewList() runtime.Object { return &metrics.PodMetricsList{} }

// List implements rest.Lister for one namespace, or all when the request has none. The label
// selector goes to the lister; the field selector (metadata.name, metadata.namespace) is
// applied to what it returns. Items are sorted by namespace, then name.
func (m *podMetrics) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	namespace := genericapirequest.NamespaceValue(ctx)
	sel := labels.Everything()
	var fsel fields.Selector
	if options != nil {
		if options.LabelSelector != nil {
			sel = options.LabelSelector
		}
		if options.FieldSelector != nil && !options.FieldSelector.Empty() {
			fsel = options.FieldSelector
		}
	}
	objs, err := m.pods.ByNamespace(namespace).List(sel)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("list pods in namespace %q: %w", namespace, err))
	}
	pods := make([]metav1.Object, 0, len(objs))
	for _, o := range objs {
		p, err := meta.Accessor(o)
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("list pods in namespace %q: %w", namespace, err))
		}
		if fsel != nil && !fsel.Matches(fields.Set{"metadata.name": p.GetName(), "metadata.namespace": p.GetNamespace()}) {
			continue
		}
		pods = append(pods, p)
	}
	return &metrics.PodMetricsList{Items: m.metricsFor(pods)}, nil
}

// Get implements rest.Getter. A pod the lister does not know gets the lister's NotFound; a
// known pod without a complete window gets `podmetrics.metrics.k8s.io "<ns>/<name>" not found`.
func (m *podMetrics) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	namespace := genericapirequest.NamespaceValue(ctx)
	obj, err := m.pods.ByNamespace(namespace).Get(name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, apierrors.NewInternalError(fmt.Errorf("get pod %s/%s: %w", namespace, name, err))
	}
	if obj == nil {
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), namespace+"/"+name)
	}
	p, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("get pod %s/%s: %w", namespace, name, err))
	}
	items := m.metricsFor([]metav1.Object{p})
	if len(items) == 0 {
		return nil, apierrors.NewNotFound(metrics.Resource("podmetrics"), namespace+"/"+name)
	}
	return &items[0], nil
}

// ConvertToTable implements rest.TableConvertor.
func (m *podMetrics) ConvertToTable(_ context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return metricsTable(object, tableOptions)
}

// metricsFor asks the source for the pods' windows and builds the API objects, sorted by
// namespace and name. It sorts pods in place. Pods without a complete window are left out.
func (m *podMetrics) metricsFor(pods []metav1.Object) []metrics.PodMetrics {
	if len(pods) == 0 {
		return []metrics.PodMetrics{}
	}
	slices.SortFunc(pods, func(a, b metav1.Object) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	refs := make([]tsdb.PodRef, len(pods))
	for i, p := range pods {
		refs[i] = tsdb.PodRef{Namespace: p.GetNamespace(), Name: p.GetName()}
	}
	usage := m.source.PodUsage(refs)
	now := m.now()
	items := make([]metrics.PodMetrics, 0, len(usage))
	// Input order with omissions, as for nodes.
	i := 0
	for _, u := range usage {
		for i < len(refs) && refs[i] != u.PodRef {
			i++
		}
		if i == len(refs) {
			break
		}
		p := pods[i]
		i++
		items = append(items, podMetricsObject(p, u, now))
		m.metrics.observeFreshness(now, u.Timestamp)
	}
	return items
}

func podMetricsObject(p metav1.Object, u tsdb.PodUsage, now time.Time) metrics.PodMetrics {
	containers := make([]metrics.ContainerMetrics, len(u.Containers))
	for i, c := range u.Containers {
		containers[i] = metrics.ContainerMetrics{Name: c.Name, Usage: resourceList(c.Usage)}
	}
	return metrics.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.GetName(),
			Namespace:         p.GetNamespace(),
			Labels:            p.GetLabels(),
			CreationTimestamp: metav1.NewTime(now),
		},
		Timestamp:  metav1.NewTime(u.Timestamp),
		Window:     metav1.Duration{Duration: u.Window},
		Containers: containers,
	}
}
