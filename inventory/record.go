package inventory

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// podRecord converts pod into the record observed at at. resolved is false when the owner is
// a fallback: the pod's ReplicaSet or Job was not in its lister.
func (f *Feed) podRecord(pod *corev1.Pod, at time.Time) (rec catalog.PodRecord, resolved bool) {
	top, direct, resolved := f.resolveOwner(pod)
	return catalog.PodRecord{
		UID:        string(pod.UID),
		Namespace:  pod.Namespace,
		Name:       pod.Name,
		Node:       pod.Spec.NodeName,
		Labels:     pod.Labels,
		Owner:      top,
		Controller: direct,
		QoSClass:   string(pod.Status.QOSClass),
		Containers: podContainers(pod),
		FirstSeen:  pod.CreationTimestamp.Time,
		LastSeen:   at,
	}, resolved
}

// resolveOwner returns pod's top workload and its direct controller (both zero for a pod
// without one). resolved is false when the ReplicaSet or Job between them is not in its
// lister, or is there with another UID (a namesake of the pod's, which was deleted): top is
// then the direct controller.
func (f *Feed) resolveOwner(pod *corev1.Pod) (top, direct catalog.Owner, resolved bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return catalog.Owner{}, catalog.Owner{}, true
	}
	direct = catalog.Owner{Kind: ref.Kind, Name: ref.Name}
	var (
		parent metav1.Object
		err    error
	)
	switch group := refGroup(ref); {
	case group == "apps" && ref.Kind == "ReplicaSet":
		parent, err = f.rs.ReplicaSets(pod.Namespace).Get(ref.Name)
	case group == "batch" && ref.Kind == "Job":
		parent, err = f.jobs.Jobs(pod.Namespace).Get(ref.Name)
	default:
		return direct, direct, true
	}
	if err == nil && parent.GetUID() != ref.UID {
		err = fmt.Errorf("cached %s has UID %s, not %s", direct, parent.GetUID(), ref.UID)
	}
	if err != nil {
		// Not cached yet (or no more): the pod's next event or a Resync settles it.
		f.log.Debug("pod's controller not cached; recording it as owner for now",
			"namespace", pod.Namespace, "pod", pod.Name, "controller", direct.String(), "err", err)
		return direct, direct, false
	}
	if pref := metav1.GetControllerOfNoCopy(parent); pref != nil {
		return catalog.Owner{Kind: pref.Kind, Name: pref.Name}, direct, true
	}
	return direct, direct, true // a ReplicaSet or Job of its own
}

// refGroup returns the API group of ref ("" for the core group or an unparsable apiVersion).
func refGroup(ref *metav1.OwnerReference) string {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return ""
	}
	return gv.Group
}

// podContainers returns the pod's init containers (Init set; restartable sidecars, which
// are init containers with restartPolicy Always, among them) in spec order, then its
// containers. Ephemeral containers are left out: they cannot have requests or limits.
// Requests and limits are the spec's, the desired ones during an in-place resize.
func podContainers(pod *corev1.Pod) []catalog.ContainerSpec {
	n := len(pod.Spec.InitContainers) + len(pod.Spec.Containers)
	if n == 0 {
		return nil
	}
	out := make([]catalog.ContainerSpec, 0, n)
	for _, c := range pod.Spec.InitContainers {
		out = append(out, containerSpec(c, true))
	}
	for _, c := range pod.Spec.Containers {
		out = append(out, containerSpec(c, false))
	}
	return out
}

func containerSpec(c corev1.Container, init bool) catalog.ContainerSpec {
	return catalog.ContainerSpec{
		Name:     c.Name,
		Init:     init,
		Requests: canonicalResources(c.Resources.Requests),
		Limits:   canonicalResources(c.Resources.Limits),
	}
}

// canonicalResources turns a ResourceList into the catalog's canonical integers: CPU in
// millicores; memory, ephemeral-storage and hugepages-* in bytes; pods and extended
// resources as counts (every resource but CPU in its base unit, rounded up as
// resource.Quantity.Value rounds). It returns nil for an empty list.
func canonicalResources(rl corev1.ResourceList) map[string]int64 {
	if len(rl) == 0 {
		return nil
	}
	m := make(map[string]int64, len(rl))
	for name, q := range rl {
		if name == corev1.ResourceCPU {
			m[string(name)] = q.MilliValue()
		} else {
			m[string(name)] = q.Value()
		}
	}
	return m
}

// nodeRecord converts node into the record observed at at.
func nodeRecord(node *corev1.Node, at time.Time) catalog.NodeRecord {
	return catalog.NodeRecord{
		Name:         node.Name,
		UID:          string(node.UID),
		Labels:       node.Labels,
		Capacity:     canonicalResources(node.Status.Capacity),
		Allocatable:  canonicalResources(node.Status.Allocatable),
		Zone:         firstLabel(node.Labels, corev1.LabelTopologyZone, corev1.LabelFailureDomainBetaZone),
		InstanceType: firstLabel(node.Labels, corev1.LabelInstanceTypeStable, corev1.LabelInstanceType),
		FirstSeen:    node.CreationTimestamp.Time,
		LastSeen:     at,
	}
}

// firstLabel returns the value of the first of keys that is set and not empty.
func firstLabel(labels map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return ""
}
