package inventory

import (
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// fullPod is a pod as the API server sends it, with the fields TransformPod drops.
func fullPod() *corev1.Pod {
	now := metav1.Now()
	p := newPod("web-1",
		withLabels("app", "web"),
		withOwner(controllerRef("apps/v1", "ReplicaSet", "web-7d4b9c", "uid-rs")),
		withInit(ctr("init", rl("cpu", "50m"), nil), sidecar("proxy", rl("cpu", "10m", "memory", "32Mi"), rl("memory", "64Mi"))),
		withContainers(ctr("app", rl("cpu", "250m", "memory", "256Mi"), rl("cpu", "1", "memory", "256Mi"))),
		withQOS(corev1.PodQOSBurstable))
	p.ResourceVersion = "42"
	p.DeletionTimestamp = &now
	p.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	p.Spec.Volumes = []corev1.Volume{{Name: "data"}}
	p.Spec.Containers[0].Image = "registry.example/web:1.2.3"
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "prod"}}
	p.Spec.Containers[0].LivenessProbe = &corev1.Probe{InitialDelaySeconds: 5}
	p.Spec.Resources = &corev1.ResourceRequirements{Limits: rl("cpu", "2")}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true, RestartCount: 3}}
	p.Status.PodIP = "10.0.0.7"
	return p
}

func TestTransformPod(t *testing.T) {
	t.Parallel()
	full := fullPod()
	obj, err := TransformPod(full.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	slim := obj.(*corev1.Pod)

	// Everything the catalog records is kept: the records are equal.
	f := testFeed(t, nil)
	wantRec, _ := f.podRecord(full, invT0)
	gotRec, _ := f.podRecord(slim, invT0)
	if diff := cmp.Diff(wantRec, gotRec); diff != "" {
		t.Errorf("record of the stripped pod (-full +stripped):\n%s", diff)
	}
	// What the scraper and the metrics API read is kept.
	if slim.UID != full.UID || slim.Namespace != full.Namespace || slim.Name != full.Name ||
		slim.Status.Phase != corev1.PodRunning || !cmp.Equal(slim.Labels, full.Labels) {
		t.Errorf("identity, labels or phase lost: %+v", slim.ObjectMeta)
	}
	// What nobody reads is gone.
	for what, gone := range map[string]bool{
		"annotations":        slim.Annotations == nil,
		"managed fields":     slim.ManagedFields == nil,
		"volumes":            slim.Spec.Volumes == nil,
		"image":              slim.Spec.Containers[0].Image == "",
		"env":                slim.Spec.Containers[0].Env == nil,
		"probes":             slim.Spec.Containers[0].LivenessProbe == nil,
		"conditions":         slim.Status.Conditions == nil,
		"container statuses": slim.Status.ContainerStatuses == nil,
		"pod IP":             slim.Status.PodIP == "",
	} {
		if !gone {
			t.Errorf("TransformPod kept the %s", what)
		}
	}

	// A tombstone passes unchanged.
	tomb := cache.DeletedFinalStateUnknown{Key: "shop/web-1", Obj: slim}
	if got, err := TransformPod(tomb); err != nil || got != any(tomb) {
		t.Errorf("TransformPod(tombstone) = %v, %v; want it unchanged", got, err)
	}
}

func TestPodUIDs(t *testing.T) {
	t.Parallel()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	pending := newPod("starting")
	pending.Status.Phase = corev1.PodPending
	done := newPod("finished")
	done.Status.Phase = corev1.PodSucceeded
	unscheduled := newPod("unscheduled")
	unscheduled.Spec.NodeName = ""
	elsewhere := newPod("elsewhere")
	elsewhere.Spec.NodeName = "node-b"
	for _, p := range []*corev1.Pod{fullPod(), pending, done, unscheduled, elsewhere} {
		// The cache holds what the informer's transform kept: spec.nodeName must survive it.
		slim, err := TransformPod(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := idx.Add(slim); err != nil {
			t.Fatal(err)
		}
	}
	uids := PodUIDs{Lister: corev1listers.NewPodLister(idx)}
	tests := []struct {
		name, ns, pod string
		wantUID       string
		wantNode      string
		wantOK        bool
	}{
		{"running", "shop", "web-1", "uid-web-1", "node-a", true},
		{"pending has its UID", "shop", "starting", "uid-starting", "node-a", true},
		{"succeeded has its UID", "shop", "finished", "uid-finished", "node-a", true},
		{"not scheduled", "shop", "unscheduled", "uid-unscheduled", "", true},
		{"another node", "shop", "elsewhere", "uid-elsewhere", "node-b", true},
		{"unknown name", "shop", "unknown", "", "", false},
		{"same name, another namespace", "other", "web-1", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid, node, ok := uids.PodNode(tt.ns, tt.pod)
			if uid != tt.wantUID || node != tt.wantNode || ok != tt.wantOK {
				t.Errorf("PodNode(%s, %s) = %q, %q, %v; want %q, %q, %v", tt.ns, tt.pod, uid, node, ok, tt.wantUID, tt.wantNode, tt.wantOK)
			}
		})
	}
}

// TestTransformPodShares: replicas of one template share their slimmed containers, labels
// and owner references; a replica that differs in any of them gets its own, equal to what
// it had; and a full table starts again rather than growing.
func TestTransformPodShares(t *testing.T) {
	t.Parallel()
	slim := func(p *corev1.Pod) *corev1.Pod {
		t.Helper()
		obj, err := TransformPod(p)
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*corev1.Pod)
	}
	a, b := fullPod(), fullPod()
	b.Name = "web-2"
	sa, sb := slim(a), slim(b)
	if &sa.Spec.Containers[0] != &sb.Spec.Containers[0] || &sa.Spec.InitContainers[0] != &sb.Spec.InitContainers[0] {
		t.Error("two replicas of one template do not share their containers")
	}
	if &sa.OwnerReferences[0] != &sb.OwnerReferences[0] {
		t.Error("two replicas of one ReplicaSet do not share their owner references")
	}
	if reflect.ValueOf(sa.Labels).UnsafePointer() != reflect.ValueOf(sb.Labels).UnsafePointer() {
		t.Error("two replicas with equal labels do not share them")
	}

	for what, change := range map[string]func(*corev1.Pod){
		"a request": func(p *corev1.Pod) { p.Spec.Containers[0].Resources.Requests = rl("cpu", "300m", "memory", "256Mi") },
		"a limit":   func(p *corev1.Pod) { p.Spec.InitContainers[1].Resources.Limits = rl("memory", "128Mi") },
		"a name":    func(p *corev1.Pod) { p.Spec.Containers[0].Name = "api" },
		"a label":   func(p *corev1.Pod) { p.Labels = map[string]string{"app": "web", "extra": "1"} },
		"an owner":  func(p *corev1.Pod) { p.OwnerReferences[0].UID = "uid-other" },
	} {
		p := fullPod()
		change(p)
		want := slimmed(p)
		got := slim(p)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s changed: the transform kept another pod's parts (-want +got):\n%s", what, diff)
		}
	}

	in := newInterner(2)
	for i, name := range []string{"a", "b", "c"} {
		in.labels(map[string]string{"app": name})
		if got, want := len(in.lbls), min(i+1, 2); got > want || got == 0 {
			t.Errorf("after %d distinct label sets the table holds %d, want at most %d", i+1, got, want)
		}
	}
}

// slimmed is what TransformPod keeps of p, built field by field without sharing.
func slimmed(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp, Labels: p.Labels, OwnerReferences: p.OwnerReferences},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName, Resources: p.Spec.Resources},
		Status: corev1.PodStatus{Phase: p.Status.Phase, QOSClass: p.Status.QOSClass},
	}
	for _, c := range p.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy})
	}
	for _, c := range p.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy})
	}
	return out
}
