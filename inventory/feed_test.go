package inventory

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	appsv1listers "k8s.io/client-go/listers/apps/v1"
	batchv1listers "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

var (
	invT0      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	invCreated = time.Date(2026, 2, 28, 8, 30, 0, 0, time.UTC)
)

// --- object builders ---

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func ctr(name string, requests, limits corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: requests, Limits: limits}}
}

func sidecar(name string, requests, limits corev1.ResourceList) corev1.Container {
	c := ctr(name, requests, limits)
	always := corev1.ContainerRestartPolicyAlways
	c.RestartPolicy = &always
	return c
}

func controllerRef(apiVersion, kind, name, uid string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes}
}

type podOpt func(*corev1.Pod)

func newPod(name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: name, UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(invCreated),
		},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{ctr("app", nil, nil)}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withOwner(ref metav1.OwnerReference) podOpt {
	return func(p *corev1.Pod) { p.OwnerReferences = append(p.OwnerReferences, ref) }
}

func withLabels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Labels = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withContainers(cs ...corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers = cs }
}

func withInit(cs ...corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.InitContainers = cs }
}

func withQOS(q corev1.PodQOSClass) podOpt {
	return func(p *corev1.Pod) { p.Status.QOSClass = q }
}

func replicaSet(name, uid string, owner *metav1.OwnerReference) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID(uid),
		Labels: map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: "7d4b9c"}}}
	if owner != nil {
		rs.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return rs
}

func job(name, uid string, owner *metav1.OwnerReference) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID(uid)}}
	if owner != nil {
		j.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return j
}

// testInventory returns an Inventory with listers over the given objects and no informers,
// for the conversion and handler functions.
// factoryConfig is a Config of factory's informers.
func factoryConfig(factory informers.SharedInformerFactory) Config {
	return Config{
		Pods: factory.Core().V1().Pods().Informer(), Nodes: factory.Core().V1().Nodes().Informer(),
		ReplicaSets: factory.Apps().V1().ReplicaSets(), Jobs: factory.Batch().V1().Jobs(),
	}
}

func withNow(c Config, now func() time.Time) Config {
	c.Now = now
	return c
}

func testFeed(t testing.TB, w Catalog, objs ...any) *Feed {
	t.Helper()
	rsIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	jobIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *appsv1.ReplicaSet:
			err = rsIdx.Add(o)
		case *batchv1.Job:
			err = jobIdx.Add(o)
		default:
			t.Fatalf("unexpected lister object %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return &Feed{
		w: w, rs: appsv1listers.NewReplicaSetLister(rsIdx), jobs: batchv1listers.NewJobLister(jobIdx),
		now: func() time.Time { return invT0 }, log: testlog.New(t),
		dirtyPods: map[types.UID]struct{}{}, dirtyNodes: map[string]struct{}{},
	}
}

// --- conversion ---

func TestPodRecordResources(t *testing.T) {
	t.Parallel()
	app := func(req, lim map[string]int64) catalog.ContainerSpec {
		return catalog.ContainerSpec{Name: "app", Requests: req, Limits: lim}
	}
	tests := []struct {
		name       string
		pod        *corev1.Pod
		qos        string
		containers []catalog.ContainerSpec
	}{
		{
			name: "guaranteed computed from equal requests and limits",
			pod: newPod("p", withContainers(ctr("app", rl("cpu", "500m", "memory", "128Mi"),
				rl("cpu", "0.5", "memory", "134217728")))),
			qos: "Guaranteed",
			containers: []catalog.ContainerSpec{app(map[string]int64{"cpu": 500, "memory": 128 << 20},
				map[string]int64{"cpu": 500, "memory": 128 << 20})},
		},
		{
			name:       "guaranteed from limits alone, requests defaulted as the API server does",
			pod:        newPod("p", withContainers(ctr("app", nil, rl("cpu", "1", "memory", "1Gi")))),
			qos:        "Guaranteed",
			containers: []catalog.ContainerSpec{app(nil, map[string]int64{"cpu": 1000, "memory": 1 << 30})},
		},
		{
			name:       "burstable with requests only",
			pod:        newPod("p", withContainers(ctr("app", rl("cpu", "100m"), nil))),
			qos:        "Burstable",
			containers: []catalog.ContainerSpec{app(map[string]int64{"cpu": 100}, nil)},
		},
		{
			name:       "best effort without requests or limits",
			pod:        newPod("p"),
			qos:        "BestEffort",
			containers: []catalog.ContainerSpec{app(nil, nil)},
		},
		{
			name: "status.qosClass wins over the computed class",
			pod:  newPod("p", withQOS(corev1.PodQOSBurstable)),
			qos:  "Burstable", containers: []catalog.ContainerSpec{app(nil, nil)},
		},
		{
			name: "init containers and a restartable sidecar come first, marked init",
			pod: newPod("p",
				withInit(ctr("migrate", rl("cpu", "1"), rl("cpu", "2")), sidecar("proxy", rl("memory", "64Mi"), nil)),
				withContainers(ctr("app", rl("cpu", "250m"), nil), ctr("worker", nil, nil))),
			qos: "Burstable",
			containers: []catalog.ContainerSpec{
				{Name: "migrate", Init: true, Requests: map[string]int64{"cpu": 1000}, Limits: map[string]int64{"cpu": 2000}},
				{Name: "proxy", Init: true, Requests: map[string]int64{"memory": 64 << 20}},
				{Name: "app", Requests: map[string]int64{"cpu": 250}},
				{Name: "worker"},
			},
		},
		{
			name: "every resource canonicalised: millicores, bytes, counts",
			pod: newPod("p", withContainers(ctr("app",
				rl("cpu", "1.5", "memory", "1G", "ephemeral-storage", "2Gi", "hugepages-2Mi", "4Mi", "example.com/gpu", "1"),
				rl("cpu", "100u", "memory", "129e6", "ephemeral-storage", "3G", "hugepages-2Mi", "4Mi", "example.com/gpu", "1")))),
			qos: "Burstable",
			containers: []catalog.ContainerSpec{app(
				map[string]int64{"cpu": 1500, "memory": 1_000_000_000, "ephemeral-storage": 2 << 30,
					"hugepages-2Mi": 4 << 20, "example.com/gpu": 1},
				map[string]int64{"cpu": 1, "memory": 129_000_000, "ephemeral-storage": 3_000_000_000,
					"hugepages-2Mi": 4 << 20, "example.com/gpu": 1})},
		},
		{
			name: "no containers at all",
			pod:  newPod("p", withContainers()),
			qos:  "BestEffort",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := testFeed(t, nil)
			// The API server sets status.qosClass on creation; the record carries it.
			pod := tt.pod.DeepCopy()
			if pod.Status.QOSClass == "" {
				pod.Status.QOSClass = corev1.PodQOSClass(tt.qos)
			}
			got, resolved := inv.podRecord(pod, invT0)
			want := catalog.PodRecord{
				UID: "uid-p", Namespace: "shop", Name: "p", Node: "node-a",
				QoSClass: tt.qos, Containers: tt.containers, FirstSeen: invCreated, LastSeen: invT0,
			}
			if !resolved {
				t.Error("resolved = false for a bare pod")
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("podRecord (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodRecordOwner(t *testing.T) {
	t.Parallel()
	deployRef := controllerRef("apps/v1", "Deployment", "web", "uid-deploy")
	cronRef := controllerRef("batch/v1", "CronJob", "nightly", "uid-cron")
	listed := []any{
		replicaSet("web-7d4b9c", "uid-rs", &deployRef),
		replicaSet("orphan-rs", "uid-orphan-rs", nil),
		job("nightly-29012345", "uid-job", &cronRef),
		job("adhoc", "uid-adhoc", nil),
	}
	owner := func(kind, name string) catalog.Owner { return catalog.Owner{Kind: kind, Name: name} }
	tests := []struct {
		name          string
		pod           *corev1.Pod
		owner, direct catalog.Owner
		resolved      bool
	}{
		{
			name:  "Deployment via its ReplicaSet",
			pod:   newPod("p", withOwner(controllerRef("apps/v1", "ReplicaSet", "web-7d4b9c", "uid-rs"))),
			owner: owner("Deployment", "web"), direct: owner("ReplicaSet", "web-7d4b9c"), resolved: true,
		},
		{
			name:  "CronJob via its Job",
			pod:   newPod("p", withOwner(controllerRef("batch/v1", "Job", "nightly-29012345", "uid-job"))),
			owner: owner("CronJob", "nightly"), direct: owner("Job", "nightly-29012345"), resolved: true,
		},
		{
			name:  "StatefulSet directly",
			pod:   newPod("p", withOwner(controllerRef("apps/v1", "StatefulSet", "db", "uid-sts"))),
			owner: owner("StatefulSet", "db"), direct: owner("StatefulSet", "db"), resolved: true,
		},
		{
			name:  "DaemonSet directly",
			pod:   newPod("p", withOwner(controllerRef("apps/v1", "DaemonSet", "agent", "uid-ds"))),
			owner: owner("DaemonSet", "agent"), direct: owner("DaemonSet", "agent"), resolved: true,
		},
		{
			name:     "bare pod has no owner",
			pod:      newPod("p"),
			resolved: true,
		},
		{
			name: "an owner reference that is not the controller is ignored",
			pod: newPod("p", withOwner(metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "cm",
				UID: "uid-cm"})),
			resolved: true,
		},
		{
			name: "ReplicaSet not in the lister: its name is not parsed, the direct controller stands in",
			pod: newPod("p", withLabels(appsv1.DefaultDeploymentUniqueLabelKey, "5f6d8"),
				withOwner(controllerRef("apps/v1", "ReplicaSet", "api-5f6d8", "uid-api-rs"))),
			owner: owner("ReplicaSet", "api-5f6d8"), direct: owner("ReplicaSet", "api-5f6d8"), resolved: false,
		},
		{
			name:  "ReplicaSet in the lister under another UID is a namesake, not the pod's",
			pod:   newPod("p", withOwner(controllerRef("apps/v1", "ReplicaSet", "web-7d4b9c", "uid-old-rs"))),
			owner: owner("ReplicaSet", "web-7d4b9c"), direct: owner("ReplicaSet", "web-7d4b9c"), resolved: false,
		},
		{
			name:  "ReplicaSet without a Deployment is the top workload",
			pod:   newPod("p", withOwner(controllerRef("apps/v1", "ReplicaSet", "orphan-rs", "uid-orphan-rs"))),
			owner: owner("ReplicaSet", "orphan-rs"), direct: owner("ReplicaSet", "orphan-rs"), resolved: true,
		},
		{
			name:  "Job without a CronJob is the top workload",
			pod:   newPod("p", withOwner(controllerRef("batch/v1", "Job", "adhoc", "uid-adhoc"))),
			owner: owner("Job", "adhoc"), direct: owner("Job", "adhoc"), resolved: true,
		},
		{
			name:  "Job not in the lister",
			pod:   newPod("p", withOwner(controllerRef("batch/v1", "Job", "gone", "uid-gone"))),
			owner: owner("Job", "gone"), direct: owner("Job", "gone"), resolved: false,
		},
		{
			name:  "a ReplicaSet of another API group is not looked up",
			pod:   newPod("p", withOwner(controllerRef("example.com/v1", "ReplicaSet", "web-7d4b9c", "uid-rs"))),
			owner: owner("ReplicaSet", "web-7d4b9c"), direct: owner("ReplicaSet", "web-7d4b9c"), resolved: true,
		},
		{
			name:  "mirror pod is controlled by its Node",
			pod:   newPod("p", withOwner(controllerRef("v1", "Node", "node-a", "uid-node-a"))),
			owner: owner("Node", "node-a"), direct: owner("Node", "node-a"), resolved: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := testFeed(t, nil, listed...)
			got, resolved := inv.podRecord(tt.pod, invT0)
			if diff := cmp.Diff(tt.owner, got.Owner); diff != "" {
				t.Errorf("Owner (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.direct, got.Controller); diff != "" {
				t.Errorf("Controller (-want +got):\n%s", diff)
			}
			if resolved != tt.resolved {
				t.Errorf("resolved = %v, want %v", resolved, tt.resolved)
			}
		})
	}
}

func TestNodeRecord(t *testing.T) {
	t.Parallel()
	node := func(labels map[string]string) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "uid-node-a", Labels: labels,
				CreationTimestamp: metav1.NewTime(invCreated)},
			Status: corev1.NodeStatus{
				Capacity:    rl("cpu", "4", "memory", "16Gi", "pods", "110", "ephemeral-storage", "100Gi", "hugepages-1Gi", "0"),
				Allocatable: rl("cpu", "3800m", "memory", "15564Mi", "pods", "110", "ephemeral-storage", "95Gi", "hugepages-1Gi", "0"),
			},
		}
	}
	capacity := map[string]int64{"cpu": 4000, "memory": 16 << 30, "pods": 110, "ephemeral-storage": 100 << 30, "hugepages-1Gi": 0}
	allocatable := map[string]int64{"cpu": 3800, "memory": 15564 << 20, "pods": 110, "ephemeral-storage": 95 << 30, "hugepages-1Gi": 0}
	tests := []struct {
		name               string
		labels             map[string]string
		zone, instanceType string
	}{
		{"no topology labels", nil, "", ""},
		{"stable labels", map[string]string{
			corev1.LabelTopologyZone: "eu-west-1a", corev1.LabelFailureDomainBetaZone: "old-zone",
			corev1.LabelInstanceTypeStable: "m7i.xlarge", corev1.LabelInstanceType: "old-type",
		}, "eu-west-1a", "m7i.xlarge"},
		{"beta labels as fallback", map[string]string{
			corev1.LabelFailureDomainBetaZone: "us-east-1b", corev1.LabelInstanceType: "n2-standard-4",
		}, "us-east-1b", "n2-standard-4"},
		{"empty stable label falls back", map[string]string{
			corev1.LabelTopologyZone: "", corev1.LabelFailureDomainBetaZone: "z1",
		}, "z1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := catalog.NodeRecord{
				Name: "node-a", UID: "uid-node-a", Labels: tt.labels, Capacity: capacity, Allocatable: allocatable,
				Zone: tt.zone, InstanceType: tt.instanceType, FirstSeen: invCreated, LastSeen: invT0,
			}
			if diff := cmp.Diff(want, nodeRecord(node(tt.labels), invT0)); diff != "" {
				t.Errorf("nodeRecord (-want +got):\n%s", diff)
			}
		})
	}
}

// --- handlers, called directly ---

func TestHandlersDirect(t *testing.T) {
	t.Parallel()
	w := newFakeCatalog()
	inv := testFeed(t, w)
	pod := newPod("p", withLabels("app", "web"))
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "uid-node-a"}}

	inv.podChanged(nil, pod)
	same := pod.DeepCopy()
	same.Status.Phase = corev1.PodRunning // not recorded: no write
	inv.podChanged(pod, same)
	if got := len(w.podUpserts("uid-p")); got != 1 {
		t.Fatalf("upserts after add and a no-op update = %d, want 1", got)
	}

	// A failed write makes the next update write even if nothing recorded changed.
	w.setErr(errors.New("queue full"))
	relabelled := same.DeepCopy()
	relabelled.Labels["tier"] = "front"
	inv.podChanged(same, relabelled)
	w.setErr(nil)
	again := relabelled.DeepCopy()
	again.Status.Phase = corev1.PodSucceeded
	inv.podChanged(relabelled, again)
	ups := w.podUpserts("uid-p")
	if len(ups) != 2 || !maps.Equal(ups[1].Labels, relabelled.Labels) {
		t.Fatalf("upserts after a failed write and a no-op update = %+v, want 2, the last with the new labels", ups)
	}

	// A tombstone (the watch missed the deletion) is a deletion too.
	inv.podDeleted(cache.DeletedFinalStateUnknown{Key: "shop/p", Obj: again})
	inv.nodeChanged(nil, node)
	inv.nodeChanged(node, node.DeepCopy())
	inv.nodeDeleted(cache.DeletedFinalStateUnknown{Key: "node-a", Obj: node})
	inv.podDeleted(cache.DeletedFinalStateUnknown{Key: "shop/q", Obj: "not a pod"}) // logged, ignored

	want := []fakeOp{
		{kind: "deletePod", key: "uid-p", at: invT0},
		{kind: "upsertNode", key: "node-a", at: invT0},
		{kind: "deleteNode", key: "node-a", at: invT0},
	}
	if diff := cmp.Diff(want, w.opsSince(2), cmp.AllowUnexported(fakeOp{})); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
}

func TestResyncSettlesOwners(t *testing.T) {
	t.Parallel()
	w := newFakeCatalog()
	inv := testFeed(t, w)
	// Informers that never run: Resync only reads their stores.
	inv.pods = cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Pod{}, 0, cache.Indexers{})
	inv.nodes = cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Node{}, 0, cache.Indexers{})
	pod := newPod("api-5f6d8-y2", withOwner(controllerRef("apps/v1", "ReplicaSet", "api-5f6d8", "uid-api-rs")))
	for _, obj := range []any{pod, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}} {
		store := inv.pods.GetStore()
		if _, ok := obj.(*corev1.Node); ok {
			store = inv.nodes.GetStore()
		}
		if err := store.Add(obj); err != nil {
			t.Fatal(err)
		}
	}

	if err := inv.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := w.lastPod(pod.UID).Owner; got != (catalog.Owner{Kind: "ReplicaSet", Name: "api-5f6d8"}) {
		t.Errorf("owner before the ReplicaSet is cached = %v, want ReplicaSet/api-5f6d8", got)
	}
	deploy := controllerRef("apps/v1", "Deployment", "api", "uid-api")
	rsIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := rsIdx.Add(replicaSet("api-5f6d8", "uid-api-rs", &deploy)); err != nil {
		t.Fatal(err)
	}
	inv.rs = appsv1listers.NewReplicaSetLister(rsIdx)
	if err := inv.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := w.lastPod(pod.UID).Owner; got != (catalog.Owner{Kind: "Deployment", Name: "api"}) {
		t.Errorf("owner after the ReplicaSet is cached = %v, want Deployment/api", got)
	}
	for _, op := range w.allOps() {
		if op.kind != "upsertPod" && op.kind != "upsertNode" {
			t.Errorf("Resync made a %s call for %s; it only upserts", op.kind, op.key)
		}
	}
	if got := len(w.allOps()); got != 4 {
		t.Errorf("Resync twice over one pod and one node made %d calls, want 4", got)
	}

	w.setErr(catalog.ErrClosed)
	if err := inv.Resync(t.Context()); !errors.Is(err, catalog.ErrClosed) {
		t.Errorf("Resync into a closed catalog = %v, want ErrClosed", err)
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	t.Parallel()
	factory := informers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0)
	full := factoryConfig(factory)
	tests := []struct {
		name string
		cat  Catalog
		cfg  func(c *Config)
	}{
		{"no catalog", nil, func(*Config) {}},
		{"no pod informer", newFakeCatalog(), func(c *Config) { c.Pods = nil }},
		{"no node informer", newFakeCatalog(), func(c *Config) { c.Nodes = nil }},
		{"no ReplicaSets", newFakeCatalog(), func(c *Config) { c.ReplicaSets = nil }},
		{"no Jobs", newFakeCatalog(), func(c *Config) { c.Jobs = nil }},
		{"negative repair period", newFakeCatalog(), func(c *Config) { c.RepairEvery = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := full
			tt.cfg(&cfg)
			if _, err := New(tt.cat, cfg, testlog.New(t), nil); err == nil {
				t.Error("New succeeded")
			}
		})
	}
	if _, err := New(newFakeCatalog(), full, testlog.New(t), prometheus.NewRegistry()); err != nil {
		t.Errorf("New with every dependency = %v", err)
	}
}

// --- handlers driven by real informers over a fake clientset ---

func TestInventoryInformers(t *testing.T) {
	t.Parallel()
	deployRef := controllerRef("apps/v1", "Deployment", "web", "uid-deploy")
	cronRef := controllerRef("batch/v1", "CronJob", "nightly", "uid-cron")
	// NewSimpleClientset rather than NewClientset: the latter builds a server-side-apply type
	// converter that costs about a second under -race, and these tests apply nothing.
	client := fake.NewSimpleClientset(
		replicaSet("web-7d4b9c", "uid-rs", &deployRef),
		job("nightly-1", "uid-job", &cronRef),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "uid-node-a",
			Labels: map[string]string{corev1.LabelTopologyZone: "z1"}}},
		newPod("existing", withOwner(controllerRef("batch/v1", "Job", "nightly-1", "uid-job"))),
	)
	factory := informers.NewSharedInformerFactory(client, 0)
	w := newFakeCatalog()
	inv, err := New(w, withNow(factoryConfig(factory), func() time.Time { return invT0 }), testlog.New(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run = %v", err)
		}
		factory.Shutdown() // waits for the informers' and handlers' goroutines
	})
	// Run adds its handlers once the ReplicaSet and Job caches have synced, so that the
	// replayed initial list resolves every owner.
	factory.Start(ctx.Done())
	go func() { runErr <- inv.Run(ctx) }()
	w.waitFor(t, "the feed in sync", func() bool { return inv.Check() == nil })
	if !w.has(fakeOp{kind: "reconcilePods", key: "uid-existing", at: invT0}) {
		t.Error("no reconcile of the initial pod list")
	}
	w.waitFor(t, "the initial list's pod and node", func() bool {
		return len(w.podUpserts("uid-existing")) == 1 && len(w.nodeUpserts("node-a")) == 1
	})
	if got := w.lastPod("uid-existing").Owner; got != (catalog.Owner{Kind: "CronJob", Name: "nightly"}) {
		t.Errorf("owner of the listed pod = %v, want CronJob/nightly", got)
	}
	if got := w.lastNode("node-a").Zone; got != "z1" {
		t.Errorf("zone = %q, want z1", got)
	}

	pods := client.CoreV1().Pods("shop")
	// Add: a Deployment's pod.
	web := newPod("web-7d4b9c-x1", withLabels("app", "web"),
		withOwner(controllerRef("apps/v1", "ReplicaSet", "web-7d4b9c", "uid-rs")),
		withContainers(ctr("app", rl("cpu", "250m", "memory", "256Mi"), rl("memory", "256Mi"))),
		withQOS(corev1.PodQOSBurstable)) // the API server sets it; the fake clientset does not
	web, err = pods.Create(ctx, web, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the new pod", func() bool { return len(w.podUpserts(web.UID)) == 1 })
	want := catalog.PodRecord{
		UID: string(web.UID), Namespace: "shop", Name: web.Name, Node: "node-a",
		Labels: map[string]string{"app": "web"},
		Owner:  catalog.Owner{Kind: "Deployment", Name: "web"}, Controller: catalog.Owner{Kind: "ReplicaSet", Name: "web-7d4b9c"},
		QoSClass: "Burstable",
		Containers: []catalog.ContainerSpec{{Name: "app", Requests: map[string]int64{"cpu": 250, "memory": 256 << 20},
			Limits: map[string]int64{"memory": 256 << 20}}},
		FirstSeen: invCreated, LastSeen: invT0,
	}
	if diff := cmp.Diff(want, w.lastPod(web.UID)); diff != "" {
		t.Errorf("added pod (-want +got):\n%s", diff)
	}

	// Update: a status-only change is not written; a resize is.
	web.Status.Phase = corev1.PodRunning
	if web, err = pods.UpdateStatus(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	web.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("500m")
	if web, err = pods.Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the resized pod", func() bool { return len(w.podUpserts(web.UID)) >= 2 })
	if ups := w.podUpserts(web.UID); len(ups) != 2 || ups[1].Containers[0].Requests["cpu"] != 500 {
		t.Errorf("upserts after a status change and a resize = %+v, want 2, the last with 500 millicores", ups)
	}

	// A pod whose ReplicaSet is not cached yet gets the ReplicaSet as owner; the update after
	// the ReplicaSet arrives records the Deployment even though the pod itself did not change.
	api := newPod("api-5f6d8-y2", withLabels(appsv1.DefaultDeploymentUniqueLabelKey, "5f6d8"),
		withOwner(controllerRef("apps/v1", "ReplicaSet", "api-5f6d8", "uid-api-rs")))
	if api, err = pods.Create(ctx, api, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the pod of an unknown ReplicaSet", func() bool { return len(w.podUpserts(api.UID)) == 1 })
	if got := w.lastPod(api.UID).Owner; got != (catalog.Owner{Kind: "ReplicaSet", Name: "api-5f6d8"}) {
		t.Errorf("owner before the ReplicaSet is cached = %v, want ReplicaSet/api-5f6d8", got)
	}
	apiDeploy := controllerRef("apps/v1", "Deployment", "api", "uid-api")
	if _, err := client.AppsV1().ReplicaSets("shop").Create(ctx, replicaSet("api-5f6d8", "uid-api-rs", &apiDeploy), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the ReplicaSet in the lister", func() bool {
		_, err := inv.rs.ReplicaSets("shop").Get("api-5f6d8")
		return err == nil
	})
	api.Status.Phase = corev1.PodRunning
	if api, err = pods.UpdateStatus(ctx, api, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the pod's resolved owner", func() bool { return len(w.podUpserts(api.UID)) == 2 })
	if got := w.lastPod(api.UID).Owner; got != (catalog.Owner{Kind: "Deployment", Name: "api"}) {
		t.Errorf("owner after the ReplicaSet is cached = %v, want Deployment/api", got)
	}

	// Nodes: an allocatable change is written, a deletion recorded.
	nodes := client.CoreV1().Nodes()
	n, err := nodes.Get(ctx, "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Allocatable = rl("cpu", "1900m")
	if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the node update", func() bool { return len(w.nodeUpserts("node-a")) == 2 })
	if got := w.lastNode("node-a").Allocatable; !maps.Equal(got, map[string]int64{"cpu": 1900}) {
		t.Errorf("allocatable = %v, want cpu 1900", got)
	}

	// Resync writes every cached object again and deletes nothing.
	before := len(w.allOps())
	if err := inv.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	var resynced []string
	for _, op := range w.opsSince(before) {
		resynced = append(resynced, op.kind+" "+op.key)
	}
	slices.Sort(resynced)
	wantResync := []string{"upsertNode node-a", "upsertPod " + string(api.UID), "upsertPod uid-existing", "upsertPod " + string(web.UID)}
	slices.Sort(wantResync)
	if diff := cmp.Diff(wantResync, resynced); diff != "" {
		t.Errorf("Resync ops (-want +got):\n%s", diff)
	}

	// Delete.
	if err := pods.Delete(ctx, web.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := nodes.Delete(ctx, "node-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the deletions", func() bool {
		return w.has(fakeOp{kind: "deletePod", key: string(web.UID), at: invT0}) &&
			w.has(fakeOp{kind: "deleteNode", key: "node-a", at: invT0})
	})
}

func TestResyncStopsWithContext(t *testing.T) {
	t.Parallel()
	client := fake.NewSimpleClientset(newPod("p"))
	factory := informers.NewSharedInformerFactory(client, 0)
	inv, err := New(newFakeCatalog(), factoryConfig(factory), testlog.New(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		factory.Shutdown()
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), factory.Core().V1().Pods().Informer().HasSynced) {
		t.Fatal("caches did not sync")
	}
	cancel()
	if err := inv.Resync(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Resync after cancel = %v, want context.Canceled", err)
	}
}

// --- fake catalog ---

type fakeOp struct {
	kind string // upsertPod, upsertNode, deletePod, deleteNode
	key  string // UID or node name
	at   time.Time
	pod  catalog.PodRecord
	node catalog.NodeRecord
}

// fakeCatalog records every call. It signals changed after each, so that tests wait on a
// channel instead of sleeping.
type fakeCatalog struct {
	changed chan struct{} // capacity 1

	mu     sync.Mutex // guards ops, err, stats, calls and health
	ops    []fakeOp
	err    error // returned (and the call not recorded) while set
	stats  catalog.Stats
	calls  int // Stats calls
	health error
}

var _ Catalog = (*fakeCatalog)(nil)

func newFakeCatalog() *fakeCatalog { return &fakeCatalog{changed: make(chan struct{}, 1)} }

func (f *fakeCatalog) record(op fakeOp) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.ops = append(f.ops, op)
	select {
	case f.changed <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeCatalog) UpsertPod(rec catalog.PodRecord) error {
	// Deep-copy the maps, as the real catalog does: they belong to the informer's cache.
	rec.Labels = maps.Clone(rec.Labels)
	rec.Containers = slices.Clone(rec.Containers)
	for i := range rec.Containers {
		rec.Containers[i].Requests = maps.Clone(rec.Containers[i].Requests)
		rec.Containers[i].Limits = maps.Clone(rec.Containers[i].Limits)
	}
	return f.record(fakeOp{kind: "upsertPod", key: rec.UID, at: rec.LastSeen, pod: rec})
}

func (f *fakeCatalog) UpsertNode(rec catalog.NodeRecord) error {
	rec.Labels = maps.Clone(rec.Labels)
	return f.record(fakeOp{kind: "upsertNode", key: rec.Name, at: rec.LastSeen, node: rec})
}

func (f *fakeCatalog) MarkPodDeleted(uid string, at time.Time) error {
	return f.record(fakeOp{kind: "deletePod", key: uid, at: at})
}

func (f *fakeCatalog) MarkNodeDeleted(name string, at time.Time) error {
	return f.record(fakeOp{kind: "deleteNode", key: name, at: at})
}

// ReconcilePods records one reconcilePods op per present UID (key "" for an empty list).
func (f *fakeCatalog) ReconcilePods(present []string, at time.Time) error {
	return f.reconcile("reconcilePods", present, at)
}

func (f *fakeCatalog) ReconcileNodes(present []string, at time.Time) error {
	return f.reconcile("reconcileNodes", present, at)
}

func (f *fakeCatalog) reconcile(kind string, present []string, at time.Time) error {
	if len(present) == 0 {
		present = []string{""}
	}
	for _, k := range slices.Sorted(slices.Values(present)) {
		if err := f.record(fakeOp{kind: kind, key: k, at: at}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeCatalog) Stats() catalog.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.stats
}

func (f *fakeCatalog) Health() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

func (f *fakeCatalog) setStats(s catalog.Stats, health error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats, f.health = s, health
}

func (f *fakeCatalog) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeCatalog) allOps() []fakeOp {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// opsSince returns the ops after the first n, without their records.
func (f *fakeCatalog) opsSince(n int) []fakeOp {
	var out []fakeOp
	for _, op := range f.allOps()[n:] {
		out = append(out, fakeOp{kind: op.kind, key: op.key, at: op.at})
	}
	return out
}

func (f *fakeCatalog) has(want fakeOp) bool {
	return slices.ContainsFunc(f.allOps(), func(op fakeOp) bool {
		return op.kind == want.kind && op.key == want.key && op.at.Equal(want.at)
	})
}

func (f *fakeCatalog) podUpserts(uid types.UID) []catalog.PodRecord {
	var out []catalog.PodRecord
	for _, op := range f.allOps() {
		if op.kind == "upsertPod" && op.key == string(uid) {
			out = append(out, op.pod)
		}
	}
	return out
}

func (f *fakeCatalog) nodeUpserts(name string) []catalog.NodeRecord {
	var out []catalog.NodeRecord
	for _, op := range f.allOps() {
		if op.kind == "upsertNode" && op.key == name {
			out = append(out, op.node)
		}
	}
	return out
}

func (f *fakeCatalog) lastPod(uid types.UID) catalog.PodRecord {
	ups := f.podUpserts(uid)
	if len(ups) == 0 {
		return catalog.PodRecord{}
	}
	return ups[len(ups)-1]
}

func (f *fakeCatalog) lastNode(name string) catalog.NodeRecord {
	ups := f.nodeUpserts(name)
	if len(ups) == 0 {
		return catalog.NodeRecord{}
	}
	return ups[len(ups)-1]
}

// waitFor waits until cond holds, re-checking after every recorded call and at least every
// 50ms (conditions on listers change without a call), for at most 10s.
func (f *fakeCatalog) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-f.changed:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; catalog calls: %+v", what, f.opsSince(0))
		}
	}
}
