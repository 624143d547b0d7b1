package tsdb

import "time"

// Sample is one reading of a node, pod or container as the kubelet exposes it: raw, never
// derived. CPU is the cumulative counter, so history stays rate()-able and reset-aware.
type Sample struct {
	// Time is the sample's own timestamp (the kubelet's, in milliseconds), or the scrape
	// time when the kubelet sent none (kwok sends none).
	Time time.Time
	// Values holds the reading of each resource in Present, in its series' unit:
	// Values[ResourceCPU] is the cumulative CPU time in core-seconds
	// (…_cpu_usage_seconds_total), Values[ResourceMemory] the working set in bytes. A
	// value whose resource is not in Present is 0 and is not stored.
	Values  [NumResources]float64
	Present ResourceSet
}

// Set sets the value of resource r and adds r to Present.
func (s *Sample) Set(r Resource, v float64) {
	s.Values[r] = v
	s.Present = s.Present.With(r)
}

// Get returns the value of resource r, false when the sample has none.
func (s *Sample) Get(r Resource) (float64, bool) { return s.Values[r], s.Present.Has(r) }

// ContainerSample is one container's reading on one node.
type ContainerSample struct {
	Namespace string
	Pod       string
	Container string
	// UID is the pod's UID from the pod informer; empty when the pod is not (yet) known.
	UID string
	// StartTime is container_start_time_seconds (ResourceStartTime); zero when the
	// kubelet did not report it. It is kept to the nanosecond, as metrics-server's rules
	// compare it with timestamps, so it is not one of Sample.Values.
	StartTime time.Time
	Sample
}

// PodSample is one pod's own reading (pod_cpu_usage_seconds_total and friends). It is stored
// for history only: the current window is computed from containers, as metrics-server does.
type PodSample struct {
	Namespace string
	Pod       string
	UID       string
	Sample
}

// NodeScrape is everything one successful scrape of one node produced.
type NodeScrape struct {
	Node string
	// ScrapeTime is when the request was sent.
	ScrapeTime time.Time
	// NodeSample is the node's own reading; HasNode is false when the body carried none.
	NodeSample Sample
	HasNode    bool
	Pods       []PodSample
	Containers []ContainerSample
}

// Batch is one scrape round: one NodeScrape per node that answered. A node that failed is
// absent from the batch; its previous points stay (see DB.Write).
type Batch struct {
	Nodes []NodeScrape
}

// PodRef names a pod.
type PodRef struct {
	Namespace string
	Name      string
}

// Usage is the current window of one node or container, computed with metrics-server's rules.
type Usage struct {
	// Timestamp is the time of the newest point; Window is the real time between the two
	// points the CPU rate was computed from.
	Timestamp time.Time
	Window    time.Duration
	// CPUNanoCores is the CPU rate in nanocores (metrics-server's uint64 truncation).
	CPUNanoCores uint64
	// MemoryBytes is the newest working set in bytes.
	MemoryBytes uint64
}

// NodeUsage is one node's current window.
type NodeUsage struct {
	Node string
	Usage
}

// ContainerUsage is one container's current window.
type ContainerUsage struct {
	Name string
	Usage
}

// PodUsage is one pod's current window: served only when every container of the pod has
// one. Timestamp and Window are those of the pod's earliest container.
type PodUsage struct {
	PodRef
	Timestamp  time.Time
	Window     time.Duration
	Containers []ContainerUsage
}
