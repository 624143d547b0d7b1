package inventory

import (
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
