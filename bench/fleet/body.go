package fleet

import (
	"strconv"
	"time"
)

// The families of a kubelet's /metrics/resource (Kubernetes 1.37, no swap), in the order and
// with the HELP text the kubelet writes.
const (
	helpContainerCPU   = "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds\n# TYPE container_cpu_usage_seconds_total counter\n"
	helpContainerMem   = "# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes\n# TYPE container_memory_working_set_bytes gauge\n"
	helpContainerStart = "# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds\n# TYPE container_start_time_seconds gauge\n"
	helpNodeCPU        = "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds\n# TYPE node_cpu_usage_seconds_total counter\n"
	helpNodeMem        = "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes\n# TYPE node_memory_working_set_bytes gauge\n"
	helpPodCPU         = "# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds\n# TYPE pod_cpu_usage_seconds_total counter\n"
	helpPodMem         = "# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes\n# TYPE pod_memory_working_set_bytes gauge\n"
	helpScrapeError    = "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n"
)

// Node system overhead beyond its pods: CPU in cores, memory in bytes.
const (
	nodeSystemCPU    = 0.25
	nodeSystemMemory = 1 << 30
)

// NodeBody is the fleet's pods of node i, with their container label sets written once.
type NodeBody struct {
	spec Spec
	node int
	pods []Pod
	// labels[p][c] is `{container="…",namespace="…",pod="…"}`; podLabels[p] without container.
	labels    [][]string
	podLabels []string
	boot      time.Time
}

// Node returns node i's body writer. s must have its defaults.
func (s Spec) Node(i int) *NodeBody {
	n := &NodeBody{spec: s, node: i}
	for j := range s.PodsPerNode {
		p := s.Pod(i*s.PodsPerNode + j)
		n.pods = append(n.pods, p)
		pl := `{namespace="` + p.Namespace + `",pod="` + p.Name + `"}`
		n.podLabels = append(n.podLabels, pl)
		cl := make([]string, len(p.Containers))
		for c, ct := range p.Containers {
			cl[c] = `{container="` + ct.Name + `",namespace="` + p.Namespace + `",pod="` + p.Name + `"}`
		}
		n.labels = append(n.labels, cl)
		if n.boot.IsZero() || p.Start.Before(n.boot) {
			n.boot = p.Start
		}
	}
	if n.boot.IsZero() {
		n.boot = s.Epoch
	}
	n.boot = n.boot.Add(-time.Hour)
	return n
}

// Pods are the node's pods.
func (n *NodeBody) Pods() []Pod { return n.pods }

// Append appends the node's body at time t (its latest housekeeping tick at or before t) to
// b, in the kubelet's text format, and returns it.
func (n *NodeBody) Append(b []byte, t time.Time) []byte {
	tick := Tick(n.node, t)
	r := make([][]Reading, len(n.pods))
	for p, pod := range n.pods {
		r[p] = make([]Reading, len(pod.Containers))
		for c, ct := range pod.Containers {
			r[p][c] = n.spec.Read(pod, ct, tick)
		}
	}
	sample := func(b []byte, name, labels string, v float64, ts time.Time) []byte {
		b = append(b, name...)
		b = append(b, labels...)
		b = append(b, ' ')
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
		b = append(b, ' ')
		b = strconv.AppendInt(b, ts.UnixMilli(), 10)
		return append(b, '\n')
	}
	b = append(b, helpContainerCPU...)
	for p := range n.pods {
		for c := range n.pods[p].Containers {
			b = sample(b, "container_cpu_usage_seconds_total", n.labels[p][c], r[p][c].CPU, r[p][c].Time)
		}
	}
	b = append(b, helpContainerMem...)
	for p := range n.pods {
		for c := range n.pods[p].Containers {
			b = sample(b, "container_memory_working_set_bytes", n.labels[p][c], r[p][c].Memory, r[p][c].Time)
		}
	}
	b = append(b, helpContainerStart...)
	for p := range n.pods {
		for c := range n.pods[p].Containers {
			b = sample(b, "container_start_time_seconds", n.labels[p][c], float64(r[p][c].Start.UnixNano())/1e9, r[p][c].Time)
		}
	}
	nodeCPU := nodeSystemCPU * tick.Sub(n.boot).Seconds()
	nodeMem := float64(nodeSystemMemory)
	podCPU := make([]float64, len(n.pods))
	podMem := make([]float64, len(n.pods))
	for p := range n.pods {
		for c := range n.pods[p].Containers {
			podCPU[p] += r[p][c].PodCPU
			podMem[p] += r[p][c].Memory
		}
		nodeCPU += podCPU[p]
		nodeMem += podMem[p]
	}
	b = append(b, helpNodeCPU...)
	b = sample(b, "node_cpu_usage_seconds_total", "", nodeCPU, tick)
	b = append(b, helpNodeMem...)
	b = sample(b, "node_memory_working_set_bytes", "", nodeMem, tick)
	b = append(b, helpPodCPU...)
	for p := range n.pods {
		b = sample(b, "pod_cpu_usage_seconds_total", n.podLabels[p], podCPU[p], tick)
	}
	b = append(b, helpPodMem...)
	for p := range n.pods {
		b = sample(b, "pod_memory_working_set_bytes", n.podLabels[p], podMem[p], tick)
	}
	return append(b, helpScrapeError...)
}
