package fleet

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// NodeObject is node i as its kubelet would register it: Ready, its address 127.0.0.1 and
// its kubelet port in status.daemonEndpoints.
func NodeObject(i, port int) *corev1.Node {
	name := NodeName(i)
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
			"topology.kubernetes.io/zone": "zone-" + strconv.Itoa(i%3), "node.kubernetes.io/instance-type": "fleet.8xlarge",
		}},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: name}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", OperatingSystem: "linux", Architecture: "amd64"},
		},
	}
}

// PodObject is pod p, owned by its Deployment's ReplicaSet (rs), placed on its node, with
// its template's requests (a little above the mean usage of the Deployment's first pod) and
// limits twice that: replicas of one Deployment have the same requests, as they do when a
// Deployment makes them.
func (s Spec) PodObject(p Pod, rs *appsv1.ReplicaSet) *corev1.Pod {
	tmpl := s.Pod(p.Deployment) // pod g = d is the Deployment's first
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.Namespace, Name: p.Name,
			Labels: map[string]string{"app": DeploymentName(p.Deployment), "pod-template-hash": PodTemplateHash},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{NodeName: NodeName(p.Node)},
	}
	for _, c := range tmpl.Containers {
		cpu := resource.NewMilliQuantity(int64(math.Ceil(c.CPU*1200)), resource.DecimalSI)
		mem := resource.NewQuantity(int64(c.Memory*1.25)/(1<<20)*(1<<20), resource.BinarySI)
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name: c.Name, Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: *cpu, corev1.ResourceMemory: *mem},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: mul2(*cpu), corev1.ResourceMemory: mul2(*mem)},
			},
		})
	}
	return pod
}

func mul2(q resource.Quantity) resource.Quantity {
	q.Add(q.DeepCopy())
	return q
}

// running sets pod's status as a kubelet reports a running pod.
func running(pod *corev1.Pod, p Pod) {
	start := metav1.NewTime(p.Start)
	pod.Status.Phase = corev1.PodRunning
	pod.Status.HostIP = "127.0.0.1"
	pod.Status.PodIP = fmt.Sprintf("10.%d.%d.%d", 64+p.Index>>16&63, p.Index>>8&255, p.Index&255)
	pod.Status.StartTime = &start
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: start},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: start},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: start},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: start},
	}
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptr.To(true),
			ContainerID: "containerd://" + strconv.FormatUint(uint64(p.Index)<<8|uint64(len(pod.Status.ContainerStatuses)), 16),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}},
		})
	}
}

// Create creates the fleet's objects in the API server: its namespaces, Deployments and their
// ReplicaSets, nodes (ports maps node names to their kubelet ports), and pods, each pod set
// Running through the status subresource. Nothing reconciles them: the cluster must run no
// deployment or replicaset controller (they would replace the pods) and no node lifecycle
// controller (nothing renews the nodes' leases). workers requests run at once; progress, if
// not nil, gets a line per step.
func (s Spec) Create(ctx context.Context, client kubernetes.Interface, ports map[string]int, workers int, progress func(format string, args ...any)) error {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return err
	}
	if progress == nil {
		progress = func(string, ...any) {}
	}
	begin := time.Now()
	for k := range s.Namespaces {
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: NamespaceName(k)}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("fleet: create namespace: %w", err)
		}
	}
	perDeployment := make([]int32, s.Deployments)
	for g := range s.Pods() {
		perDeployment[g%s.Deployments]++
	}
	rss := make([]*appsv1.ReplicaSet, s.Deployments)
	if err := parallel(ctx, workers, s.Deployments, func(ctx context.Context, d int) error {
		rs, err := s.createWorkload(ctx, client, d, perDeployment[d])
		rss[d] = rs
		return err
	}); err != nil {
		return err
	}
	for i := range s.Nodes {
		if _, ok := ports[NodeName(i)]; !ok {
			return fmt.Errorf("fleet: no port for %s", NodeName(i))
		}
	}
	if err := parallel(ctx, workers, s.Nodes, func(ctx context.Context, i int) error {
		if _, err := client.CoreV1().Nodes().Create(ctx, NodeObject(i, ports[NodeName(i)]), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("fleet: create node %s: %w", NodeName(i), err)
		}
		return nil
	}); err != nil {
		return err
	}
	progress("%d namespaces, %d deployments, %d nodes in %s", s.Namespaces, s.Deployments, s.Nodes, time.Since(begin).Round(time.Millisecond))
	var done atomic.Int64
	podsBegin := time.Now()
	err := parallel(ctx, workers, s.Pods(), func(ctx context.Context, g int) error {
		p := s.Pod(g)
		created, err := client.CoreV1().Pods(p.Namespace).Create(ctx, s.PodObject(p, rss[p.Deployment]), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("fleet: create pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		running(created, p)
		if _, err := client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("fleet: set pod %s/%s running: %w", p.Namespace, p.Name, err)
		}
		if n := done.Add(1); n%10000 == 0 {
			progress("%d of %d pods running (%.0f/s)", n, s.Pods(), float64(n)/time.Since(podsBegin).Seconds())
		}
		return nil
	})
	if err != nil {
		return err
	}
	progress("%d pods running in %s (%.0f/s)", s.Pods(), time.Since(podsBegin).Round(time.Millisecond), float64(s.Pods())/time.Since(podsBegin).Seconds())
	return nil
}

func (s Spec) createWorkload(ctx context.Context, client kubernetes.Interface, d int, replicas int32) (*appsv1.ReplicaSet, error) {
	ns, name := s.NamespaceOf(d), DeploymentName(d)
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	dep, err := client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Selector: sel, Template: tmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("fleet: create deployment %s/%s: %w", ns, name, err)
	}
	rsTmpl := tmpl.DeepCopy()
	rsTmpl.Labels["pod-template-hash"] = PodTemplateHash
	rs, err := client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ReplicaSetName(d), Labels: rsTmpl.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: dep.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: rsTmpl.Labels}, Template: *rsTmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("fleet: create replicaset %s/%s: %w", ns, ReplicaSetName(d), err)
	}
	return rs, nil
}

// UIDs lists the fleet's pods and maps namespace/name to their UIDs.
func UIDs(ctx context.Context, client kubernetes.Interface) (map[string]types.UID, error) {
	m := map[string]types.UID{}
	opts := metav1.ListOptions{Limit: 5000}
	for {
		l, err := client.CoreV1().Pods("").List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("fleet: list pods: %w", err)
		}
		for _, p := range l.Items {
			m[p.Namespace+"/"+p.Name] = p.UID
		}
		if l.Continue == "" {
			return m, nil
		}
		opts.Continue = l.Continue
	}
}

// parallel runs f(0) … f(n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, f func(context.Context, int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(workers, 1))
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error { return f(ctx, i) })
	}
	return g.Wait()
}
