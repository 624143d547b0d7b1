package tsdb

import (
	"fmt"
	"math/bits"

	"github.com/prometheus/prometheus/model/labels"
)

// The series schema: every stored series is a row of Schema, every resource a row of
// resourceDefs. The decoder (package scraper) reads the kubelet's series by Schema's
// names, the appender writes them by it, Range reads them by it and the history API
// takes its resource names, units and catalog keys from resourceDefs. Adding a series
// is one row here plus its source: a kubelet series is then decoded, stored and served
// with no other change; a new resource also gets a Resource constant and a resourceDefs
// row.

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

// Schema lists every stored series. Its label set follows from its Object (node: node;
// pod: namespace, node, pod, uid; container: those and container), its kind and unit
// from its Resource.
var Schema = []SeriesDef{
	{MetricNodeCPU, ObjectNode, ResourceCPU},
	{MetricNodeMemory, ObjectNode, ResourceMemory},
	{MetricNodeSwap, ObjectNode, ResourceSwap},
	{MetricPodCPU, ObjectPod, ResourceCPU},
	{MetricPodMemory, ObjectPod, ResourceMemory},
	{MetricPodSwap, ObjectPod, ResourceSwap},
	{MetricContainerCPU, ObjectContainer, ResourceCPU},
	{MetricContainerMemory, ObjectContainer, ResourceMemory},
	{MetricContainerSwap, ObjectContainer, ResourceSwap},
	{MetricContainerStartTime, ObjectContainer, ResourceStartTime},
}

// SeriesDef is one stored series: a metric name, the kind of object it belongs to and
// the resource it measures.
type SeriesDef struct {
	Name     string
	Object   Object
	Resource Resource
}

// Resource is what a series measures. It indexes Sample.Values.
type Resource uint8

// Resources with stored series, in the order the appender writes them.
const (
	ResourceCPU       Resource = iota // cumulative core-seconds; its rate is in cores
	ResourceMemory                    // bytes of working set
	ResourceSwap                      // bytes
	ResourceStartTime                 // a container's start, in Unix seconds (ContainerSample.StartTime)
	NumResources                      // the number of Resources
)

// resourceDefs describes each Resource.
var resourceDefs = [NumResources]resourceDef{
	ResourceCPU:       {name: "cpu", kind: KindCounter, unit: "cores", history: true, catalogKey: "cpu", catalogPerUnit: 1000}, // millicores
	ResourceMemory:    {name: "memory", kind: KindGauge, unit: "bytes", history: true, catalogKey: "memory", catalogPerUnit: 1},
	ResourceSwap:      {name: "swap", kind: KindGauge, unit: "bytes", history: true},
	ResourceStartTime: {name: "start_time", kind: KindGauge, unit: "seconds"},
}

type resourceDef struct {
	name string // in the history API and in logs
	kind Kind
	// unit is that of a range query's values: a gauge's own, a counter's rate's.
	unit string
	// history: Range and the history API serve the resource.
	history bool
	// catalogKey is the resource's name in the catalog's requests, limits, capacity and
	// allocatable ("" for none); catalogPerUnit how many of the catalog's units make one
	// unit (1000 millicores make a core).
	catalogKey     string
	catalogPerUnit float64
}

// Kind is how a series' values behave.
type Kind uint8

const (
	// KindGauge values are read as they are.
	KindGauge Kind = iota
	// KindCounter values only grow, but for resets: a range query reads their rate.
	KindCounter
)

// String returns the resource's name in the history API ("cpu").
func (r Resource) String() string {
	if r < NumResources {
		return resourceDefs[r].name
	}
	return fmt.Sprintf("Resource(%d)", uint8(r))
}

// Kind returns the kind of the resource's series.
func (r Resource) Kind() Kind { return resourceDefs[r].kind }

// Unit returns the unit of the resource's range values: "cores" or "bytes".
func (r Resource) Unit() string { return resourceDefs[r].unit }

// History reports whether Range and the history API serve the resource.
func (r Resource) History() bool { return r < NumResources && resourceDefs[r].history }

// CatalogKey returns the resource's name in the catalog's requests, limits, capacity and
// allocatable, and how many of the catalog's units make one Unit; false when the catalog
// records none.
func (r Resource) CatalogKey() (string, float64, bool) {
	if r >= NumResources || resourceDefs[r].catalogKey == "" {
		return "", 0, false
	}
	return resourceDefs[r].catalogKey, resourceDefs[r].catalogPerUnit, true
}

// ParseResource returns the resource named s, false when there is none.
func ParseResource(s string) (Resource, bool) {
	for r := range NumResources {
		if resourceDefs[r].name == s {
			return r, true
		}
	}
	return 0, false
}

// HistoryResources lists the resources Range serves, in Resource order.
var HistoryResources = func() []Resource {
	var out []Resource
	for r := range NumResources {
		if r.History() {
			out = append(out, r)
		}
	}
	return out
}()

// ResourceSet is a set of Resources.
type ResourceSet uint32

// Has reports whether r is in s.
func (s ResourceSet) Has(r Resource) bool { return s&(1<<r) != 0 }

// With returns s with r added.
func (s ResourceSet) With(r Resource) ResourceSet { return s | 1<<r }

// Len returns the number of resources in s.
func (s ResourceSet) Len() int { return bits.OnesCount32(uint32(s)) }

// Object is the kind of object a series belongs to.
type Object uint8

// Objects with stored series.
const (
	ObjectNode Object = iota + 1
	ObjectPod
	ObjectContainer
	numObjects = iota + 1 // the size of arrays indexed by Object
)

// String names the object kind.
func (o Object) String() string {
	switch o {
	case ObjectNode:
		return "node"
	case ObjectPod:
		return "pod"
	case ObjectContainer:
		return "container"
	}
	return fmt.Sprintf("Object(%d)", uint8(o))
}

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

// seriesNames maps an object and a resource to the metric name, "" for no series.
var seriesNames = func() (names [numObjects][NumResources]string) {
	for _, s := range Schema {
		names[s.Object][s.Resource] = s.Name
	}
	return names
}()

// seriesByName maps a metric name to its row of Schema.
var seriesByName = func() map[string]SeriesDef {
	m := make(map[string]SeriesDef, len(Schema))
	for _, s := range Schema {
		m[s.Name] = s
	}
	return m
}()

// SeriesName returns the metric name of the series of resource r of objects o, "" when
// there is none.
func SeriesName(o Object, r Resource) string {
	if o >= numObjects || r >= NumResources {
		return ""
	}
	return seriesNames[o][r]
}

// LookupSeries returns the row of Schema with the metric name name.
func LookupSeries(name string) (SeriesDef, bool) {
	s, ok := seriesByName[name]
	return s, ok
}

// objKey identifies the object (node, pod or container) behind a group of series. Its
// fields are the label values, so it stands for the label set minus the metric name.
type objKey struct {
	kind                            Object
	node, namespace, pod, container string
	uid                             string
}

// labels returns the label set of the object's series of resource r, sorted as
// Prometheus requires (__name__ < container < namespace < node < pod < uid).
func (k objKey) labels(b *labels.ScratchBuilder, r Resource) labels.Labels {
	b.Reset()
	add := func(name, value string) {
		if value != "" {
			b.Add(name, value)
		}
	}
	add(metricNameLabel, seriesNames[k.kind][r])
	add(LabelContainer, k.container)
	add(LabelNamespace, k.namespace)
	add(LabelNode, k.node)
	add(LabelPod, k.pod)
	add(LabelUID, k.uid)
	return b.Labels()
}
