package tsdb

import "time"

// Sample is one reading of a node, pod or container as the kubelet exposes it: raw, never
// derived. CPU is the cumulative counter, so history stays rate()-able and reset-aware.
type Sample struct {
	// Time is the sample's own timestamp (the kubelet's, in milliseconds), or the scrape
	// time when the kubelet sent none (kwok sends none).
	Time time.Time
	// CPUSeconds is the cumulative CPU time in core-seconds (…_cpu_usage_seconds_total).
	CPUSeconds float64
	// MemoryBytes is the working set in bytes (…_memory_working_set_bytes).
	MemoryBytes float64
	// SwapBytes is the swap usage in bytes; meaningful only when HasSwap is true.
	SwapBytes float64
	HasSwap   bool
}

// ContainerSample is one container's reading on one node.
type ContainerSample struct {
	Namespace string
	Pod       string
	Container string
	// UID is the pod's UID from the pod informer; empty when the pod is not (yet) known.
	UID string
	// StartTime is container_start_time_seconds; zero when the kubelet did not report it.
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
