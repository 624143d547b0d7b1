// Package fleet is a fake kubelet fleet for benchmarks at metrics-server's scale: the
// Kubernetes objects of thousands of nodes and their pods (created in bulk in a real
// kube-apiserver, no kwok), and the kubelets' /metrics/resource bodies, served over TLS by
// one process on 127.0.0.1 (cmd fakekubelets), one port per node.
//
// Everything is a function of the Spec and the time: a body for node i at time t is the same
// in every process that asks, so the fleet process and a benchmark that fills a store with
// hours of the fleet's past agree sample for sample. The usage model:
//
//   - cAdvisor's housekeeping: a node's samples change every 10 s (HousekeepingInterval), at
//     an offset of its own; each container's sample time lags its node's by a few hundred
//     milliseconds (per-sample millisecond timestamps, as the kubelet writes them).
//   - CPU: a counter in core-seconds growing at a container's own rate, ±30 % over a period
//     of its own; the pod's and the node's counters are the sums (plus the node's system
//     overhead) and never reset.
//   - Memory: a working set around a container's own base, ±20 %.
//   - Restarts: every container restarts once per period of its own (1 to 7 days, at a
//     phase of its own), so a fleet of 60,000 containers sees a restart every few seconds:
//     container_start_time_seconds moves on and the container's counter starts again at 0.
//     A container is served again once it is 10 s old (metrics-server's fresh-container
//     rule), so at any moment a few pods of a large fleet are rightly missing
//     (Spec.RecentlyRestarted).
package fleet

import (
	"fmt"
	"hash/fnv"
	"math"
	"time"
)

// HousekeepingInterval is how often a fake node's samples change (cAdvisor's default).
const HousekeepingInterval = 10 * time.Second

// Spec is the shape of a fleet. The zero values of the optional fields take the defaults of
// metrics-server's own scale tests: 2 containers per pod, 10 namespaces, 100 Deployments.
type Spec struct {
	Nodes       int
	PodsPerNode int
	// ContainersPerPod defaults to 2.
	ContainersPerPod int
	// Namespaces defaults to 10; Deployments to 100 (spread over the namespaces).
	Namespaces  int
	Deployments int
	// Epoch is the fleet's beginning: pods started before it, containers' restart phases
	// count from it. Two processes with the same Spec and Epoch serve the same samples.
	Epoch time.Time
}

// WithDefaults fills the optional fields.
func (s Spec) WithDefaults() Spec {
	if s.ContainersPerPod == 0 {
		s.ContainersPerPod = 2
	}
	if s.Namespaces == 0 {
		s.Namespaces = 10
	}
	if s.Deployments == 0 {
		s.Deployments = 100
	}
	return s
}

// Validate reports a Spec that cannot be served.
func (s Spec) Validate() error {
	switch {
	case s.Nodes < 1 || s.Nodes > 20000:
		return fmt.Errorf("fleet: nodes %d out of range [1, 20000]", s.Nodes)
	case s.PodsPerNode < 0 || s.PodsPerNode > 250:
		return fmt.Errorf("fleet: pods per node %d out of range [0, 250]", s.PodsPerNode)
	case s.ContainersPerPod < 1 || s.ContainersPerPod > 20:
		return fmt.Errorf("fleet: containers per pod %d out of range [1, 20]", s.ContainersPerPod)
	case s.Namespaces < 1 || s.Deployments < s.Namespaces:
		return fmt.Errorf("fleet: %d deployments over %d namespaces: need at least one namespace and one deployment per namespace", s.Deployments, s.Namespaces)
	case s.Epoch.IsZero():
		return fmt.Errorf("fleet: no epoch")
	}
	return nil
}

// Pods is the number of pods in the fleet.
func (s Spec) Pods() int { return s.Nodes * s.PodsPerNode }

// NodeName is node i's name.
func NodeName(i int) string { return fmt.Sprintf("fleet-%05d", i) }

// Pod is one pod of the fleet: where it runs, who owns it, and its containers' usage.
type Pod struct {
	Index      int // 0 ≤ Index < Spec.Pods(); node Index / PodsPerNode
	Node       int
	Namespace  string
	Name       string
	Deployment int
	Containers []Container
	// Start is when the pod started, before the fleet's epoch.
	Start time.Time
}

// Container is one container's usage model.
type Container struct {
	Name string
	// CPU is the mean rate in cores; CPUPeriod the period of its ±30 % swing.
	CPU       float64
	CPUPeriod float64 // seconds
	// Memory is the mean working set in bytes; MemPeriod the period of its ±20 % swing.
	Memory    float64
	MemPeriod float64 // seconds
	MemPhase  float64 // radians
	// Lag is how far its sample time trails its node's housekeeping tick.
	Lag time.Duration
	// RestartPeriod and RestartPhase place its restarts: at Epoch + RestartPhase + k × RestartPeriod.
	RestartPeriod time.Duration
	RestartPhase  time.Duration
}

// DeploymentName, NamespaceOf and ReplicaSetName name deployment d's objects.
func DeploymentName(d int) string { return fmt.Sprintf("dep-%03d", d) }

// ReplicaSetName is the one ReplicaSet of deployment d.
func ReplicaSetName(d int) string { return DeploymentName(d) + "-" + PodTemplateHash }

// PodTemplateHash is the pod-template-hash of every ReplicaSet.
const PodTemplateHash = "5d8f7c9b6"

// NamespaceName is namespace k's name.
func NamespaceName(k int) string { return fmt.Sprintf("fleet-ns-%02d", k) }

// NamespaceOf is the namespace of deployment d.
func (s Spec) NamespaceOf(d int) string { return NamespaceName(d % s.Namespaces) }

var containerNames = []string{"app", "proxy"}

// Pod returns pod g of the fleet. s must have its defaults.
func (s Spec) Pod(g int) Pod {
	d := g % s.Deployments
	p := Pod{
		Index: g, Node: g / max(s.PodsPerNode, 1), Deployment: d,
		Namespace: s.NamespaceOf(d),
		Name:      ReplicaSetName(d) + "-" + suffix(g),
		Start:     s.Epoch.Add(-time.Duration(1+unit(g, 0, 1)*47) * time.Hour),
	}
	p.Containers = make([]Container, s.ContainersPerPod)
	for c := range p.Containers {
		name := fmt.Sprintf("c%d", c)
		if c < len(containerNames) {
			name = containerNames[c]
		}
		period := time.Duration(24+144*unit(g, c, 2)) * time.Hour
		p.Containers[c] = Container{
			Name: name,
			// 5 to 500 mCPU, log-uniform; 20 to 500 MiB.
			CPU:           0.005 * math.Pow(100, unit(g, c, 3)),
			CPUPeriod:     600 + 3000*unit(g, c, 4),
			Memory:        (20 + 480*unit(g, c, 5)) * (1 << 20),
			MemPeriod:     900 + 5000*unit(g, c, 6),
			MemPhase:      2 * math.Pi * unit(g, c, 7),
			Lag:           time.Duration(unit(g, c, 8) * float64(900*time.Millisecond)).Truncate(time.Millisecond),
			RestartPeriod: period,
			RestartPhase:  time.Duration(unit(g, c, 9) * float64(period)),
		}
	}
	return p
}

// suffix is the 5-character random-looking part of a pod's name, unique for g < 36^5.
func suffix(g int) string {
	const digits = "bcdfghjklmnpqrstvwxz2456789" // 27 symbols, as Kubernetes' rand.String
	var b [5]byte
	x := uint64(g%14348907) * 2654435761 % 14348907 // a bijection on [0, 27^5)
	for i := range b {
		b[i] = digits[x%27]
		x /= 27
	}
	return string(b[:])
}

// unit is a deterministic number in [0, 1) for pod g, container c and purpose k.
func unit(g, c, k int) float64 {
	h := fnv.New64a()
	var b [24]byte
	for i, v := range []int{g, c, k} {
		for j := range 8 {
			b[i*8+j] = byte(uint64(v) >> (8 * j))
		}
	}
	_, _ = h.Write(b[:])
	return float64(h.Sum64()>>11) / (1 << 53)
}

// nodeOffset is node i's housekeeping offset within HousekeepingInterval.
func nodeOffset(i int) time.Duration {
	return time.Duration(unit(i, -1, 10) * float64(HousekeepingInterval)).Truncate(time.Millisecond)
}

// Tick is node i's latest housekeeping time at or before t.
func Tick(i int, t time.Time) time.Time {
	off := nodeOffset(i)
	return t.Add(-off).Truncate(HousekeepingInterval).Add(off)
}

// startAt is the container's start time as seen at t: its latest restart at or before t, or
// the pod's start before the first one.
func (c Container) startAt(p Pod, epoch, t time.Time) time.Time {
	first := epoch.Add(c.RestartPhase)
	if t.Before(first) {
		return p.Start
	}
	k := t.Sub(first) / c.RestartPeriod
	return first.Add(k * c.RestartPeriod)
}

// cpuIntegral is ∫ rate × (1 + 0.3 sin(2πt/P)) dt from 0 to t (t in seconds since the epoch),
// which grows at least at 0.7 × rate.
func (c Container) cpuIntegral(t float64) float64 {
	w := 2 * math.Pi / c.CPUPeriod
	return c.CPU * (t + 0.3*(1-math.Cos(w*t))/w)
}

// Reading is one container's sample as its kubelet reports it at some time.
type Reading struct {
	Time    time.Time // the sample's timestamp (milliseconds)
	Start   time.Time // container_start_time_seconds
	CPU     float64   // core-seconds since Start
	PodCPU  float64   // the container's core-seconds since the pod started (the pod's counter's share)
	Memory  float64   // bytes
	Restart bool      // Start is a restart, not the pod's start
}

// Read is container c of pod p at node tick tick.
func (s Spec) Read(p Pod, c Container, tick time.Time) Reading {
	ts := tick.Add(-c.Lag)
	start := c.startAt(p, s.Epoch, ts)
	sec := func(t time.Time) float64 { return t.Sub(s.Epoch).Seconds() }
	now := c.cpuIntegral(sec(ts))
	mem := c.Memory * (1 + 0.2*math.Sin(2*math.Pi*sec(ts)/c.MemPeriod+c.MemPhase))
	return Reading{
		Time: ts, Start: start,
		CPU:     now - c.cpuIntegral(sec(start)),
		PodCPU:  now - c.cpuIntegral(sec(p.Start)),
		Memory:  math.Round(mem/4096) * 4096,
		Restart: !start.Equal(p.Start),
	}
}

// RecentlyRestarted reports whether a container of pod p restarted within d before t: such a
// pod may rightly be missing from a metrics API at t (its container is younger than 10 s or
// has no previous point yet).
func (s Spec) RecentlyRestarted(p Pod, t time.Time, d time.Duration) bool {
	for _, c := range p.Containers {
		if st := c.startAt(p, s.Epoch, t); !st.Equal(p.Start) && t.Sub(st) < d {
			return true
		}
	}
	return false
}
