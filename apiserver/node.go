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
	"k8s.io/apiserver/pkg/registry/rest"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// nodeMetrics is the rest.Storage of nodes.metrics.k8s.io: NodeMetrics for every node the
// lister knows (and the node selector admits) that the source has a window for.
type nodeMetrics struct {
	source   MetricsSource
	nodes    corev1listers.NodeLister
	selector labels.Selector // never nil; labels.Everything() when unset
	metrics  *apiMetrics
	now      func() time.Time
}

var (
	_ rest.Storage              = (*nodeMetrics)(nil)
	_ rest.KindProvider         = (*nodeMetrics)(nil)
	_ rest.Scoper               = (*nodeMetrics)(nil)
	_ rest.Getter               = (*nodeMetrics)(nil)
	_ rest.Lister               = (*nodeMetrics)(nil)
	_ rest.TableConvertor       = (*nodeMetrics)(nil)
	_ rest.SingularNameProvider = (*nodeMetrics)(nil)
)

// New implements rest.Storage.
func (m *nodeMetrics) New() runtime.Object { return &metrics.NodeMetrics{} }

// Destroy implements rest.Storage. There is nothing to release.
func (m *nodeMetrics) Destroy() {}

// Kind implements rest.KindProvider.
func (m *nodeMetrics) Kind() string { return "NodeMetrics" }

// NamespaceScoped implements rest.Scoper.
func (m *nodeMetrics) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider. It is empty, as in metrics-server, so
// that discovery documents are identical.
func (m *nodeMetrics) GetSingularName() string { return "" }

// NewList implements rest.Lister.
func (m *nodeMetrics) NewList() runtime.Object { return &metrics.NodeMetricsList{} }

// List implements rest.Lister: the label selector goes to the lister, the field selector
// (metadata.name) is applied to what it returns. Items are sorted by name.
func (m *nodeMetrics) List(_ context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
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
	nodes, err := m.nodes.List(sel)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("list nodes: %w", err))
	}
	kept := nodes[:0:0]
	for _, n := range nodes {
		if !m.selector.Matches(labels.Set(n.Labels)) {
			continue
		}
		if fsel != nil && !fsel.Matches(fields.Set{"metadata.name": n.Name}) {
			continue
		}
		kept = append(kept, n)
	}
	return &metrics.NodeMetricsList{Items: m.metricsFor(kept)}, nil
}

// Get implements rest.Getter. A node the lister does not know gets the lister's NotFound; a
// known node without a window gets `nodemetrics.metrics.k8s.io "<name>" not found`.
func (m *nodeMetrics) Get(_ context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	node, err := m.nodes.Get(name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, apierrors.NewInternalError(fmt.Errorf("get node %s: %w", name, err))
	}
	if node == nil || !m.selector.Matches(labels.Set(node.Labels)) {
		return nil, apierrors.NewNotFound(metrics.Resource("nodemetrics"), name)
	}
	items := m.metricsFor([]*corev1.Node{node})
	if len(items) == 0 {
		return nil, apierrors.NewNotFound(metrics.Resource("nodemetrics"), name)
	}
	return &items[0], nil
}

// ConvertToTable implements rest.TableConvertor.
func (m *nodeMetrics) ConvertToTable(_ context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return metricsTable(object, tableOptions)
}

// metricsFor asks the source for the nodes' windows and builds the API objects, sorted by
// name. It sorts nodes in place. Nodes the source has no window for are left out.
func (m *nodeMetrics) metricsFor(nodes []*corev1.Node) []metrics.NodeMetrics {
	if len(nodes) == 0 {
		return []metrics.NodeMetrics{}
	}
	slices.SortFunc(nodes, func(a, b *corev1.Node) int { return cmp.Compare(a.Name, b.Name) })
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	usage := m.source.NodeUsage(names)
	now := m.now()
	items := make([]metrics.NodeMetrics, 0, len(usage))
	// The source answers in input order, leaving nodes out; walk both lists together. An
	// answer that breaks the order is dropped rather than served unsorted or mislabelled.
	i := 0
	for _, u := range usage {
		for i < len(nodes) && nodes[i].Name != u.Node {
			i++
		}
		if i == len(nodes) {
			break
		}
		n := nodes[i]
		i++
		items = append(items, nodeMetricsObject(n, u, now))
		m.metrics.observeFreshness(now, u.Timestamp)
	}
	return items
}

func nodeMetricsObject(n *corev1.Node, u tsdb.NodeUsage, now time.Time) metrics.NodeMetrics {
	return metrics.NodeMetrics{
		ObjectMeta: metav1.ObjectMeta{
			Name:              n.Name,
			Labels:            n.Labels,
			CreationTimestamp: metav1.NewTime(now),
		},
		Timestamp: metav1.NewTime(u.Timestamp),
		Window:    metav1.Duration{Duration: u.Window},
		Usage:     resourceList(u.Usage),
	}
}
