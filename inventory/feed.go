package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	appsv1informers "k8s.io/client-go/informers/apps/v1"
	batchv1informers "k8s.io/client-go/informers/batch/v1"
	appsv1listers "k8s.io/client-go/listers/apps/v1"
	batchv1listers "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// Catalog records observations of pods and nodes and reports its own health.
// *catalog.Catalog implements it; its write methods only queue, so an informer's event
// handler does not wait for the disk.
type Catalog interface {
	// UpsertPod records an observation of a pod at rec.LastSeen.
	UpsertPod(rec catalog.PodRecord) error
	// UpsertNode records an observation of a node at rec.LastSeen.
	UpsertNode(rec catalog.NodeRecord) error
	// MarkPodDeleted records that the pod with this UID was deleted at at.
	MarkPodDeleted(uid string, at time.Time) error
	// MarkNodeDeleted records that the node called name was deleted at at.
	MarkNodeDeleted(name string, at time.Time) error
	// ReconcilePods marks deleted, at at, every live pod not in present and not seen
	// after at; ReconcileNodes does the same for nodes by name.
	ReconcilePods(present []string, at time.Time) error
	ReconcileNodes(present []string, at time.Time) error
	// Stats and Health describe the catalog's writes, for self-metrics and /readyz.
	Stats() catalog.Stats
	Health() error
}

var _ Catalog = (*catalog.Catalog)(nil)

// Config is what a Feed reads.
type Config struct {
	// Pods is the one pod informer of the process: every namespace, every phase, its
	// objects stripped by TransformPod.
	Pods cache.SharedIndexInformer
	// Nodes is the node informer the scraper uses too.
	Nodes cache.SharedIndexInformer
	// ReplicaSets and Jobs resolve owners to their top workload.
	ReplicaSets appsv1informers.ReplicaSetInformer
	Jobs        batchv1informers.JobInformer
	// RepairEvery is how often Run repairs the catalog from the informers' caches: it
	// rewrites the objects whose last write failed or whose owner was not resolved, every
	// object when the catalog dropped records, and marks deleted what is gone from the
	// caches (a deletion event lost while the catalog could not write). 0 means
	// DefaultRepairEvery.
	RepairEvery time.Duration
	// Now stamps observations and deletions; nil means time.Now.
	Now func() time.Time
}

// DefaultRepairEvery is Config.RepairEvery's default.
const DefaultRepairEvery = 10 * time.Minute

// Validate reports every missing or invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.Pods == nil || c.Nodes == nil {
		errs = append(errs, errors.New("inventory: the pod and node informers are required"))
	}
	if c.ReplicaSets == nil || c.Jobs == nil {
		errs = append(errs, errors.New("inventory: the ReplicaSet and Job informers are required"))
	}
	if c.RepairEvery < 0 {
		errs = append(errs, fmt.Errorf("inventory: RepairEvery must not be negative, got %s", c.RepairEvery))
	}
	return errors.Join(errs...)
}

// Feed feeds the object catalog from informers: every pod and node the informers add or
// update is converted into a catalog record and upserted, and every deletion is recorded.
//
// A pod's owner is resolved to its top workload through the ReplicaSet and Job listers:
// Pod → ReplicaSet → Deployment, Pod → Job → CronJob (more generally, the controller of the
// pod's ReplicaSet or Job, whatever its kind), and the direct controller for anything else
// (StatefulSet, DaemonSet, ReplicationController, Node for a mirror pod, custom kinds). A
// pod without a controller has no owner. When the pod's ReplicaSet or Job is not in its
// lister (yet: the two watches are independent, so a new ReplicaSet's pods can arrive before
// it), the owner is recorded as that direct controller. Feed does not guess the
// Deployment from a ReplicaSet name of the form <deployment>-<pod-template-hash>: a
// ReplicaSet may be named so without belonging to a Deployment, and a wrong owner in the
// catalog is worse than a late one. The pod's next event (pods are updated several times
// while they start) or the next repair records the resolved owner; Run adds its handlers
// only once ReplicaSets and Jobs have synced, which avoids the gap at start.
//
// Updates that change nothing the catalog records (a readiness flip, a node heartbeat) are
// not written, unless the previous write of that object failed or had an unresolved owner.
type Feed struct {
	w           Catalog
	pods        cache.SharedIndexInformer
	nodes       cache.SharedIndexInformer
	rs          appsv1listers.ReplicaSetLister
	jobs        batchv1listers.JobLister
	ownerSynced []cache.InformerSynced
	repairEvery time.Duration
	now         func() time.Time
	log         *slog.Logger
	metrics     *feedMetrics

	podReg, nodeReg cache.ResourceEventHandlerRegistration

	mu sync.Mutex // guards dirtyPods, dirtyNodes, repairErr, droppedSeen
	// dirtyPods holds the pods whose last write failed or recorded a fallback owner, and
	// dirtyNodes the nodes whose last write failed: an update of one of them is written even
	// when the object's recorded fields did not change, and the next repair rewrites them.
	dirtyPods  map[types.UID]struct{}
	dirtyNodes map[string]struct{}
	// repairErr is the last repair's error; droppedSeen the catalog's Stats.Dropped at the
	// last full rewrite.
	repairErr   error
	droppedSeen uint64
	synced      bool // the initial lists are written and reconciled
}

// New returns a Feed that writes into cat, and registers its self-metrics (and the
// catalog's) on reg. Nothing happens until Run.
func New(cat Catalog, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Feed, error) {
	if cat == nil || log == nil {
		return nil, errors.New("inventory: nil catalog or logger")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RepairEvery == 0 {
		cfg.RepairEvery = DefaultRepairEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Feed{
		w: cat, pods: cfg.Pods, nodes: cfg.Nodes,
		rs: cfg.ReplicaSets.Lister(), jobs: cfg.Jobs.Lister(),
		ownerSynced: []cache.InformerSynced{cfg.ReplicaSets.Informer().HasSynced, cfg.Jobs.Informer().HasSynced, cfg.Nodes.HasSynced},
		repairEvery: cfg.RepairEvery, now: cfg.Now, log: log,
		dirtyPods:  make(map[types.UID]struct{}),
		dirtyNodes: make(map[string]struct{}),
	}
	m, err := newFeedMetrics(cat, reg)
	if err != nil {
		return nil, err
	}
	f.metrics = m
	return f, nil
}

// addHandlers registers the event handlers on the pod and node informers. A handler added
// to a running informer receives an add for every object already in its cache.
func (f *Feed) addHandlers() error {
	var err error
	f.podReg, err = f.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { f.podChanged(nil, obj) },
		UpdateFunc: f.podChanged,
		DeleteFunc: f.podDeleted,
	})
	if err != nil {
		return fmt.Errorf("add pod event handler: %w", err)
	}
	f.nodeReg, err = f.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { f.nodeChanged(nil, obj) },
		UpdateFunc: f.nodeChanged,
		DeleteFunc: f.nodeDeleted,
	})
	if err != nil {
		return errors.Join(fmt.Errorf("add node event handler: %w", err), f.pods.RemoveEventHandler(f.podReg))
	}
	return nil
}

// HasSynced reports whether both informers have synced and every object of their initial
// lists has been handed to the catalog writer.
func (f *Feed) HasSynced() bool {
	return f.podReg.HasSynced() && f.nodeReg.HasSynced()
}

// Resync upserts every pod and node in the informers' caches, with owners resolved from the
// listers as they are now. Run calls it when the catalog dropped records (a write failed
// while its queue was full); use it too after the catalog was rebuilt. It marks nothing
// deleted. Every record carries the time Resync started, taken before the caches are read,
// so that a concurrent event's newer observation wins in the catalog. It returns ctx's error
// when ctx ends first, and otherwise the first write error with the number of objects that
// failed; it writes the rest regardless.
func (f *Feed) Resync(ctx context.Context) error {
	return f.rewrite(ctx, f.now(), false)
}

// rewrite upserts the cached pods and nodes observed at at: every one, or with onlyDirty
// those whose last write failed or recorded a fallback owner.
func (f *Feed) rewrite(ctx context.Context, at time.Time, onlyDirty bool) error {
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
	for _, obj := range f.nodes.GetStore().List() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if n, ok := obj.(*corev1.Node); ok && (!onlyDirty || f.isDirtyNode(n.Name)) {
			note(f.writeNode(nodeRecord(n, at)))
		}
	}
	for _, obj := range f.pods.GetStore().List() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p, ok := obj.(*corev1.Pod); ok && (!onlyDirty || f.isDirtyPod(p.UID)) {
			rec, resolved := f.podRecord(p, at)
			note(f.writePod(p.UID, rec, resolved))
		}
	}
	if failed > 0 {
		return fmt.Errorf("rewrite catalog: %d of %d records not written: %w", failed, total, first)
	}
	if total > 0 {
		f.log.Info("Rewrote catalog records from the informers' caches", "records", total, "all", !onlyDirty)
	}
	return nil
}

func (f *Feed) podChanged(oldObj, newObj any) {
	pod, ok := newObj.(*corev1.Pod)
	if !ok {
		f.log.Warn("unexpected object from pod informer", "type", fmt.Sprintf("%T", newObj))
		return
	}
	at := f.now()
	rec, resolved := f.podRecord(pod, at)
	if old, ok := oldObj.(*corev1.Pod); ok && !f.isDirtyPod(pod.UID) {
		prev, _ := f.podRecord(old, at)
		if reflect.DeepEqual(prev, rec) {
			return
		}
	}
	if err := f.writePod(pod.UID, rec, resolved); err != nil {
		f.logWriteError("record pod in catalog", err, "namespace", pod.Namespace, "pod", pod.Name)
	}
}

func (f *Feed) podDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		f.log.Warn("unexpected deleted object from pod informer", "type", fmt.Sprintf("%T", obj))
		return
	}
	f.mu.Lock()
	delete(f.dirtyPods, pod.UID)
	f.mu.Unlock()
	if err := f.w.MarkPodDeleted(string(pod.UID), f.now()); err != nil {
		f.logWriteError("record pod deletion in catalog", err, "namespace", pod.Namespace, "pod", pod.Name)
	}
}

func (f *Feed) nodeChanged(oldObj, newObj any) {
	node, ok := newObj.(*corev1.Node)
	if !ok {
		f.log.Warn("unexpected object from node informer", "type", fmt.Sprintf("%T", newObj))
		return
	}
	at := f.now()
	rec := nodeRecord(node, at)
	if old, ok := oldObj.(*corev1.Node); ok && !f.isDirtyNode(node.Name) {
		if reflect.DeepEqual(nodeRecord(old, at), rec) {
			return
		}
	}
	if err := f.writeNode(rec); err != nil {
		f.logWriteError("record node in catalog", err, "node", node.Name)
	}
}

func (f *Feed) nodeDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		f.log.Warn("unexpected deleted object from node informer", "type", fmt.Sprintf("%T", obj))
		return
	}
	f.mu.Lock()
	delete(f.dirtyNodes, node.Name)
	f.mu.Unlock()
	if err := f.w.MarkNodeDeleted(node.Name, f.now()); err != nil {
		f.logWriteError("record node deletion in catalog", err, "node", node.Name)
	}
}

// writePod upserts rec and remembers whether the pod needs rewriting on its next update.
func (f *Feed) writePod(uid types.UID, rec catalog.PodRecord, resolved bool) error {
	err := f.w.UpsertPod(rec)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || !resolved {
		f.dirtyPods[uid] = struct{}{}
	} else {
		delete(f.dirtyPods, uid)
	}
	return err
}

func (f *Feed) writeNode(rec catalog.NodeRecord) error {
	err := f.w.UpsertNode(rec)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.dirtyNodes[rec.Name] = struct{}{}
	} else {
		delete(f.dirtyNodes, rec.Name)
	}
	return err
}

func (f *Feed) isDirtyPod(uid types.UID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.dirtyPods[uid]
	return ok
}

func (f *Feed) isDirtyNode(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.dirtyNodes[name]
	return ok
}

// logWriteError logs a failed catalog write: at Debug once the catalog is closed (shutdown),
// else at Warn (the catalog is degraded; the object is rewritten on its next event).
func (f *Feed) logWriteError(msg string, err error, args ...any) {
	level := slog.LevelWarn
	if errors.Is(err, catalog.ErrClosed) {
		level = slog.LevelDebug
	}
	f.log.Log(context.Background(), level, msg, append(args, "err", err)...)
}
