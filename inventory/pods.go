package inventory

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// TransformPod is the transform of the process's one pod informer (SetTransform). It keeps
// only what Hindsight reads of a pod, so that the cache costs a fraction of full objects:
//
//   - the scraper: namespace, name, UID and node, to give samples their uid label and to
//     keep a pod's samples only from the node the API places it on;
//   - the metrics.k8s.io API: labels (label selectors) and status.phase (only Running pods
//     are served, as metrics-server serves them);
//   - the catalog: labels, owner references, creation time, node, QoS class, and each
//     init and regular container's name, restart policy (sidecars) and resources, plus
//     pod-level resources.
//
// Annotations, managed fields, volumes, environment, probes, images, conditions and
// container statuses are dropped. Objects of another type (a DeletedFinalStateUnknown
// tombstone holds an object already transformed) pass unchanged.
func TransformPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              pod.Name,
			Namespace:         pod.Namespace,
			UID:               pod.UID,
			ResourceVersion:   pod.ResourceVersion,
			CreationTimestamp: pod.CreationTimestamp,
			DeletionTimestamp: pod.DeletionTimestamp,
			Labels:            pod.Labels,
			OwnerReferences:   pod.OwnerReferences,
		},
		Spec: corev1.PodSpec{
			NodeName:       pod.Spec.NodeName,
			InitContainers: slimContainers(pod.Spec.InitContainers),
			Containers:     slimContainers(pod.Spec.Containers),
			Resources:      pod.Spec.Resources,
		},
		Status: corev1.PodStatus{
			Phase:    pod.Status.Phase,
			QOSClass: pod.Status.QOSClass,
		},
	}
	return slim, nil
}

func slimContainers(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy}
	}
	return out
}

// PodUIDs looks pods up in the pod informer's cache, whatever the pod's phase: a pod's
// samples carry its UID whenever the pod exists in the API, and are kept only from the node
// the API places it on (spec.nodeName, which TransformPod keeps). It is the scraper's PodUIDs.
type PodUIDs struct {
	Lister corev1listers.PodLister
}

// PodNode returns the UID of the pod and the node the API places it on (spec.nodeName, ""
// while it is not scheduled); ok is false when the cache does not hold the pod.
func (p PodUIDs) PodNode(namespace, name string) (uid, node string, ok bool) {
	pod, err := p.Lister.Pods(namespace).Get(name)
	if err != nil {
		return "", "", false
	}
	return string(pod.UID), pod.Spec.NodeName, true
}

var _ cache.TransformFunc = TransformPod
