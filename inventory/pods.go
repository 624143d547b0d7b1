package inventory

import (
	"slices"
	"strconv"
	"strings"
	"sync"

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
//
// What replicas of one template have alike (the slimmed containers with their resources,
// the labels, the owner references) is shared between their cached objects rather than
// kept once per pod (see shared): at 1,000 nodes × 30 pods the containers' resources alone
// were 100 MB of the cache. Cached objects are read-only, as everything an informer hands
// out; nothing in Hindsight modifies them.
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
			Labels:            shared.labels(pod.Labels),
			OwnerReferences:   shared.owners(pod.OwnerReferences),
		},
		Spec: corev1.PodSpec{
			NodeName:       pod.Spec.NodeName,
			InitContainers: shared.containers(pod.Spec.InitContainers),
			Containers:     shared.containers(pod.Spec.Containers),
			Resources:      pod.Spec.Resources,
		},
		Status: corev1.PodStatus{
			Phase:    pod.Status.Phase,
			QOSClass: pod.Status.QOSClass,
		},
	}
	return slim, nil
}

// maxShared bounds each table of shared: past it, the table starts again (the values the
// cache holds stay as they are; only sharing with pods transformed before is lost).
const maxShared = 4096

// shared is the process's one table of shared pod parts: there is one pod informer.
var shared = newInterner(maxShared)

// interner hands out one instance of each distinct slimmed container list, label map and
// owner-reference list, keyed by their content.
type interner struct {
	mu      sync.Mutex
	max     int
	conts   map[string][]corev1.Container
	lbls    map[string]map[string]string
	ownRefs map[string][]metav1.OwnerReference
}

func newInterner(max int) *interner {
	return &interner{max: max, conts: map[string][]corev1.Container{}, lbls: map[string]map[string]string{},
		ownRefs: map[string][]metav1.OwnerReference{}}
}

// intern returns the table's value for key, storing v under it first when there is none.
func intern[V any](mu *sync.Mutex, table map[string]V, max int, key string, v func() V) V {
	mu.Lock()
	defer mu.Unlock()
	if got, ok := table[key]; ok {
		return got
	}
	if len(table) >= max {
		clear(table)
	}
	table[key] = v()
	return table[key]
}

// containers returns the slimmed containers (name, restart policy, resources) of cs.
func (in *interner) containers(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	var k strings.Builder
	for _, c := range cs {
		k.WriteString(c.Name)
		k.WriteByte(0)
		if c.RestartPolicy != nil {
			k.WriteString(string(*c.RestartPolicy))
		}
		k.WriteByte(0)
		writeResources(&k, c.Resources.Requests)
		writeResources(&k, c.Resources.Limits)
		for _, cl := range c.Resources.Claims {
			k.WriteString(cl.Name + "/" + cl.Request + ",")
		}
		k.WriteByte(1)
	}
	return intern(&in.mu, in.conts, in.max, k.String(), func() []corev1.Container {
		out := make([]corev1.Container, len(cs))
		for i, c := range cs {
			out[i] = corev1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy}
		}
		return out
	})
}

func writeResources(k *strings.Builder, l corev1.ResourceList) {
	names := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		q := l[n]
		k.WriteString(string(n) + "=" + q.String() + ",")
	}
	k.WriteByte(0)
}

// labels returns a map equal to l.
func (in *interner) labels(l map[string]string) map[string]string {
	if l == nil {
		return nil
	}
	keys := make([]string, 0, len(l))
	for n := range l {
		keys = append(keys, n)
	}
	slices.Sort(keys)
	var k strings.Builder
	for _, n := range keys {
		k.WriteString(n + "\x00" + l[n] + "\x00")
	}
	return intern(&in.mu, in.lbls, in.max, k.String(), func() map[string]string { return l })
}

// owners returns a list equal to refs.
func (in *interner) owners(refs []metav1.OwnerReference) []metav1.OwnerReference {
	if refs == nil {
		return nil
	}
	var k strings.Builder
	flag := func(b *bool) string {
		if b == nil {
			return "-"
		}
		return strconv.FormatBool(*b)
	}
	for _, r := range refs {
		k.WriteString(r.APIVersion + "\x00" + r.Kind + "\x00" + r.Name + "\x00" + string(r.UID) + "\x00" + flag(r.Controller) + flag(r.BlockOwnerDeletion) + "\x01")
	}
	return intern(&in.mu, in.ownRefs, in.max, k.String(), func() []metav1.OwnerReference { return refs })
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
