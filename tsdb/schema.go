package tsdb

import "github.com/prometheus/prometheus/model/labels"

// Metric names of the stored series: those of the kubelet's /metrics/resource, so that
// PromQL written for a Prometheus that scrapes kubelets works on Hindsight's history.
const (
	MetricNodeCPU            = "node_cpu_usage_seconds_total"
	MetricNodeMemory         = "node_memory_working_set_bytes"
	MetricNodeSwap           = "node_swap_usage_bytes"
	MetricPodCPU             = "pod_cpu_usage_seconds_total"
	MetricPodMemory          = "pod_memory_working_set_bytes"
	MetricPodSwap            = "pod_swap_usage_bytes"
	MetricContainerCPU       = "container_cpu_usage_seconds_total"
	MetricContainerMemory    = "container_memory_working_set_bytes"
	MetricContainerStartTime = "container_start_time_seconds"
	MetricContainerSwap      = "container_swap_usage_bytes"
)

// Label names of the stored series. A label whose value is empty (a pod whose UID is not
// known yet) is left out, as Prometheus treats an empty label as an absent one.
const (
	LabelNode      = "node"
	LabelNamespace = "namespace"
	LabelPod       = "pod"
	LabelContainer = "container"
	LabelUID       = "uid"
)

// metricNameLabel is the label that holds a series' metric name.
const metricNameLabel = "__name__"

// objKind says which kind of object a series belongs to.
type objKind uint8

const (
	kindNode objKind = iota
	kindPod
	kindContainer
)

// Per-object metric slots, in the order of objSeries.series.
const (
	slotCPU = iota
	slotMemory
	slotSwap
	slotStartTime // containers only
	numSlots
)

// metricNames maps a kind and a slot to the metric name.
var metricNames = [...][numSlots]string{
	kindNode:      {MetricNodeCPU, MetricNodeMemory, MetricNodeSwap, ""},
	kindPod:       {MetricPodCPU, MetricPodMemory, MetricPodSwap, ""},
	kindContainer: {MetricContainerCPU, MetricContainerMemory, MetricContainerSwap, MetricContainerStartTime},
}

// objKey identifies the object (node, pod or container) behind a group of series. Its
// fields are the label values, so it stands for the label set minus the metric name.
type objKey struct {
	kind                            objKind
	node, namespace, pod, container string
	uid                             string
}

// labels returns the label set of one of the object's series, sorted as Prometheus
// requires (__name__ < container < namespace < node < pod < uid).
func (k objKey) labels(b *labels.ScratchBuilder, slot int) labels.Labels {
	b.Reset()
	add := func(name, value string) {
		if value != "" {
			b.Add(name, value)
		}
	}
	add(metricNameLabel, metricNames[k.kind][slot])
	add(LabelContainer, k.container)
	add(LabelNamespace, k.namespace)
	add(LabelNode, k.node)
	add(LabelPod, k.pod)
	add(LabelUID, k.uid)
	return b.Labels()
}
