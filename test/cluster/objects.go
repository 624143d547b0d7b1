package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

const (
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	// MetricsPathAnnotation tells a metrics server where a node's /metrics/resource is:
	// one kwok process serves every node, with the node's name in the path.
	MetricsPathAnnotation = "metrics.k8s.io/resource-metrics-path"
	// UsageCPUAnnotation and UsageMemoryAnnotation set a pod's simulated usage; kwok gives
	// every container of the pod that usage (so the pod's is the sum over containers).
	UsageCPUAnnotation    = "kwok.x-k8s.io/usage-cpu"
	UsageMemoryAnnotation = "kwok.x-k8s.io/usage-memory"
)

// NodeSpec describes a kwok node.
type NodeSpec struct {
	Name   string
	CPU    string // capacity and allocatable, e.g. "32"; default "32"
	Memory string // e.g. "256Gi"; default "256Gi"
	Labels map[string]string
}

// CreateNode creates a node managed by kwok and waits until it is Ready.
func (c *Cluster) CreateNode(ctx context.Context, s NodeSpec) (*corev1.Node, error) {
	if s.CPU == "" {
		s.CPU = "32"
	}
	if s.Memory == "" {
		s.Memory = "256Gi"
	}
	labels := map[string]string{"kubernetes.io/hostname": s.Name, "kubernetes.io/os": "linux", "type": "kwok"}
	for k, v := range s.Labels {
		labels[k] = v
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(s.CPU),
		corev1.ResourceMemory: resource.MustParse(s.Memory),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   s.Name,
			Labels: labels,
			Annotations: map[string]string{
				kwokNodeAnnotation:    "fake",
				MetricsPathAnnotation: "/metrics/nodes/" + s.Name + "/metrics/resource",
			},
		},
		Status: corev1.NodeStatus{Capacity: res, Allocatable: res},
	}
	if _, err := c.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create node %s: %w", s.Name, err)
	}
	var ready *corev1.Node
	err := Poll(ctx, 60*time.Second, 200*time.Millisecond, "node "+s.Name+" Ready", func(ctx context.Context) (bool, error) {
		n, err := c.client.CoreV1().Nodes().Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ready = n
		return NodeReady(n), nil
	})
	return ready, err
}

// Usage is a simulated resource usage, as Kubernetes quantities ("250m", "300Mi").
type Usage struct {
	CPU    string
	Memory string
}

func (u Usage) annotations() map[string]string {
	a := map[string]string{}
	if u.CPU != "" {
		a[UsageCPUAnnotation] = u.CPU
	}
	if u.Memory != "" {
		a[UsageMemoryAnnotation] = u.Memory
	}
	return a
}

// PodSpec describes a pod bound to a kwok node (there is no scheduler).
type PodSpec struct {
	Namespace  string // default "default"
	Name       string
	Node       string
	Containers []string // container names; default one container "app"
	Labels     map[string]string
	// Usage applies to every container of the pod.
	Usage Usage
	// Requests apply to every container.
	Requests corev1.ResourceList
}

func (s PodSpec) podSpec() corev1.PodSpec {
	names := s.Containers
	if len(names) == 0 {
		names = []string{"app"}
	}
	ps := corev1.PodSpec{NodeName: s.Node, TerminationGracePeriodSeconds: ptr.To[int64](0)}
	for _, n := range names {
		ps.Containers = append(ps.Containers, corev1.Container{
			Name:      n,
			Image:     "fake-image",
			Resources: corev1.ResourceRequirements{Requests: s.Requests},
		})
	}
	return ps
}

// CreatePod creates a pod on a kwok node and waits until it is Running.
func (c *Cluster) CreatePod(ctx context.Context, s PodSpec) (*corev1.Pod, error) {
	if s.Namespace == "" {
		s.Namespace = "default"
	}
	if err := c.EnsureNamespace(ctx, s.Namespace); err != nil {
		return nil, err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, Annotations: s.Usage.annotations()},
		Spec:       s.podSpec(),
	}
	if _, err := c.client.CoreV1().Pods(s.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", s.Namespace, s.Name, err)
	}
	var running *corev1.Pod
	err := Poll(ctx, 60*time.Second, 200*time.Millisecond, "pod "+s.Namespace+"/"+s.Name+" Running", func(ctx context.Context) (bool, error) {
		p, err := c.client.CoreV1().Pods(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		running = p
		return p.Status.Phase == corev1.PodRunning, nil
	})
	return running, err
}

// SetPodUsage changes a pod's simulated usage. kwok integrates CPU over time, so the
// cumulative counter keeps rising, at the new rate from now on.
func (c *Cluster) SetPodUsage(ctx context.Context, namespace, name string, u Usage) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": u.annotations()}})
	if err != nil {
		return fmt.Errorf("marshal patch: %w", err)
	}
	if _, err := c.client.CoreV1().Pods(namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch usage of %s/%s: %w", namespace, name, err)
	}
	return nil
}

// DeploymentSpec describes a Deployment whose pods land on one kwok node.
type DeploymentSpec struct {
	Namespace string
	Name      string
	Node      string
	Replicas  int32
	Usage     Usage               // per container, through the pod template's annotations
	Requests  corev1.ResourceList // per container
}

// CreateDeployment creates a Deployment (the controller manager creates its pods).
func (c *Cluster) CreateDeployment(ctx context.Context, s DeploymentSpec) (*appsv1.Deployment, error) {
	if s.Namespace == "" {
		s.Namespace = "default"
	}
	if err := c.EnsureNamespace(ctx, s.Namespace); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": s.Name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(s.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: s.Usage.annotations()},
				Spec:       PodSpec{Node: s.Node, Requests: s.Requests}.podSpec(),
			},
		},
	}
	created, err := c.client.AppsV1().Deployments(s.Namespace).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create deployment %s/%s: %w", s.Namespace, s.Name, err)
	}
	return created, nil
}

// HPASpec describes a HorizontalPodAutoscaler of a Deployment on its pods' average CPU
// utilisation, the metrics.k8s.io reading every HPA test uses.
type HPASpec struct {
	Namespace   string
	Name        string // of the HPA; the Deployment's when Deployment is empty
	Deployment  string
	MinReplicas int32
	MaxReplicas int32
	Utilization int32 // the target, in percent of the CPU request
}

// CreateHPA creates the HorizontalPodAutoscaler s describes.
func (c *Cluster) CreateHPA(ctx context.Context, s HPASpec) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	if s.Deployment == "" {
		s.Deployment = s.Name
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: s.Deployment},
			MinReplicas:    ptr.To(s.MinReplicas),
			MaxReplicas:    s.MaxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name:   corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To(s.Utilization)},
			}}},
		},
	}
	created, err := c.client.AutoscalingV2().HorizontalPodAutoscalers(s.Namespace).Create(ctx, hpa, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create hpa %s/%s: %w", s.Namespace, s.Name, err)
	}
	return created, nil
}

// SetDeploymentUsage changes the usage in a Deployment's pod template. That is a rollout:
// the Deployment replaces its pods with new ones at the new usage.
func (c *Cluster) SetDeploymentUsage(ctx context.Context, namespace, name string, u Usage) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": u.annotations()}}}})
	if err != nil {
		return fmt.Errorf("marshal patch: %w", err)
	}
	if _, err := c.client.AppsV1().Deployments(namespace).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch usage of deployment %s/%s: %w", namespace, name, err)
	}
	return nil
}

// EnsureNamespace creates a namespace if it does not exist and waits for its default
// service account (pods need it).
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return c.waitServiceAccount(ctx, name, "default")
}
