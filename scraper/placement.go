package scraper

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// Reasons counted by hindsight_scrape_dropped_samples_total: why a pod or container sample a
// kubelet reported was not stored.
const (
	// DropUnknownPod: the pod cache does not hold namespace/name. A hostile or confused kubelet
	// inventing pods, or a pod created so recently that the informer has not seen it yet (it
	// is kept from the next round on, as metrics-server serves only pods its informer knows).
	DropUnknownPod = "unknown_pod"
	// DropWrongNode: the API places the pod on another node, or on none yet. Stored, it would
	// be summed into that pod's history and could win its current window.
	DropWrongNode = "wrong_node"
)

func newDroppedSamples() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hindsight", Subsystem: "scrape", Name: "dropped_samples_total",
		Help: "Pod and container samples reported by kubelets and not stored, by reason: unknown_pod (not in the pod cache), wrong_node (the API places the pod elsewhere).",
	}, []string{"reason"})
	// Both series exist from the start, so that a rate over them is never absent.
	c.WithLabelValues(DropUnknownPod)
	c.WithLabelValues(DropWrongNode)
	return c
}

// placePods keeps the pod and container samples of r whose pod the pod cache holds with
// spec.nodeName == node, gives them the pod's UID, and counts and drops the others. It
// filters r's slices in place: they are the fetcher's own.
//
// The rule is what keeps a kubelet from writing another node's (another namespace's) pod:
// only the kubelet the API placed a pod on reports it. It also bounds what a node can store
// by the pods the API places there, however many names its kubelet invents.
func (s *Scraper) placePods(r *tsdb.NodeScrape, node string) {
	var unknown, wrong int
	keep := func(namespace, pod string) (string, bool) {
		uid, on, ok := s.pods.PodNode(namespace, pod)
		switch {
		case !ok:
			unknown++
			return "", false
		case on != node:
			wrong++
			return "", false
		}
		return uid, true
	}

	pods := r.Pods[:0]
	for _, p := range r.Pods {
		if uid, ok := keep(p.Namespace, p.Pod); ok {
			p.UID = uid
			pods = append(pods, p)
		}
	}
	clear(r.Pods[len(pods):]) // let the dropped names go
	r.Pods = pods

	containers := r.Containers[:0]
	for _, c := range r.Containers {
		if uid, ok := keep(c.Namespace, c.Pod); ok {
			c.UID = uid
			containers = append(containers, c)
		}
	}
	clear(r.Containers[len(containers):])
	r.Containers = containers

	if unknown > 0 {
		s.m.dropped.WithLabelValues(DropUnknownPod).Add(float64(unknown))
	}
	if wrong > 0 {
		s.m.dropped.WithLabelValues(DropWrongNode).Add(float64(wrong))
	}
	if unknown+wrong > 0 {
		s.log.Debug("dropped pod samples", "node", node, "unknownPod", unknown, "wrongNode", wrong)
	}
}
