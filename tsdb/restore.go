package tsdb

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Restoring the current window after a restart.
//
// metrics-server serves nothing for two scrapes after it starts. Hindsight has the last
// points on disk, so Open rebuilds the index from them: for every node and container,
// the last two stored points are fed through the same rules as Write would, provided
// the last one is fresh (at most two resolutions old). A pod is restored with its
// containers whose last point is fresh. This is best effort: the TSDB does not record
// which samples came in which scrape, so a pod that was dropped for one round (an
// incomplete container) before the restart may get a window one round early.

// restoreLookback is how far back, in resolutions, restore reads points: the last point
// must be at most two resolutions old and the one before is about one more.
const (
	restoreFresh    = 2
	restoreLookback = 4
)

// restoredSeries are the stored samples of one node or container.
type restoredSeries struct {
	cpu, mem, start []restoredSample
}

type restoredSample struct {
	t int64 // ms
	v float64
}

// points joins CPU and memory samples taken at the same time (as Write stores them) into
// points, oldest first.
func (r *restoredSeries) points() []point {
	var out []point
	j, k := 0, 0
	for _, c := range r.cpu {
		for j < len(r.mem) && r.mem[j].t < c.t {
			j++
		}
		if j == len(r.mem) || r.mem[j].t != c.t {
			continue
		}
		p := point{ts: c.t * int64(time.Millisecond), start: noStart, cpu: uint64(c.v * 1e9), mem: uint64(r.mem[j].v)}
		for k < len(r.start) && r.start[k].t < c.t {
			k++
		}
		if k < len(r.start) && r.start[k].t == c.t {
			// The scraper's conversion, as metrics-server's decoder does it.
			p.start = time.Unix(0, int64(r.start[k].v*1e9)).UnixNano()
		}
		out = append(out, p)
	}
	return out
}

// restoreNames are the series restore reads: the CPU, memory and start time of nodes
// and containers, what the current window is computed from.
var restoreNames = func() []string {
	var out []string
	for _, s := range Schema {
		if (s.Object == ObjectNode || s.Object == ObjectContainer) &&
			(s.Resource == ResourceCPU || s.Resource == ResourceMemory || s.Resource == ResourceStartTime) {
			out = append(out, s.Name)
		}
	}
	return out
}()

// podKey groups containers by pod.
type podKey struct {
	node, uid string
	ref       PodRef
}

// restore fills the index from the TSDB's points newer than restoreLookback resolutions
// before now.
func (db *DB) restore(ctx context.Context, now time.Time) error {
	objs, err := db.readRecent(ctx, now.Add(-restoreLookback*db.cfg.Resolution))
	if err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.idx.rebuild(objs, now, now.Add(-restoreFresh*db.cfg.Resolution))
	return nil
}

// Where Open restored the current window from, for its log line.
const (
	restoredFromSnapshot = "window.snapshot"
	restoredFromTSDB     = "tsdb"
)

// loadWindow fills the index from the window snapshot (windowsnap.go) with restore's
// freshness rule, or returns why it did not.
func (db *DB) loadWindow(now time.Time) error {
	s, err := readWindowSnapshot(db.cfg.Dir, db.cfg.Resolution, db.tsdb.Head().MaxTime())
	if err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.idx.load(s, now, now.Add(-restoreFresh*db.cfg.Resolution))
	return nil
}

// readRecent reads the samples since from of the series restoreNames lists, by node or
// container.
func (db *DB) readRecent(ctx context.Context, from time.Time) (map[objKey]*restoredSeries, error) {
	q, err := db.tsdb.Querier(from.UnixMilli(), math.MaxInt64)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer q.Close()

	ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchRegexp, metricNameLabel, strings.Join(restoreNames, "|")))
	objs := make(map[objKey]*restoredSeries)
	var it chunkenc.Iterator
	for ss.Next() {
		s := ss.At()
		ls := s.Labels()
		def, ok := LookupSeries(ls.Get(metricNameLabel))
		if !ok {
			continue
		}
		k := objKey{kind: ObjectNode, node: ls.Get(LabelNode)}
		if def.Object == ObjectContainer {
			k = objKey{kind: ObjectContainer, node: k.node, namespace: ls.Get(LabelNamespace), pod: ls.Get(LabelPod),
				container: ls.Get(LabelContainer), uid: ls.Get(LabelUID)}
		}
		if k.node == "" {
			continue
		}
		r := objs[k]
		if r == nil {
			r = &restoredSeries{}
			objs[k] = r
		}
		var samples []restoredSample
		it = s.Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			t, v := it.At()
			samples = append(samples, restoredSample{t: t, v: v})
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", ls, err)
		}
		switch def.Resource {
		case ResourceCPU:
			r.cpu = samples
		case ResourceMemory:
			r.mem = samples
		case ResourceStartTime:
			r.start = samples
		}
	}
	if err := ss.Err(); err != nil {
		return nil, fmt.Errorf("select: %w", err)
	}
	return objs, nil
}

// rebuild feeds the last two points of every node and container whose last point is not
// older than fresh through Write's rules, then restores the pods: a pod gets the
// containers of its newest node and UID, unless one of them was incomplete in its last
// scrape. The caller holds db.mu.
func (x *index) rebuild(objs map[objKey]*restoredSeries, now, fresh time.Time) {
	freshNs := fresh.UnixNano()
	noReject := func(string) {}
	node := func(name string) *nodeState {
		st := x.nodes[name]
		if st == nil {
			st = &nodeState{seen: now}
			x.nodes[name] = st
		}
		return st
	}
	pods := make(map[podKey][]containerState)
	incomplete := make(map[podKey]bool)
	newest := make(map[PodRef]podKey) // the node and UID of a pod's newest points
	newestTS := make(map[PodRef]int64)
	for k, r := range objs {
		pts := r.points()
		if len(pts) == 0 || pts[len(pts)-1].ts < freshNs {
			continue
		}
		pts = pts[max(0, len(pts)-2):]
		if k.kind == ObjectNode {
			x.restoreNode(node(k.node), k.node, pts, noReject)
			continue
		}
		c := x.restoreContainer(k.container, pts, noReject)
		pk := podKey{node: k.node, uid: k.uid, ref: PodRef{Namespace: k.namespace, Name: k.pod}}
		if c == nil {
			// The last point is incomplete: the pod was dropped in its last scrape.
			incomplete[pk] = true
		} else {
			pods[pk] = append(pods[pk], *c)
		}
		if ts := pts[len(pts)-1].ts; ts > newestTS[pk.ref] {
			newestTS[pk.ref], newest[pk.ref] = ts, pk
		}
	}
	for pk, cs := range pods {
		if newest[pk.ref] != pk || incomplete[pk] {
			continue
		}
		slices.SortFunc(cs, func(a, b containerState) int { return cmp.Compare(a.name, b.name) })
		x.pods[pk.ref] = &podState{node: pk.node, containers: cs}
		st := node(pk.node)
		st.pods = append(st.pods, pk.ref)
	}
	x.count()
}

// restoreNode feeds a node's last points (at most two, oldest first) through Write's rules;
// an incomplete point (zero CPU or memory) forgets what came before.
func (x *index) restoreNode(st *nodeState, name string, pts []point, reject rejectFunc) {
	for _, p := range pts {
		if p.cpu == 0 || p.mem == 0 {
			st.last, st.prev, st.hasLast, st.hasPrev = point{}, point{}, false, false
			continue
		}
		x.nextNode(name, st, p, reject)
	}
}

// restoreContainer returns the state of a container from its last points (at most two,
// oldest first), nil when the last one is incomplete.
func (x *index) restoreContainer(name string, pts []point, reject rejectFunc) *containerState {
	var c *containerState
	for _, p := range pts {
		if p.cpu == 0 || p.mem == 0 {
			c = nil
			continue
		}
		next := containerState{name: name, last: p}
		next.prev, next.hasPrev = x.containerPrev(PodRef{}, c, p, reject)
		c = &next
	}
	return c
}
