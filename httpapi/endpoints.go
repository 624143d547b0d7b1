package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hindsight-metrics/hindsight/tsdb"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// workloadKinds maps the path segment of a workload to its kind in the catalog.
var workloadKinds = map[string]string{
	"deployments":  "Deployment",
	"statefulsets": "StatefulSet",
	"daemonsets":   "DaemonSet",
	"replicasets":  "ReplicaSet",
	"jobs":         "Job",
	"cronjobs":     "CronJob",
}

// maxUIDMatch is the most pod UIDs matched by name in one TSDB query; above it, the
// namespace's series are read and filtered.
const maxUIDMatch = 256

// window returns the catalog window of the query: every object alive during a step.
func (q *query) window() (from, to time.Time) { return q.start.Add(-q.step), q.end }

func unsupported(q *query, endpoint string) error {
	if q.selector != nil {
		return paramError(paramLabelSelector, "not supported by %s", endpoint)
	}
	if q.by != "" {
		return paramError(paramBy, "not supported by %s", endpoint)
	}
	return nil
}

func (h *Handler) cluster(ctx context.Context, _ *http.Request, q *query) (*result, error) {
	nodes, err := h.selectedNodes(ctx, q, "the cluster")
	if err != nil {
		return nil, err
	}
	s := newSeries(q, objectInfo{Kind: "Cluster"}, true)
	names := make(map[string]bool, len(nodes))
	for i := range nodes {
		names[nodes[i].Name] = true
		addNodeLines(q, s, &nodes[i])
	}
	err = h.gather(ctx, q, tsdb.Selector{Object: tsdb.ObjectNode}, maxMembers, true, func(ri int, rs *tsdb.RangeSeries) {
		// Without a selector, nodes the catalog does not know (yet) count too.
		if q.selector == nil || names[rs.ID.Node] {
			s.add(ri, rs)
		}
	})
	if err != nil {
		return nil, err
	}
	return totals(s), nil
}

func unsupportedBy(q *query, endpoint string) error {
	if q.by != "" {
		return paramError(paramBy, "not supported by %s", endpoint)
	}
	return nil
}

// totals finishes a single total series, counting its members.
func totals(s *seriesResult) *result {
	n := slices.Max(s.got)
	s.object.Members = &n
	s.finish()
	return &result{series: []*seriesResult{s}}
}

// selectedNodes checks that the user may read node metrics and returns the nodes that
// existed during the query's range and match its label selector.
func (h *Handler) selectedNodes(ctx context.Context, q *query, endpoint string) ([]catalog.NodeRecord, error) {
	if err := unsupportedBy(q, endpoint); err != nil {
		return nil, err
	}
	if err := h.authorize(ctx, resourceNodes, ""); err != nil {
		return nil, err
	}
	recs, err := h.cfg.Catalog.Nodes(q.window())
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return slices.DeleteFunc(recs, func(n catalog.NodeRecord) bool {
		return q.selector != nil && !q.selector.Matches(labels.Set(n.Labels))
	}), nil
}

func (h *Handler) nodes(ctx context.Context, _ *http.Request, q *query) (*result, error) {
	recs, err := h.selectedNodes(ctx, q, "nodes")
	if err != nil {
		return nil, err
	}
	return h.nodeSeries(ctx, q, recs, tsdb.Selector{Object: tsdb.ObjectNode})
}

func (h *Handler) node(ctx context.Context, r *http.Request, q *query) (*result, error) {
	if err := unsupported(q, "one node"); err != nil {
		return nil, err
	}
	if err := h.authorize(ctx, resourceNodes, ""); err != nil {
		return nil, err
	}
	name := chi.URLParam(r, "node")
	rec, err := h.cfg.Catalog.Node(name)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, notFound("node %q was never seen", name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up node %s: %w", name, err)
	}
	return h.nodeSeries(ctx, q, []catalog.NodeRecord{rec}, tsdb.Selector{Object: tsdb.ObjectNode, Node: name})
}

func (h *Handler) nodeSeries(ctx context.Context, q *query, recs []catalog.NodeRecord, sel tsdb.Selector) (*result, error) {
	if len(recs) > h.cfg.MaxSeries {
		return nil, &limitError{msg: fmt.Sprintf("%d nodes match, more than the limit of %d series (--history-max-series): use a label selector", len(recs), h.cfg.MaxSeries)}
	}
	if err := checkSize(q, len(recs)); err != nil {
		return nil, err
	}
	res := &result{}
	byName := make(map[string]*seriesResult, len(recs))
	for i := range recs {
		s := newSeries(q, nodeObject(&recs[i]), false)
		addNodeLines(q, s, &recs[i])
		byName[recs[i].Name] = s
		res.series = append(res.series, s)
	}
	err := h.gather(ctx, q, sel, maxMembers, false, func(ri int, rs *tsdb.RangeSeries) {
		if s := byName[rs.ID.Node]; s != nil {
			s.add(ri, rs)
		}
	})
	if err != nil {
		return nil, err
	}
	for _, s := range res.series {
		s.finish()
	}
	return res, nil
}

func (h *Handler) namespaces(ctx context.Context, _ *http.Request, q *query) (*result, error) {
	if err := unsupported(q, "namespaces"); err != nil {
		return nil, err
	}
	all, err := h.cfg.Catalog.Namespaces()
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	// Only the namespaces the user may read, so that nobody learns of another's.
	var allowed []string
	denied := false
	// A reader who is not cluster-wide sees them from the latest of their current
	// incarnations on (one grid for all), and none that does not exist now.
	for _, ns := range all {
		err := h.readNamespace(ctx, q, ns)
		switch {
		case err == nil:
			allowed = append(allowed, ns)
		case isForbidden(err):
			denied = true
		case isNotFound(err):
		default:
			return nil, err
		}
	}
	if len(allowed) == 0 && denied {
		return nil, forbidden("no namespace's history is visible: that takes get pods.metrics.k8s.io in a namespace")
	}
	if len(allowed) > h.cfg.MaxSeries {
		return nil, &limitError{msg: fmt.Sprintf("%d namespaces, more than the limit of %d series (--history-max-series)", len(allowed), h.cfg.MaxSeries)}
	}
	if err := checkSize(q, len(allowed)); err != nil {
		return nil, err
	}
	res := &result{}
	byNS := make(map[string]*seriesResult, len(allowed))
	for _, ns := range allowed {
		s, err := h.namespaceTotal(q, ns)
		if err != nil {
			return nil, err
		}
		byNS[ns] = s
		res.series = append(res.series, s)
	}
	err = h.gather(ctx, q, tsdb.Selector{Object: tsdb.ObjectPod}, maxMembers, true, func(ri int, rs *tsdb.RangeSeries) {
		if s := byNS[rs.ID.Namespace]; s != nil {
			s.add(ri, rs)
		}
	})
	if err != nil {
		return nil, err
	}
	for _, s := range res.series {
		n := slices.Max(s.got)
		s.object.Members = &n
		s.finish()
	}
	return res, nil
}

// namespaceTotal returns the empty total of a namespace's pods (those matching sel, when
// not nil) with their requests and limits; the caller adds usage.
func (h *Handler) namespaceTotal(q *query, ns string) (*seriesResult, error) {
	recs, err := h.matchingPods(q, ns, nil)
	if err != nil {
		return nil, err
	}
	s := newSeries(q, objectInfo{Kind: "Namespace", Name: ns}, true)
	for i := range recs {
		addPodLines(q, s, &recs[i], "")
	}
	return s, nil
}

func (h *Handler) namespace(ctx context.Context, r *http.Request, q *query) (*result, error) {
	ns := chi.URLParam(r, "namespace")
	if err := h.readNamespace(ctx, q, ns); err != nil {
		return nil, err
	}
	if err := h.knownNamespace(ns); err != nil {
		return nil, err
	}
	if q.by == "pod" {
		return h.podList(ctx, q, ns, q.selector)
	}
	if q.selector != nil {
		recs, err := h.matchingPods(q, ns, q.selector)
		if err != nil {
			return nil, err
		}
		s := newSeries(q, objectInfo{Kind: "Namespace", Name: ns}, true)
		return h.podTotal(ctx, q, s, ns, recs)
	}
	s, err := h.namespaceTotal(q, ns)
	if err != nil {
		return nil, err
	}
	if err := h.gather(ctx, q, tsdb.Selector{Object: tsdb.ObjectPod, Namespace: ns}, maxMembers, true, s.add); err != nil {
		return nil, err
	}
	return totals(s), nil
}

func (h *Handler) knownNamespace(ns string) error {
	all, err := h.cfg.Catalog.Namespaces()
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	if !slices.Contains(all, ns) {
		return notFound("no pod of namespace %q was ever seen", ns)
	}
	return nil
}

func (h *Handler) matchingPods(q *query, ns string, sel labels.Selector) ([]catalog.PodRecord, error) {
	match := func(map[string]string) bool { return true }
	if sel != nil {
		match = func(l map[string]string) bool { return sel.Matches(labels.Set(l)) }
	}
	from, to := q.window()
	recs, err := h.cfg.Catalog.PodsMatching(ns, match, from, to)
	if err != nil {
		return nil, fmt.Errorf("list pods of %s: %w", ns, err)
	}
	if !q.notBefore.IsZero() { // a tenant's: the pods of earlier incarnations of ns are not theirs
		recs = slices.DeleteFunc(recs, func(p catalog.PodRecord) bool { return p.FirstSeen.Before(q.notBefore) })
	}
	return recs, nil
}

func (h *Handler) pods(ctx context.Context, r *http.Request, q *query) (*result, error) {
	if err := unsupportedBy(q, "pods"); err != nil {
		return nil, err
	}
	ns := chi.URLParam(r, "namespace")
	if err := h.readNamespace(ctx, q, ns); err != nil {
		return nil, err
	}
	if err := h.knownNamespace(ns); err != nil {
		return nil, err
	}
	return h.podList(ctx, q, ns, q.selector)
}

func (h *Handler) podList(ctx context.Context, q *query, ns string, sel labels.Selector) (*result, error) {
	recs, err := h.matchingPods(q, ns, sel)
	if err != nil {
		return nil, err
	}
	return h.podSeries(ctx, q, ns, recs, tsdb.ObjectPod)
}

// podSeries returns one series per pod record (per container of each, for
// ObjectContainer), in catalog order.
func (h *Handler) podSeries(ctx context.Context, q *query, ns string, recs []catalog.PodRecord, obj tsdb.Object) (*result, error) {
	if len(recs) > h.cfg.MaxSeries {
		return nil, &limitError{msg: fmt.Sprintf("%d pods match, more than the limit of %d series (--history-max-series): use a label selector or a shorter range", len(recs), h.cfg.MaxSeries)}
	}
	if err := checkSize(q, len(recs)); err != nil {
		return nil, err
	}
	res := &result{}
	if obj == tsdb.ObjectPod {
		byUID := make(map[string]*seriesResult, len(recs))
		for i := range recs {
			s := newSeries(q, podObject(&recs[i]), false)
			addPodLines(q, s, &recs[i], "")
			byUID[recs[i].UID] = s
			res.series = append(res.series, s)
		}
		err := h.gatherPods(ctx, q, tsdb.ObjectPod, ns, recs, false, func(ri int, rs *tsdb.RangeSeries) {
			if s := byUID[rs.ID.UID]; s != nil {
				s.add(ri, rs)
			}
		})
		if err != nil {
			return nil, err
		}
	} else {
		type key struct{ uid, container string }
		byKey := make(map[key]*seriesResult)
		recOf := make(map[string]*catalog.PodRecord, len(recs))
		for i := range recs {
			recOf[recs[i].UID] = &recs[i]
			// Every app container the catalog knows, so that one without samples shows as
			// a gap rather than missing.
			for _, c := range recs[i].Containers {
				if c.Init {
					continue
				}
				s := h.containerSeries(q, &recs[i], c.Name)
				byKey[key{recs[i].UID, c.Name}] = s
				res.series = append(res.series, s)
			}
		}
		if len(res.series) > h.cfg.MaxSeries {
			return nil, &limitError{msg: fmt.Sprintf("%d containers, more than the limit of %d series (--history-max-series)", len(res.series), h.cfg.MaxSeries)}
		}
		if err := checkSize(q, len(res.series)); err != nil {
			return nil, err
		}
		var extra []*seriesResult
		err := h.gatherPods(ctx, q, tsdb.ObjectContainer, ns, recs, false, func(ri int, rs *tsdb.RangeSeries) {
			k := key{rs.ID.UID, rs.ID.Container}
			s := byKey[k]
			if s == nil && recOf[k.uid] != nil { // an init container, or one the catalog lacks
				s = h.containerSeries(q, recOf[k.uid], k.container)
				byKey[k] = s
				extra = append(extra, s)
			}
			if s != nil {
				s.add(ri, rs)
			}
		})
		if err != nil {
			return nil, err
		}
		res.series = append(res.series, extra...)
		if len(res.series) > h.cfg.MaxSeries {
			return nil, &limitError{msg: fmt.Sprintf("%d containers, more than the limit of %d series (--history-max-series)", len(res.series), h.cfg.MaxSeries)}
		}
	}
	for _, s := range res.series {
		s.finish()
	}
	return res, nil
}

func (h *Handler) containerSeries(q *query, rec *catalog.PodRecord, container string) *seriesResult {
	obj := podObject(rec)
	obj.Kind, obj.Container = "Container", container
	s := newSeries(q, obj, false)
	addPodLines(q, s, rec, container)
	return s
}

// gatherPods is gather over the pod (or container) series of recs, pods of namespace ns:
// selected by UID when they are few, else the whole namespace's, which add must filter.
// Without a pod, nothing is read.
func (h *Handler) gatherPods(ctx context.Context, q *query, obj tsdb.Object, ns string, recs []catalog.PodRecord, total bool, add func(ri int, rs *tsdb.RangeSeries)) error {
	if len(recs) == 0 {
		return nil
	}
	sel := tsdb.Selector{Object: obj, Namespace: ns}
	if len(recs) <= maxUIDMatch {
		for _, r := range recs {
			sel.UIDs = append(sel.UIDs, r.UID)
		}
	}
	return h.gather(ctx, q, sel, maxMembers, total, add)
}

// podTotal sums the usage, requests and limits of recs into s.
func (h *Handler) podTotal(ctx context.Context, q *query, s *seriesResult, ns string, recs []catalog.PodRecord) (*result, error) {
	uids := make(map[string]bool, len(recs))
	for i := range recs {
		uids[recs[i].UID] = true
		addPodLines(q, s, &recs[i], "")
	}
	err := h.gatherPods(ctx, q, tsdb.ObjectPod, ns, recs, true, func(ri int, rs *tsdb.RangeSeries) {
		if uids[rs.ID.UID] {
			s.add(ri, rs)
		}
	})
	if err != nil {
		return nil, err
	}
	return totals(s), nil
}

func (h *Handler) podByName(ctx context.Context, r *http.Request, q *query) (*result, error) {
	ns, recs, err := h.incarnations(ctx, r, q)
	if err != nil {
		return nil, err
	}
	return h.podSeries(ctx, q, ns, recs, tsdb.ObjectPod)
}

func (h *Handler) containersByName(ctx context.Context, r *http.Request, q *query) (*result, error) {
	ns, recs, err := h.incarnations(ctx, r, q)
	if err != nil {
		return nil, err
	}
	return h.podSeries(ctx, q, ns, recs, tsdb.ObjectContainer)
}

// incarnations returns the pods ever called by the request's name that lived during the
// query's range: every UID of a pod deleted and recreated under one name.
func (h *Handler) incarnations(ctx context.Context, r *http.Request, q *query) (string, []catalog.PodRecord, error) {
	if err := unsupported(q, "one pod"); err != nil {
		return "", nil, err
	}
	ns, name := chi.URLParam(r, "namespace"), chi.URLParam(r, "pod")
	err := h.readNamespace(ctx, q, ns)
	if err != nil {
		return "", nil, err
	}
	recs, err := h.cfg.Catalog.PodsByName(ns, name)
	if err != nil {
		return "", nil, fmt.Errorf("look up pod %s/%s: %w", ns, name, err)
	}
	if len(recs) == 0 {
		return "", nil, notFound("pod %s/%s was never seen", ns, name)
	}
	recs = slices.DeleteFunc(recs, func(p catalog.PodRecord) bool {
		return p.FirstSeen.Before(q.notBefore) || !overlaps(q, p.FirstSeen, endOfLife(p.Deleted, p.DeletedAt, p.LastSeen))
	})
	return ns, recs, nil
}

func (h *Handler) podByUID(ctx context.Context, r *http.Request, q *query) (*result, error) {
	rec, err := h.podOfUID(ctx, r, q)
	if err != nil {
		return nil, err
	}
	return h.podSeries(ctx, q, rec.Namespace, []catalog.PodRecord{rec}, tsdb.ObjectPod)
}

func (h *Handler) containersByUID(ctx context.Context, r *http.Request, q *query) (*result, error) {
	rec, err := h.podOfUID(ctx, r, q)
	if err != nil {
		return nil, err
	}
	return h.podSeries(ctx, q, rec.Namespace, []catalog.PodRecord{rec}, tsdb.ObjectContainer)
}

func (h *Handler) podOfUID(ctx context.Context, r *http.Request, q *query) (catalog.PodRecord, error) {
	if err := unsupported(q, "one pod"); err != nil {
		return catalog.PodRecord{}, err
	}
	uid := chi.URLParam(r, "uid")
	// An unknown UID and one of a namespace the caller may not read get the same answer,
	// so that nobody learns of another namespace's pods.
	unknown := notFound("no pod with UID %q was seen in a namespace you may read", uid)
	rec, err := h.cfg.Catalog.Pod(uid)
	if errors.Is(err, catalog.ErrNotFound) {
		return catalog.PodRecord{}, unknown
	}
	if err != nil {
		return catalog.PodRecord{}, fmt.Errorf("look up pod %s: %w", uid, err)
	}
	if err := h.readNamespace(ctx, q, rec.Namespace); err != nil {
		if isForbidden(err) || isNotFound(err) {
			return catalog.PodRecord{}, unknown
		}
		return catalog.PodRecord{}, err
	}
	if rec.FirstSeen.Before(q.notBefore) { // a pod of an earlier incarnation of the namespace
		return catalog.PodRecord{}, unknown
	}
	return rec, nil
}

func (h *Handler) workload(ctx context.Context, r *http.Request, q *query) (*result, error) {
	ns, plural, name := chi.URLParam(r, "namespace"), chi.URLParam(r, "workloads"), chi.URLParam(r, "name")
	kind, ok := workloadKinds[plural]
	if !ok {
		return nil, notFound("no history endpoint for %q: known workloads are deployments, statefulsets, daemonsets, replicasets, jobs and cronjobs", plural)
	}
	err := h.readNamespace(ctx, q, ns)
	if err != nil {
		return nil, err
	}
	from, to := q.window()
	recs, err := h.cfg.Catalog.PodsByOwner(ns, kind, name, from, to)
	if err != nil {
		return nil, fmt.Errorf("look up the pods of %s %s/%s: %w", kind, ns, name, err)
	}
	if len(recs) == 0 {
		ever, err := h.cfg.Catalog.PodsByOwner(ns, kind, name, time.Time{}, time.Time{})
		if err != nil {
			return nil, fmt.Errorf("look up the pods of %s %s/%s: %w", kind, ns, name, err)
		}
		ever = slices.DeleteFunc(ever, func(p catalog.PodRecord) bool { return p.FirstSeen.Before(q.notBefore) }) // earlier incarnations
		if len(ever) == 0 {
			return nil, notFound("no pod of %s %s/%s was ever seen", kind, ns, name)
		}
	}
	recs = slices.DeleteFunc(recs, func(p catalog.PodRecord) bool {
		return p.FirstSeen.Before(q.notBefore) || (q.selector != nil && !q.selector.Matches(labels.Set(p.Labels)))
	})
	if q.by == "pod" {
		return h.podSeries(ctx, q, ns, recs, tsdb.ObjectPod)
	}
	s := newSeries(q, objectInfo{Kind: kind, Namespace: ns, Name: name}, true)
	return h.podTotal(ctx, q, s, ns, recs)
}
