package apiserver

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// podMetrics is the rest.Storage of pods.metrics.k8s.io: PodMetrics for every pod the lister
// knows that the source has a complete window for.
type podMetrics struct {
	source  MetricsSource
	pods    corev1listers.PodLister
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
// applied to what it returns. Only Running pods are listed. Items are sorted by namespace,
// then name.
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
	var (
		objs []*corev1.Pod
		err  error
	)
	if namespace == metav1.NamespaceAll {
		objs, err = m.pods.List(sel)
	} else {
		objs, err = m.pods.Pods(namespace).List(sel)
	}
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("list pods in namespace %q: %w", namespace, err))
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, p := range objs {
		if !served(p) {
			continue
		}
		if fsel != nil && !fsel.Matches(fields.Set{"metadata.name": p.Name, "metadata.namespace": p.Namespace}) {
			continue
		}
		pods = append(pods, p)
	}
	return &metrics.PodMetricsList{Items: m.metricsFor(pods)}, nil
}

// served reports whether pod's metrics may be served: metrics-server watches Running pods
// only, so a Pending, Succeeded or Failed pod is not found even while its last window is
// fresh.
func served(pod *corev1.Pod) bool { return pod.Status.Phase == corev1.PodRunning }

// Get implements rest.Getter. A pod the lister does not know, or one that is not Running,
// gets the pods NotFound; a Running pod without a complete window gets
// `podmetrics.metrics.k8s.io "<ns>/<name>" not found`.
func (m *podMetrics) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	namespace := genericapirequest.NamespaceValue(ctx)
	p, err := m.pods.Pods(namespace).Get(name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, apierrors.NewNotFound(corev1.Resource("pods"), name)
		}
		return nil, apierrors.NewInternalError(fmt.Errorf("get pod %s/%s: %w", namespace, name, err))
	}
	if !served(p) {
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), name)
	}
	items := m.metricsFor([]*corev1.Pod{p})
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
func (m *podMetrics) metricsFor(pods []*corev1.Pod) []metrics.PodMetrics {
	if len(pods) == 0 {
		return []metrics.PodMetrics{}
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	refs := make([]tsdb.PodRef, len(pods))
	for i, p := range pods {
		refs[i] = tsdb.PodRef{Namespace: p.Namespace, Name: p.Name}
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

func podMetricsObject(p *corev1.Pod, u tsdb.PodUsage, now time.Time) metrics.PodMetrics {
	containers := make([]metrics.ContainerMetrics, len(u.Containers))
	for i, c := range u.Containers {
		containers[i] = metrics.ContainerMetrics{Name: c.Name, Usage: resourceList(c.Usage)}
	}
	return metrics.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			Labels:            p.Labels,
			CreationTimestamp: metav1.NewTime(now),
		},
		Timestamp:  metav1.NewTime(u.Timestamp),
		Window:     metav1.Duration{Duration: u.Window},
		Containers: containers,
	}
}
