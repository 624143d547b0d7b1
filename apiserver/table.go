package apiserver

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/metrics/pkg/apis/metrics"
)

// tableColumns are metrics-server's columns: the resource names as they appear in usage,
// sorted, between Name and Window. Unlike metrics-server, they are set for an empty list too.
var tableColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name of the resource"},
	{Name: string(corev1.ResourceCPU), Type: "string", Format: "quantity"},
	{Name: string(corev1.ResourceMemory), Type: "string", Format: "quantity"},
	{Name: "Window", Type: "string", Format: "duration"},
}

// metricsTable converts NodeMetrics, PodMetrics or their lists (internal versions) into the
// table `kubectl get nodemetrics` and `kubectl get podmetrics` print. A pod's CPU and memory
// are the sums over its containers.
func metricsTable(object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	if opts, ok := tableOptions.(*metav1.TableOptions); !ok || !opts.NoHeaders {
		table.ColumnDefinitions = tableColumns
	}
	switch o := object.(type) {
	case *metrics.NodeMetrics:
		table.ResourceVersion = o.ResourceVersion
		table.Rows = []metav1.TableRow{nodeRow(o)}
	case *metrics.NodeMetricsList:
		table.ResourceVersion = o.ResourceVersion
		table.Continue = o.Continue
		table.Rows = make([]metav1.TableRow, len(o.Items))
		for i := range o.Items {
			table.Rows[i] = nodeRow(&o.Items[i])
		}
	case *metrics.PodMetrics:
		table.ResourceVersion = o.ResourceVersion
		table.Rows = []metav1.TableRow{podRow(o)}
	case *metrics.PodMetricsList:
		table.ResourceVersion = o.ResourceVersion
		table.Continue = o.Continue
		table.Rows = make([]metav1.TableRow, len(o.Items))
		for i := range o.Items {
			table.Rows[i] = podRow(&o.Items[i])
		}
	default:
		return nil, fmt.Errorf("convert %T to table: unsupported type", object)
	}
	return table, nil
}

func nodeRow(n *metrics.NodeMetrics) metav1.TableRow {
	cpu, mem := n.Usage[corev1.ResourceCPU], n.Usage[corev1.ResourceMemory]
	return metav1.TableRow{
		Cells:  []any{n.Name, cpu.String(), mem.String(), n.Window.Duration.String()},
		Object: runtime.RawExtension{Object: n},
	}
}

func podRow(p *metrics.PodMetrics) metav1.TableRow {
	var cpu, mem resource.Quantity
	for _, c := range p.Containers {
		cpu.Add(c.Usage[corev1.ResourceCPU])
		mem.Add(c.Usage[corev1.ResourceMemory])
	}
	return metav1.TableRow{
		Cells:  []any{p.Name, cpu.String(), mem.String(), p.Window.Duration.String()},
		Object: runtime.RawExtension{Object: p},
	}
}
