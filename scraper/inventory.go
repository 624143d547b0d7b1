package scraper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	appsv1listers "k8s.io/client-go/listers/apps/v1"
	batchv1listers "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// CatalogWriter records observations of pods and nodes. *catalog.Catalog implements it; its
// methods only queue, so an informer's event handler does not wait for the disk.
type CatalogWriter interface {
	// UpsertPod records an observation of a pod at rec.LastSeen.
	UpsertPod(rec catalog.PodRecord) error
	// UpsertNode records an observation of a node at rec.LastSeen.
	UpsertNode(rec catalog.NodeRecord) error
	// MarkPodDeleted records that the pod with this UID was deleted at at.
	MarkPodDeleted(uid string, at time.Time) error
	// MarkNodeDeleted records that the node called name was deleted at at.
	MarkNodeDeleted(name string, at time.Time) error
}

var _ CatalogWriter = (*catalog.Catalog)(nil)

// Inventory feeds the object catalog from informers: every pod and node the informers add or
// update is converted into a catalog record and upserted, and every deletion is recorded.
//
// A pod's owner is resolved to its top workload through the ReplicaSet and Job listers:
// Pod → ReplicaSet → Deployment, Pod → Job → CronJob (more generally, the controller of the
// pod's ReplicaSet or Job, whatever its kind), and the direct controller for anything else
// (StatefulSet, DaemonSet, ReplicationController, Node for a mirror pod, custom kinds). A
// pod without a controller has no owner. When the pod's ReplicaSet or Job is not in its
// lister (yet: the two watches are independent, so a new ReplicaSet's pods can arrive before
// it), the owner is recorded as that direct controller. Inventory does not guess the
// Deployment from a ReplicaSet name of the form <deployment>-<pod-template-hash>: a
// ReplicaSet may be named so without belonging to a Deployment, and a wrong owner in the
// catalog is worse than a late one. The pod's next event (pods are updated several times
// while they start) or Resync records the resolved owner; see NewInventory for the startup
// order that avoids the gap altogether.
//
// Updates that change nothing the catalog records (a readiness flip, a node heartbeat) are
// not written, unless the previous write of that object failed or had an unresolved owner.
type Inventory struct {
	w     CatalogWriter
	pods  cache.SharedIndexInformer
	nodes cache.SharedIndexInformer
	rs    appsv1listers.ReplicaSetLister
	jobs  batchv1listers.JobLister
	now   func() time.Time
	log   *slog.Logger

	podReg, nodeReg cache.ResourceEventHandlerRegistration

	mu sync.Mutex // guards dirtyPods and dirtyNodes
	// dirtyPods holds the pods whose last write failed or recorded a fallback owner, and
	// dirtyNodes the nodes whose last write failed: an update of one of them is written even
	// when the object's recorded fields did not change.
	dirtyPods  map[types.UID]struct{}
	dirtyNodes map[string]struct{}
}

// NewInventory registers event handlers on the pod and node informers that write into w,
// and returns the Inventory. pods must be a full *corev1.Pod informer over every namespace
// and every phase (not the scraper's metadata informer of Running pods: the catalog also
// records pending, succeeded and failed pods); nodes a *corev1.Node informer. rs and jobs
// resolve owners. now stamps observations and deletions; nil means time.Now.
//
// The informers may be started before or after NewInventory: a handler added to a running
// informer receives an add for every object already in its cache. To record final owners
// from the first write, call NewInventory after the ReplicaSet and Job informers have synced;
// a handler added earlier can see pods before their ReplicaSets and record direct owners
// until the pods' next update or a Resync.
//
// The handlers run on the informers' goroutines and stop with them; stop the informers
// before closing w.
func NewInventory(w CatalogWriter, pods, nodes cache.SharedIndexInformer, rs appsv1listers.ReplicaSetLister,
	jobs batchv1listers.JobLister, now func() time.Time, log *slog.Logger) (*Inventory, error) {
	if w == nil || pods == nil || nodes == nil || rs == nil || jobs == nil || log == nil {
		return nil, errors.New("inventory: nil catalog writer, informer, lister or logger")
	}
	if now == nil {
		now = time.Now
	}
	inv := &Inventory{
		w: w, pods: pods, nodes: nodes, rs: rs, jobs: jobs, now: now, log: log,
		dirtyPods:  make(map[types.UID]struct{}),
		dirtyNodes: make(map[string]struct{}),
	}
	var err error
	inv.podReg, err = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { inv.podChanged(nil, obj) },
		UpdateFunc: inv.podChanged,
		DeleteFunc: inv.podDeleted,
	})
	if err != nil {
		return nil, fmt.Errorf("add pod event handler: %w", err)
	}
	inv.nodeReg, err = nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { inv.nodeChanged(nil, obj) },
		UpdateFunc: inv.nodeChanged,
		DeleteFunc: inv.nodeDeleted,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("add node event handler: %w", err), pods.RemoveEventHandler(inv.podReg))
	}
	return inv, nil
}

// HasSynced reports whether both informers have synced and every object of their initial
// lists has been handed to the catalog writer.
func (inv *Inventory) HasSynced() bool {
	return inv.podReg.HasSynced() && inv.nodeReg.HasSynced()
}

// Resync upserts every pod and node in the informers' caches, with owners resolved from the
// listers as they are now. Use it after the catalog was rebuilt (the handlers only write what
// changes) or to settle owners recorded before the ReplicaSet and Job caches had synced. It
// marks nothing deleted: deletions come only from events. Every record carries the time Resync
// started, taken before the caches are read, so that a concurrent event's newer observation
// wins in the catalog. It returns ctx's error when ctx ends first, and otherwise the first
// write error with the number of objects that failed; it writes the rest regardless.
func (inv *Inventory) Resync(ctx context.Context) error {
	at := inv.now()
	var (
		total, failed int
		first         error
	)
	note := func(err error) {
		total++
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	for _, obj := range inv.nodes.GetStore().List() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if n, ok := obj.(*corev1.Node); ok {
			note(inv.writeNode(nodeRecord(n, at)))
		}
	}
	for _, obj := range inv.pods.GetStore().List() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p, ok := obj.(*corev1.Pod); ok {
			rec, resolved := inv.podRecord(p, at)
			note(inv.writePod(p.UID, rec, resolved))
		}
	}
	if failed > 0 {
		return fmt.Errorf("resync catalog: %d of %d records not written: %w", failed, total, first)
	}
	inv.log.Info("resynced catalog from informers", "records", total)
	return nil
}

func (inv *Inventory) podChanged(oldObj, newObj any) {
	pod, ok := newObj.(*corev1.Pod)
	if !ok {
		inv.log.Warn("unexpected object from pod informer", "type", fmt.Sprintf("%T", newObj))
		return
	}
	at := inv.now()
	rec, resolved := inv.podRecord(pod, at)
	if old, ok := oldObj.(*corev1.Pod); ok && !inv.isDirtyPod(pod.UID) {
		prev, _ := inv.podRecord(old, at)
		if reflect.DeepEqual(prev, rec) {
			return
		}
	}
	if err := inv.writePod(pod.UID, rec, resolved); err != nil {
		inv.logWriteError("record pod in catalog", err, "namespace", pod.Namespace, "pod", pod.Name)
	}
}

func (inv *Inventory) podDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		inv.log.Warn("unexpected deleted object from pod informer", "type", fmt.Sprintf("%T", obj))
		return
	}
	inv.mu.Lock()
	delete(inv.dirtyPods, pod.UID)
	inv.mu.Unlock()
	if err := inv.w.MarkPodDeleted(string(pod.UID), inv.now()); err != nil {
		inv.logWriteError("record pod deletion in catalog", err, "namespace", pod.Namespace, "pod", pod.Name)
	}
}

func (inv *Inventory) nodeChanged(oldObj, newObj any) {
	node, ok := newObj.(*corev1.Node)
	if !ok {
		inv.log.Warn("unexpected object from node informer", "type", fmt.Sprintf("%T", newObj))
		return
	}
	at := inv.now()
	rec := nodeRecord(node, at)
	if old, ok := oldObj.(*corev1.Node); ok && !inv.isDirtyNode(node.Name) {
		if reflect.DeepEqual(nodeRecord(old, at), rec) {
			return
		}
	}
	if err := inv.writeNode(rec); err != nil {
		inv.logWriteError("record node in catalog", err, "node", node.Name)
	}
}

func (inv *Inventory) nodeDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		inv.log.Warn("unexpected deleted object from node informer", "type", fmt.Sprintf("%T", obj))
		return
	}
	inv.mu.Lock()
	delete(inv.dirtyNodes, node.Name)
	inv.mu.Unlock()
	if err := inv.w.MarkNodeDeleted(node.Name, inv.now()); err != nil {
		inv.logWriteError("record node deletion in catalog", err, "node", node.Name)
	}
}

// writePod upserts rec and remembers whether the pod needs rewriting on its next update.
func (inv *Inventory) writePod(uid types.UID, rec catalog.PodRecord, resolved bool) error {
	err := inv.w.UpsertPod(rec)
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if err != nil || !resolved {
		inv.dirtyPods[uid] = struct{}{}
	} else {
		delete(inv.dirtyPods, uid)
	}
	return err
}

func (inv *Inventory) writeNode(rec catalog.NodeRecord) error {
	err := inv.w.UpsertNode(rec)
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if err != nil {
		inv.dirtyNodes[rec.Name] = struct{}{}
	} else {
		delete(inv.dirtyNodes, rec.Name)
	}
	return err
}

func (inv *Inventory) isDirtyPod(uid types.UID) bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	_, ok := inv.dirtyPods[uid]
	return ok
}

func (inv *Inventory) isDirtyNode(name string) bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	_, ok := inv.dirtyNodes[name]
	return ok
}

// logWriteError logs a failed catalog write: at Debug once the catalog is closed (shutdown),
// else at Warn (the catalog is degraded; the object is rewritten on its next event).
func (inv *Inventory) logWriteError(msg string, err error, args ...any) {
	level := slog.LevelWarn
	if errors.Is(err, catalog.ErrClosed) {
		level = slog.LevelDebug
	}
	inv.log.Log(context.Background(), level, msg, append(args, "err", err)...)
}

// podRecord converts pod into the record observed at at. resolved is false when the owner is
// a fallback: the pod's ReplicaSet or Job was not in its lister.
func (inv *Inventory) podRecord(pod *corev1.Pod, at time.Time) (rec catalog.PodRecord, resolved bool) {
	top, direct, resolved := inv.resolveOwner(pod)
	return catalog.PodRecord{
		UID:        string(pod.UID),
		Namespace:  pod.Namespace,
		Name:       pod.Name,
		Node:       pod.Spec.NodeName,
		Labels:     pod.Labels,
		Owner:      top,
		Controller: direct,
		QoSClass:   string(podQOS(pod)),
		Containers: podContainers(pod),
		FirstSeen:  pod.CreationTimestamp.Time,
		LastSeen:   at,
	}, resolved
}

// resolveOwner returns pod's top workload and its direct controller (both zero for a pod
// without one). resolved is false when the ReplicaSet or Job between them is not in its
// lister, or is there with another UID (a namesake of the pod's, which was deleted): top is
// then the direct controller.
func (inv *Inventory) resolveOwner(pod *corev1.Pod) (top, direct catalog.Owner, resolved bool) {
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
		parent, err = inv.rs.ReplicaSets(pod.Namespace).Get(ref.Name)
	case group == "batch" && ref.Kind == "Job":
		parent, err = inv.jobs.Jobs(pod.Namespace).Get(ref.Name)
	default:
		return direct, direct, true
	}
	if err == nil && parent.GetUID() != ref.UID {
		err = fmt.Errorf("cached %s has UID %s, not %s", direct, parent.GetUID(), ref.UID)
	}
	if err != nil {
		// Not cached yet (or no more): the pod's next event or a Resync settles it.
		inv.log.Debug("pod's controller not cached; recording it as owner for now",
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

// podQOS returns the pod's QoS class: status.qosClass, which the API server sets on
// creation, or else the class computed from requests and limits.
func podQOS(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	return computeQOS(pod)
}

// computeQOS classifies pod as Kubernetes' ComputePodQOS does (pkg/apis/core/v1/helper/qos),
// on the pod as the API server stores it, that is after defaulting: a container's (or the
// pod's) request for a resource it only limits equals the limit. Only CPU and memory count,
// and only positive quantities. With pod-level resources (spec.resources) those alone
// decide; otherwise init containers (sidecars included) and containers do; ephemeral
// containers never do. BestEffort: no requests or limits. Guaranteed: every container (or
// the pod) limits both CPU and memory, and the summed requests equal the summed limits.
// Burstable: anything else.
func computeQOS(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	if r := pod.Spec.Resources; r != nil {
		addQOSResources(requests, defaultedRequests(*r))
		if len(r.Limits) > 0 && addQOSResources(limits, r.Limits) < 2 {
			guaranteed = false
		}
	} else {
		for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
			for _, c := range cs {
				addQOSResources(requests, defaultedRequests(c.Resources))
				if addQOSResources(limits, c.Resources.Limits) < 2 {
					guaranteed = false
				}
			}
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed && len(requests) == len(limits) {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
				break
			}
		}
		if guaranteed {
			return corev1.PodQOSGuaranteed
		}
	}
	return corev1.PodQOSBurstable
}

// addQOSResources adds the positive CPU and memory quantities of rl to sum and returns how
// many of the two rl has.
func addQOSResources(sum, rl corev1.ResourceList) int {
	n := 0
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		q, ok := rl[name]
		if !ok || q.Sign() <= 0 {
			continue
		}
		n++
		if s, ok := sum[name]; ok {
			q = q.DeepCopy()
			q.Add(s)
		}
		sum[name] = q
	}
	return n
}

// defaultedRequests returns r's requests with the API server's defaulting applied: a
// resource that is limited but not requested is requested at its limit.
func defaultedRequests(r corev1.ResourceRequirements) corev1.ResourceList {
	if len(r.Limits) == 0 {
		return r.Requests
	}
	out := make(corev1.ResourceList, len(r.Requests)+len(r.Limits))
	for name, q := range r.Limits {
		out[name] = q
	}
	for name, q := range r.Requests {
		out[name] = q
	}
	return out
}
