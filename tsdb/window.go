package tsdb

import (
	"cmp"
	"errors"
	"log/slog"
	"math"
	"slices"
	"time"
)

// This file holds the latest-points index: the last two points of every node and
// container, from which the current metrics.k8s.io window is computed. Its rules are
// those of metrics-server v0.9.0 (pkg/storage: node.go, pod.go, types.go; and the drops
// of pkg/scraper/client/resource/decode.go), re-implemented here; every departure is
// marked "Unlike metrics-server".

const (
	// freshContainerMinAge is metrics-server's freshContainerMinMetricsResolution: a
	// container younger than this is too young for a window from its start time.
	freshContainerMinAge = 10 * time.Second
	// forgetAfterIntervals is how many resolutions a node may be absent from every
	// batch before its points (and its pods') are forgotten.
	forgetAfterIntervals = 10
	// noStart is the start time of a point whose start time is unknown. Being the
	// smallest int64 it sorts before every time, as time.Time{} does in metrics-server.
	noStart = math.MinInt64
)

// Reasons for hindsight_storage_rejected_points_total.
const (
	rejectIncomplete     = "incomplete"            // zero timestamp, CPU or memory
	rejectDuplicate      = "duplicate"             // same node, pod or container twice in one batch
	rejectOlderThanPrev  = "older_than_previous"   // point not newer than the stored previous one: previous dropped
	rejectDecreasingCPU  = "decreasing_cpu"        // cumulative CPU went down without a restart
	rejectDecreasingTime = "decreasing_start_time" // start time went back
	rejectInvalid        = "invalid"               // e.g. a NodeScrape without a node name
	rejectClockSkew      = "clock_skew"            // a whole node scrape outside ClockSkewBound (Write, not the index)
)

var rejectReasons = []string{rejectIncomplete, rejectDuplicate, rejectOlderThanPrev, rejectDecreasingCPU, rejectDecreasingTime, rejectInvalid, rejectClockSkew}

var (
	errDecreasingStartTime = errors.New("unexpected decrease in start time of node/container")
	errDecreasingCPU       = errors.New("unexpected decrease in cumulative CPU usage value")
)

// point is one reading kept for the current window, in metrics-server's units.
type point struct {
	ts    int64  // Unix ns of the sample, at millisecond precision as the kubelet sends it
	start int64  // Unix ns of the container's start, or noStart
	cpu   uint64 // cumulative CPU in core-nanoseconds: uint64(seconds*1e9)
	mem   uint64 // working set in bytes: uint64(bytes)
}

// usage is metrics-server's resourceUsage: the window between two points of one node or
// container.
func usage(last, prev point) (Usage, error) {
	if last.start < prev.start {
		return Usage{}, errDecreasingStartTime
	}
	if last.cpu < prev.cpu {
		return Usage{}, errDecreasingCPU
	}
	window := time.Duration(last.ts - prev.ts)
	return Usage{
		Timestamp:    time.Unix(0, last.ts).UTC(),
		Window:       window,
		CPUNanoCores: uint64(float64(last.cpu-prev.cpu) / window.Seconds()),
		MemoryBytes:  last.mem,
	}, nil
}

// sampleTime converts a sample's time to Unix ns at millisecond precision, as
// metrics-server's decoder does (time.Unix(0, ms*1e6)).
func sampleTime(t time.Time) int64 { return t.UnixMilli() * int64(time.Millisecond) }

// nodePoint converts a node's reading, or reports false when metrics-server's decoder
// would drop it (no node sample, or zero timestamp, CPU or memory).
func nodePoint(s *NodeScrape) (point, bool) {
	p := point{start: noStart, cpu: uint64(s.NodeSample.Values[ResourceCPU] * 1e9), mem: uint64(s.NodeSample.Values[ResourceMemory])}
	if !s.HasNode || s.NodeSample.Time.IsZero() || p.cpu == 0 || p.mem == 0 {
		return point{}, false
	}
	p.ts = sampleTime(s.NodeSample.Time)
	return p, true
}

// containerPoint converts a container's reading. empty reports a sample that carries
// nothing at all (metrics-server skips those); ok is false when metrics-server's decoder
// would drop the container's whole pod (zero timestamp, CPU or memory).
func containerPoint(c *ContainerSample) (p point, empty, ok bool) {
	p = point{start: noStart, cpu: uint64(c.Values[ResourceCPU] * 1e9), mem: uint64(c.Values[ResourceMemory])}
	if !c.StartTime.IsZero() {
		p.start = c.StartTime.UnixNano()
	}
	if c.Time.IsZero() && p.cpu == 0 && p.mem == 0 && uint64(c.Values[ResourceSwap]) == 0 && c.StartTime.IsZero() {
		return point{}, true, false
	}
	if c.Time.IsZero() || p.cpu == 0 || p.mem == 0 {
		return point{}, false, false
	}
	p.ts = sampleTime(c.Time)
	return p, false, true
}

// nodeState is what the index keeps of one node.
type nodeState struct {
	last, prev       point
	hasLast, hasPrev bool
	// pods lists the pods this node reported in its last scrape.
	pods []PodRef
	// seen is when the node was last present in a batch; gen is the index generation
	// of that batch.
	seen time.Time
	gen  uint64
}

// podState is what the index keeps of one pod: its containers' points from the last
// scrape of the node that reported it.
type podState struct {
	node string
	// containers is sorted by name.
	containers []containerState
	gen        uint64
}

type containerState struct {
	name       string
	last, prev point
	hasPrev    bool
}

// find returns the state of the named container, or nil.
func (p *podState) find(name string) *containerState {
	for i := range p.containers {
		if p.containers[i].name == name {
			return &p.containers[i]
		}
	}
	return nil
}

// index is the latest-points index. It is not safe for concurrent use; DB guards it.
type index struct {
	log        *slog.Logger
	resolution time.Duration

	nodes map[string]*nodeState
	pods  map[PodRef]*podState
	// gen counts applied batches; a state whose gen equals it was updated by the
	// batch being applied.
	gen uint64

	// Points that can be served, as metrics-server counts them: nodes with a previous
	// point, and containers with a previous point.
	nodePoints, containerPoints int

	// Reused by apply: container indices to sort, and a pod's new container states.
	scratch    []int
	containers []containerState
}

func newIndex(log *slog.Logger, resolution time.Duration) *index {
	return &index{
		log:        log,
		resolution: resolution,
		nodes:      make(map[string]*nodeState),
		pods:       make(map[PodRef]*podState),
	}
}

// rejectFunc counts a rejected point.
type rejectFunc func(reason string)

// apply feeds one scrape round into the index at wall time now.
//
// Unlike metrics-server, which replaces its whole state with every batch, a node that is
// absent from b keeps its points and its pods' points; only a node absent from every
// batch for more than forgetAfterIntervals resolutions is forgotten. A node present in b
// replaces the set of pods it owns: a pod it no longer reports (or reports incompletely)
// is forgotten, as metrics-server would forget it.
func (x *index) apply(b *Batch, now time.Time, reject rejectFunc) {
	x.gen++
	for i := range b.Nodes {
		ns := &b.Nodes[i]
		if ns.Node == "" {
			x.log.Debug("Skipping node scrape without a node name")
			reject(rejectInvalid)
			continue
		}
		st := x.nodes[ns.Node]
		if st == nil {
			st = &nodeState{}
			x.nodes[ns.Node] = st
		} else if st.gen == x.gen {
			x.log.Debug("Skipping duplicate node in batch", "node", ns.Node)
			reject(rejectDuplicate)
			continue
		}
		st.gen, st.seen = x.gen, now
		x.applyNode(st, ns, reject)
		x.applyPods(st, ns, reject)
	}
	x.forget(now)
	x.count()
}

// applyNode applies metrics-server's nodeStorage.Store rule to one node's point.
func (x *index) applyNode(st *nodeState, ns *NodeScrape, reject rejectFunc) {
	p, ok := nodePoint(ns)
	if !ok {
		// metrics-server's decoder leaves the node out of the batch, and its storage
		// then forgets it.
		x.log.Debug("Dropping incomplete node point", "node", ns.Node)
		reject(rejectIncomplete)
		st.last, st.prev, st.hasLast, st.hasPrev = point{}, point{}, false, false
		return
	}
	x.nextNode(ns.Node, st, p, reject)
}

// nextNode makes p the node's last point.
func (x *index) nextNode(name string, st *nodeState, p point, reject rejectFunc) {
	prev, hasPrev := point{}, false
	switch {
	case !st.hasLast:
	case p.ts > st.last.ts:
		// A new point: the stored one becomes the previous one.
		prev, hasPrev = st.last, true
	case st.hasPrev && st.prev.ts < p.ts:
		// The same (or an older) point as the stored one: keep the previous point, so
		// that a kubelet returning its cached sample twice does not collapse the window.
		prev, hasPrev = st.prev, true
	case st.hasPrev:
		x.log.Debug("Found new node metrics point is older than stored previous, drop previous",
			"node", name, "previousTimestamp", time.Unix(0, st.prev.ts), "timestamp", time.Unix(0, p.ts))
		reject(rejectOlderThanPrev)
	}
	st.last, st.hasLast, st.prev, st.hasPrev = p, true, prev, hasPrev
	if hasPrev {
		if _, err := usage(p, prev); err != nil {
			x.log.Debug("Rejecting node usage", "node", name, "err", err)
			reject(rejectReason(err))
		}
	}
}

// applyPods applies metrics-server's podStorage.Store rule to the pods one node reported.
func (x *index) applyPods(st *nodeState, ns *NodeScrape, reject rejectFunc) {
	cs := ns.Containers
	// Group containers by pod, then by name; the stable sort keeps the first of
	// duplicate containers first, and metrics-server keeps the first.
	order := x.scratch[:0]
	for i := range cs {
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(
			cmp.Compare(cs[a].Namespace, cs[b].Namespace),
			cmp.Compare(cs[a].Pod, cs[b].Pod),
			cmp.Compare(cs[a].Container, cs[b].Container))
	})
	x.scratch = order

	oldPods := st.pods
	st.pods = make([]PodRef, 0, len(oldPods))
	for lo := 0; lo < len(order); {
		ref := PodRef{Namespace: cs[order[lo]].Namespace, Name: cs[order[lo]].Pod}
		hi := lo + 1
		for hi < len(order) && cs[order[hi]].Namespace == ref.Namespace && cs[order[hi]].Pod == ref.Name {
			hi++
		}
		group := order[lo:hi]
		lo = hi
		if x.applyPod(ns.Node, ref, cs, group, reject) {
			st.pods = append(st.pods, ref)
		}
	}
	// Forget the pods this node owned and did not report (completely) this time.
	for _, ref := range oldPods {
		if p := x.pods[ref]; p != nil && p.node == ns.Node && p.gen != x.gen {
			delete(x.pods, ref)
		}
	}
}

// applyPod stores one pod's containers (cs[group], sorted by name) and reports whether
// the pod is now in the index.
func (x *index) applyPod(node string, ref PodRef, cs []ContainerSample, group []int, reject rejectFunc) bool {
	old := x.pods[ref]
	if old != nil && old.gen == x.gen {
		x.log.Debug("Skipping duplicate pod in batch", "pod", ref, "node", node, "firstNode", old.node)
		reject(rejectDuplicate)
		return false
	}
	containers := x.containers[:0]
	defer func() { x.containers = containers[:0] }()
	for _, i := range group {
		c := &cs[i]
		if n := len(containers); n > 0 && containers[n-1].name == c.Container {
			x.log.Debug("Skipping duplicate container point", "pod", ref, "container", c.Container)
			reject(rejectDuplicate)
			continue
		}
		p, empty, ok := containerPoint(c)
		if empty {
			continue
		}
		if !ok {
			// metrics-server's decoder drops the whole pod from the batch, and its
			// storage then forgets it.
			x.log.Debug("Dropping pod with an incomplete container point", "pod", ref, "container", c.Container)
			reject(rejectIncomplete)
			return false
		}
		containers = append(containers, containerState{name: c.Container, last: p})
	}
	if len(containers) == 0 {
		return false
	}
	for i := range containers {
		c := &containers[i]
		var oldC *containerState
		if old != nil {
			oldC = old.find(c.name)
		}
		c.prev, c.hasPrev = x.containerPrev(ref, oldC, c.last, reject)
		if c.hasPrev {
			if _, err := usage(c.last, c.prev); err != nil {
				x.log.Debug("Rejecting container usage", "pod", ref, "container", c.name, "err", err)
				reject(rejectReason(err))
			}
		}
	}
	if old == nil {
		old = &podState{}
		x.pods[ref] = old
	}
	// The new states were built in scratch space, since the old ones were still read;
	// copy them into the pod's own slice, reusing it when it is large enough.
	old.node, old.gen = node, x.gen
	old.containers = append(old.containers[:0:min(cap(old.containers), len(containers))], containers...)
	return true
}

// containerPrev returns the previous point of a container whose new point is p, given
// its stored state old (nil when there is none).
func (x *index) containerPrev(ref PodRef, old *containerState, p point, reject rejectFunc) (point, bool) {
	// Fresh container: a container at least 10s but less than one resolution old gets a
	// synthetic previous point at its start time with no CPU used, so that it has a
	// window after its first scrape.
	if p.start != noStart && p.start < p.ts {
		age := time.Duration(p.ts - p.start)
		if age > 0 && age < x.resolution && age >= freshContainerMinAge {
			prev := p
			prev.ts, prev.cpu = p.start, 0
			return prev, true
		}
	}
	// The stored point is a previous point only if the container has not restarted
	// since: its start time is before the stored point.
	if old == nil || p.start >= old.last.ts {
		return point{}, false
	}
	if p.ts > old.last.ts {
		return old.last, true
	}
	// The same (or an older) sample as the stored one: keep the stored previous point.
	//
	// Unlike metrics-server, a container that has no previous point keeps none. There,
	// when another container of the pod has one, the container gets a zero point as its
	// previous one, and a window of 292 years with a CPU rate of about 0.
	if !old.hasPrev {
		return point{}, false
	}
	if old.prev.ts < p.ts {
		return old.prev, true
	}
	x.log.Debug("Found new container metrics point is older than stored previous, drop previous",
		"pod", ref, "container", old.name, "previousTimestamp", time.Unix(0, old.prev.ts), "timestamp", time.Unix(0, p.ts))
	reject(rejectOlderThanPrev)
	return point{}, false
}

// forget drops nodes absent from every batch for more than forgetAfterIntervals
// resolutions, with the pods they owned.
func (x *index) forget(now time.Time) {
	horizon := forgetAfterIntervals * x.resolution
	for name, st := range x.nodes {
		if st.gen == x.gen || now.Sub(st.seen) <= horizon {
			continue
		}
		x.log.Debug("Forgetting node absent from recent scrapes", "node", name, "lastSeen", st.seen)
		x.forgetNode(name, st)
	}
}

func (x *index) forgetNode(name string, st *nodeState) {
	for _, ref := range st.pods {
		if p := x.pods[ref]; p != nil && p.node == name {
			delete(x.pods, ref)
		}
	}
	delete(x.nodes, name)
}

// count recomputes the served-points counts.
func (x *index) count() {
	x.nodePoints, x.containerPoints = 0, 0
	for _, st := range x.nodes {
		if st.hasPrev {
			x.nodePoints++
		}
	}
	for _, p := range x.pods {
		for i := range p.containers {
			if p.containers[i].hasPrev {
				x.containerPoints++
			}
		}
	}
}

func rejectReason(err error) string {
	if errors.Is(err, errDecreasingStartTime) {
		return rejectDecreasingTime
	}
	return rejectDecreasingCPU
}

// nodeUsage returns the named nodes' windows, in input order, leaving out the nodes that
// have none.
func (x *index) nodeUsage(nodes []string) []NodeUsage {
	out := make([]NodeUsage, 0, len(nodes))
	for _, name := range nodes {
		st := x.nodes[name]
		if st == nil || !st.hasLast || !st.hasPrev {
			continue
		}
		u, err := usage(st.last, st.prev)
		if err != nil {
			continue // counted when the point was stored
		}
		out = append(out, NodeUsage{Node: name, Usage: u})
	}
	return out
}

// podUsage returns the named pods' windows, in input order, leaving out the pods that
// have none.
func (x *index) podUsage(pods []PodRef) []PodUsage {
	out := make([]PodUsage, 0, len(pods))
	for _, ref := range pods {
		if u, ok := x.pod(ref); ok {
			out = append(out, u)
		}
	}
	return out
}

// pod computes one pod's window: only when every container has one. The pod's timestamp
// and window are those of its container with the earliest timestamp.
//
// Unlike metrics-server, a container whose window is rejected (a decreasing counter or
// start time) leaves the whole pod out; metrics-server leaves out only the container and
// serves the pod without it. Ties between containers with the same earliest timestamp go
// to the first by name (metrics-server: map order).
func (x *index) pod(ref PodRef) (PodUsage, bool) {
	p := x.pods[ref]
	if p == nil || len(p.containers) == 0 {
		return PodUsage{}, false
	}
	u := PodUsage{PodRef: ref, Containers: make([]ContainerUsage, 0, len(p.containers))}
	for i := range p.containers {
		c := &p.containers[i]
		if !c.hasPrev {
			return PodUsage{}, false
		}
		cu, err := usage(c.last, c.prev)
		if err != nil {
			return PodUsage{}, false
		}
		u.Containers = append(u.Containers, ContainerUsage{Name: c.name, Usage: cu})
		if i == 0 || cu.Timestamp.Before(u.Timestamp) {
			u.Timestamp, u.Window = cu.Timestamp, cu.Window
		}
	}
	return u, true
}
