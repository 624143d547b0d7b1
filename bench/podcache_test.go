package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hindsight-metrics/hindsight/inventory"
	localcluster "github.com/hindsight-metrics/hindsight/test/cluster"
)

// The pod-cache cluster: podCacheApps ReplicaSets in each of podCacheNamespaces
// namespaces, podCachePodsPerRS pods each, spread round-robin over podCacheNodes nodes.
const (
	podCacheNodes      = 30
	podCacheNamespaces = 10
	podCachePodsPerRS  = 100
	// podCacheParallel bounds the setup's concurrent API requests.
	podCacheParallel = 16
	// podCacheSampleEvery, podCacheSampleFor: the heap is sampled every 500ms for at least
	// 20s, and longer (up to podCacheSampleMax) until each process has run a garbage
	// collection since the first sample, so that the minimum is a heap after a GC. Go
	// forces a GC every 2 minutes, so podCacheSampleMax is reached only if that fails.
	podCacheSampleEvery = 500 * time.Millisecond
	podCacheSampleFor   = 20 * time.Second
	podCacheSampleMax   = 150 * time.Second
	// holdFinalizer keeps the benchmark's ReplicaSets in deletion; see createReplicaSet.
	holdFinalizer = "bench.hindsight-metrics.dev/hold"
)

var podCacheApps = []string{"web", "api", "worker"}

// BenchmarkPodCacheHeap measures the heap of Hindsight and of the metrics-server peer once
// their informers hold 3,000 pods. Both run on one local cluster (test/cluster) of 30 Node
// objects and 10 namespaces, whose pods look as a Deployment's look: created through the
// API (so they carry the server's managedFields) by a ReplicaSet owner, with labels, a few
// annotations, two containers with images, environment, requests and limits, probes and
// volume mounts, three volumes besides the service-account token, then set Running with
// conditions and container statuses through the status subresource, as a kubelet does.
//
// The nodes are not kwok's, and have no addresses: nothing scrapes successfully, so both
// heaps hold the informer caches and the process's fixed costs, and no samples.
//
// Once a process's /readyz/metric-informer-sync passes (both servers have that check),
// its go_memstats_heap_alloc_bytes is read from /metrics every 500ms; the minimum (the
// heap right after a GC: about the live heap) and the median are reported, with the
// median RSS, for Hindsight and for the peer, and the ratios Hindsight ÷ metrics-server.
//
// Hindsight is HINDSIGHT_BENCH_BINARY when set, else built from this tree. Run it with
// -benchtime 1x; a run takes about a minute.
func BenchmarkPodCacheHeap(b *testing.B) {
	if testing.Short() {
		b.Skip("skipping: starts a local control plane and creates 3,000 pods")
	}
	c := localcluster.New(b, localcluster.Options{})
	ctx := b.Context()

	start := time.Now()
	sizes, err := createPodCacheCluster(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	setup := time.Since(start)
	pods := podCacheNamespaces * len(podCacheApps) * podCachePodsPerRS
	b.Logf("%d pods Running on %d nodes in %d namespaces, created in %s; JSON bytes per pod as the API returns them: %s",
		pods, podCacheNodes, podCacheNamespaces, setup.Round(100*time.Millisecond), sizes)

	token, err := metricsReaderToken(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	hc, err := caClient(c)
	if err != nil {
		b.Fatal(err)
	}

	bin := os.Getenv("HINDSIGHT_BENCH_BINARY")
	hsStart := time.Now()
	hs, err := c.StartHindsight(ctx, localcluster.HindsightOptions{Binary: bin})
	if err != nil {
		b.Fatal(err)
	}
	hsTarget := target{name: "hindsight", proc: hs.Process, base: fmt.Sprintf("https://127.0.0.1:%d", hs.Port)}
	if err := waitInformersSynced(ctx, hc, token, hsTarget); err != nil {
		b.Fatal(err)
	}
	hsSync := time.Since(hsStart)
	msStart := time.Now()
	ms, err := c.StartMetricsServer(ctx, localcluster.MetricsServerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	msTarget := target{name: "metrics-server", proc: ms.Process, base: fmt.Sprintf("https://127.0.0.1:%d", ms.Port)}
	if err := waitInformersSynced(ctx, hc, token, msTarget); err != nil {
		b.Fatal(err)
	}
	msSync := time.Since(msStart)
	if bin == "" {
		bin = "built from this tree"
	}
	b.Logf("hindsight (%s) synced its informers %s after its start, metrics-server %s %s after its",
		bin, hsSync.Round(100*time.Millisecond), localcluster.MetricsServerVersion, msSync.Round(100*time.Millisecond))

	var h, m heapStats
	for b.Loop() {
		h, m, err = sampleHeaps(ctx, hc, token, hsTarget, msTarget)
		if err != nil {
			b.Fatal(err)
		}
	}
	const mib = 1 << 20
	b.Logf("heap and RSS with %d pods in the informers (MiB; heap sampled every %s for %s)\n"+
		"                 heap min  heap median  RSS median  GCs  samples\n"+
		"hindsight        %8.1f  %11.1f  %10.1f  %3d  %7d\n"+
		"metrics-server   %8.1f  %11.1f  %10.1f  %3d  %7d\n"+
		"ratio            %8.2f  %11.2f  %10.2f",
		pods, podCacheSampleEvery, h.window.Round(100*time.Millisecond),
		h.minHeap/mib, h.medianHeap/mib, h.medianRSS/mib, h.gcs, h.samples,
		m.minHeap/mib, m.medianHeap/mib, m.medianRSS/mib, m.gcs, m.samples,
		h.minHeap/m.minHeap, h.medianHeap/m.medianHeap, h.medianRSS/m.medianRSS)
	b.ReportMetric(h.minHeap/mib, "hindsight-heap-MiB")
	b.ReportMetric(h.medianHeap/mib, "hindsight-heap-median-MiB")
	b.ReportMetric(h.medianRSS/mib, "hindsight-RSS-MiB")
	b.ReportMetric(m.minHeap/mib, "peer-heap-MiB")
	b.ReportMetric(m.medianHeap/mib, "peer-heap-median-MiB")
	b.ReportMetric(m.medianRSS/mib, "peer-RSS-MiB")
	b.ReportMetric(h.minHeap/m.minHeap, "heap-ratio")
	b.ReportMetric(h.medianHeap/m.medianHeap, "heap-median-ratio")
	b.ReportMetric(h.medianRSS/m.medianRSS, "RSS-ratio")
	b.ReportMetric(sizes.full, "pod-JSON-B")
	b.ReportMetric(setup.Seconds(), "setup-s")
}

// podSizes are the JSON bytes of a pod: as the API lists it, without its managedFields,
// and what inventory.TransformPod keeps of it.
type podSizes struct {
	full, noManagedFields, transformed float64
}

func (s podSizes) String() string {
	return fmt.Sprintf("%.0f (%.0f without managedFields, %.0f after inventory.TransformPod)", s.full, s.noManagedFields, s.transformed)
}

// createPodCacheCluster creates the nodes, namespaces, ReplicaSets and Running pods, checks
// that the API lists them all Running, and returns the pods' average sizes.
func createPodCacheCluster(ctx context.Context, c *localcluster.Cluster) (podSizes, error) {
	cfg := c.RESTConfig()
	cfg.QPS = -1 // no client-side rate limit: podCacheParallel bounds the requests
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return podSizes{}, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(podCacheParallel)
	for n := range podCacheNodes {
		g.Go(func() error { return createNode(gctx, client, n) })
	}
	for ns := range podCacheNamespaces {
		g.Go(func() error { return c.EnsureNamespace(gctx, podCacheNamespace(ns)) })
	}
	if err := g.Wait(); err != nil {
		return podSizes{}, err
	}

	rng := rand.New(rand.NewPCG(3000, 30))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(podCacheParallel)
	var created atomic.Int64
	k := 0
	for ns := range podCacheNamespaces {
		for _, app := range podCacheApps {
			rs, err := createReplicaSet(ctx, client, podCacheNamespace(ns), app, randName(rng, 10))
			if err != nil {
				return podSizes{}, err
			}
			for range podCachePodsPerRS {
				pod, i := benchPod(rs, randName(rng, 5), podCacheNodeName(k%podCacheNodes)), k
				k++
				g.Go(func() error {
					if err := createRunningPod(gctx, client, pod, i); err != nil {
						return err
					}
					created.Add(1)
					return nil
				})
			}
		}
	}
	if err := g.Wait(); err != nil {
		return podSizes{}, fmt.Errorf("after %d pods: %w", created.Load(), err)
	}
	return checkPods(ctx, c, k)
}

func podCacheNamespace(i int) string { return fmt.Sprintf("shop-%02d", i) }
func podCacheNodeName(i int) string  { return fmt.Sprintf("node-%03d", i) }

// createNode creates a plain Node object: no kwok annotation (kwok leaves it alone) and no
// addresses (no server scrapes anything outside 127.0.0.1).
func createNode(ctx context.Context, client kubernetes.Interface, i int) error {
	name := podCacheNodeName(i)
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname":           name,
			"kubernetes.io/os":                 "linux",
			"kubernetes.io/arch":               "amd64",
			"node.kubernetes.io/instance-type": "bench.4xlarge",
			"topology.kubernetes.io/zone":      fmt.Sprintf("zone-%c", 'a'+i%3),
		}},
		Status: corev1.NodeStatus{Capacity: res, Allocatable: res},
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}

// createReplicaSet creates the ReplicaSet that owns an app's pods. The garbage collector
// deletes pods whose owner does not exist, and the ReplicaSet controller would create or
// delete pods to match spec.replicas, at the controller manager's 20 requests/s. So the
// ReplicaSet is created with no replicas and then held in deletion by a finalizer: the
// controller does not scale a ReplicaSet being deleted, and the garbage collector still
// sees a live owner. Then spec.replicas is set to the number of pods it will own.
func createReplicaSet(ctx context.Context, client kubernetes.Interface, ns, app, hash string) (*appsv1.ReplicaSet, error) {
	name := app + "-" + hash
	tmpl := benchPodTemplate(ns, app, hash)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Labels: tmpl.Labels, Finalizers: []string{holdFinalizer},
			Annotations: map[string]string{"deployment.kubernetes.io/revision": "7", "deployment.kubernetes.io/desired-replicas": strconv.Itoa(podCachePodsPerRS)},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app, "pod-template-hash": hash}},
			Template: tmpl,
		},
	}
	rsc := client.AppsV1().ReplicaSets(ns)
	if _, err := rsc.Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create replicaset %s/%s: %w", ns, name, err)
	}
	if err := rsc.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		return nil, fmt.Errorf("hold replicaset %s/%s in deletion: %w", ns, name, err)
	}
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, podCachePodsPerRS)
	rs, err := rsc.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("scale replicaset %s/%s: %w", ns, name, err)
	}
	return rs, nil
}

// benchPodTemplate is an app's pod template, as a Deployment's ReplicaSet holds it.
func benchPodTemplate(ns, app, hash string) corev1.PodTemplateSpec {
	image := "registry.example.com/shop/" + app + ":v1.8.3"
	httpProbe := func(path string, delay int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
			InitialDelaySeconds: delay, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3,
		}
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels: map[string]string{
				"app": app, "pod-template-hash": hash,
				"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop",
				"app.kubernetes.io/version": "v1.8.3", "team": ns,
			},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt": "2026-11-30T09:12:44Z",
				"prometheus.io/scrape":              "true",
				"prometheus.io/port":                "9102",
				"checksum/config":                   "3f9a1c0e6b2d47a8e5c1f0b9d8a7e6c5b4a3928170f6e5d4c3b2a19087f6e5d4",
			},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{
					Name:  "app",
					Image: image,
					Args:  []string{"--config=/etc/" + app + "/config.yaml", "--listen=:8080", "--metrics=:9102"},
					Ports: []corev1.ContainerPort{
						{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
						{Name: "metrics", ContainerPort: 9102, Protocol: corev1.ProtocolTCP},
					},
					Env: []corev1.EnvVar{
						fieldEnv("POD_NAME", "metadata.name"),
						fieldEnv("POD_NAMESPACE", "metadata.namespace"),
						fieldEnv("POD_IP", "status.podIP"),
						{Name: "GOMAXPROCS", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.cpu", Divisor: resource.MustParse("1")}}},
						{Name: "LOG_LEVEL", Value: "info"},
						{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: "http://otel-collector.observability.svc:4317"},
						{Name: "DATABASE_URL", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
							LocalObjectReference: corev1.LocalObjectReference{Name: app + "-db"}, Key: "url"}}},
					},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
					},
					LivenessProbe:  httpProbe("/healthz", 10),
					ReadinessProbe: httpProbe("/readyz", 2),
					VolumeMounts: []corev1.VolumeMount{
						{Name: "config", MountPath: "/etc/" + app, ReadOnly: true},
						{Name: "tmp", MountPath: "/tmp"},
						{Name: "logs", MountPath: "/var/log/" + app},
					},
					ImagePullPolicy: corev1.PullIfNotPresent,
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					},
				},
				{
					Name:  "log-shipper",
					Image: "registry.example.com/infra/fluent-bit:3.1.4",
					Args:  []string{"--config=/fluent-bit/etc/fluent-bit.yaml"},
					Env: []corev1.EnvVar{
						fieldEnv("NODE_NAME", "spec.nodeName"),
						{Name: "FLUENT_FORWARD_HOST", Value: "log-aggregator.observability.svc"},
					},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					},
					LivenessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(2020)}},
						PeriodSeconds: 20,
					},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "logs", MountPath: "/var/log/" + app, ReadOnly: true},
						{Name: "shipper-config", MountPath: "/fluent-bit/etc", ReadOnly: true},
					},
					ImagePullPolicy: corev1.PullIfNotPresent,
				},
			},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: app + "-config"}}}},
				{Name: "shipper-config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "fluent-bit-" + app}}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("64Mi"))}}},
				{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			SecurityContext:               &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](10001), FSGroup: ptr.To[int64](10001)},
		},
	}
}

// benchPod is a pod of ReplicaSet rs, named and owned as the ReplicaSet controller names
// and owns its pods, on node.
func benchPod(rs *appsv1.ReplicaSet, suffix, node string) *corev1.Pod {
	tmpl := rs.Spec.Template.DeepCopy()
	pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	pod.Name, pod.Namespace = rs.Name+"-"+suffix, rs.Namespace
	pod.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
	pod.Spec.NodeName = node
	return pod
}

// createRunningPod creates pod k and reports it Running through the status subresource,
// with what a kubelet reports: conditions, IPs, start time and a running status per
// container. The IPs are only strings: nothing connects to them.
func createRunningPod(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, k int) error {
	pods := client.CoreV1().Pods(pod.Namespace)
	p, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	rng := rand.New(rand.NewPCG(uint64(k), 64))
	created := p.CreationTimestamp
	started := metav1.NewTime(created.Add(2 * time.Second))
	ready := metav1.NewTime(created.Add(5 * time.Second))
	podIP := fmt.Sprintf("10.244.%d.%d", k/250, k%250+2)
	nodeNum, _ := strconv.Atoi(strings.TrimPrefix(p.Spec.NodeName, "node-"))
	hostIP := fmt.Sprintf("10.0.%d.%d", nodeNum/250, nodeNum%250+10)
	cond := func(t corev1.PodConditionType, at metav1.Time) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: at}
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, started), cond(corev1.PodInitialized, created),
		cond(corev1.PodReady, ready), cond(corev1.ContainersReady, ready), cond(corev1.PodScheduled, created),
	}
	p.Status.HostIP, p.Status.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
	p.Status.PodIP, p.Status.PodIPs = podIP, []corev1.PodIP{{IP: podIP}}
	p.Status.StartTime = &created
	for _, ctr := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name:         ctr.Name,
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			Ready:        true,
			RestartCount: 0,
			Image:        ctr.Image,
			ImageID:      strings.Split(ctr.Image, ":")[0] + "@sha256:" + hex64(rng),
			ContainerID:  "containerd://" + hex64(rng),
			Started:      ptr.To(true),
		})
	}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set pod %s/%s Running: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// checkPods checks that the API lists want pods, all Running, and measures them in the
// JSON of a list (what the API returns to a client that asks for JSON).
func checkPods(ctx context.Context, c *localcluster.Cluster, want int) (podSizes, error) {
	var s podSizes
	body, err := c.Client().CoreV1().RESTClient().Get().AbsPath("/api/v1/pods").
		SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		return s, fmt.Errorf("list pods: %w", err)
	}
	var list corev1.PodList
	if err := json.Unmarshal(body, &list); err != nil {
		return s, fmt.Errorf("decode pod list: %w", err)
	}
	running := 0
	var noMF, slim int
	for i := range list.Items {
		p := &list.Items[i]
		if p.Status.Phase == corev1.PodRunning && len(p.ManagedFields) > 0 {
			running++
		}
		p.ManagedFields = nil
		if j, err := json.Marshal(p); err == nil {
			noMF += len(j)
		}
		t, _ := inventory.TransformPod(p)
		if j, err := json.Marshal(t); err == nil {
			slim += len(j)
		}
	}
	if len(list.Items) != want || running != want {
		return s, fmt.Errorf("the API lists %d pods, %d Running with managedFields; want %d", len(list.Items), running, want)
	}
	n := float64(want)
	return podSizes{full: float64(len(body)) / n, noManagedFields: float64(noMF) / n, transformed: float64(slim) / n}, nil
}

// metricsReaderToken returns the token of a service account that may read /metrics and
// /readyz of both servers (their delegated authorization asks the kube-apiserver).
func metricsReaderToken(ctx context.Context, c *localcluster.Cluster) (string, error) {
	const ns, name = "kube-system", "bench-metrics-reader"
	token, err := c.ServiceAccountToken(ctx, ns, name)
	if err != nil {
		return "", err
	}
	rbac := c.Client().RbacV1()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics", "/readyz", "/readyz/*"}, Verbs: []string{"get"}}},
	}
	if _, err := rbac.ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create clusterrole %s: %w", name, err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create clusterrolebinding %s: %w", name, err)
	}
	return token, nil
}

// caClient is an HTTPS client that verifies the servers' certificates (valid for
// 127.0.0.1) against the cluster CA.
func caClient(c *localcluster.Cluster) (*http.Client, error) {
	ca, err := c.PKI.CA()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no certificate in the cluster CA file")
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// target is a server whose heap is sampled.
type target struct {
	name string
	proc *localcluster.Process
	base string // https://127.0.0.1:<port>
}

func (t target) get(ctx context.Context, hc *http.Client, token, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return resp.StatusCode, body, err
}

// waitInformersSynced waits until the server's metric-informer-sync readiness check
// passes: its node and pod informers have listed everything.
func waitInformersSynced(ctx context.Context, hc *http.Client, token string, t target) error {
	return localcluster.Poll(ctx, 5*time.Minute, 100*time.Millisecond, t.name+" /readyz/metric-informer-sync", func(ctx context.Context) (bool, error) {
		if done, err := t.proc.Exited(); done {
			return false, fmt.Errorf("%s exited: %w", t.name, err)
		}
		code, body, err := t.get(ctx, hc, token, "/readyz/metric-informer-sync")
		if err != nil {
			return false, err
		}
		if code != http.StatusOK {
			return false, fmt.Errorf("%d %s", code, strings.TrimSpace(string(body)))
		}
		return true, nil
	})
}

// heapStats summarise the samples of one server.
type heapStats struct {
	minHeap, medianHeap, medianRSS float64 // bytes
	gcs                            int     // GC cycles during the window
	samples                        int
	window                         time.Duration
}

type sampler struct {
	t               target
	heap, rss       []float64
	firstGC, lastGC float64
}

func (s *sampler) sample(ctx context.Context, hc *http.Client, token string) error {
	code, body, err := s.t.get(ctx, hc, token, "/metrics")
	if err != nil {
		return fmt.Errorf("%s /metrics: %w", s.t.name, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s /metrics: %d %s", s.t.name, code, body)
	}
	heap, err := metricValue(body, "go_memstats_heap_alloc_bytes")
	if err != nil {
		return fmt.Errorf("%s: %w", s.t.name, err)
	}
	gcs, err := metricValue(body, "go_gc_duration_seconds_count")
	if err != nil {
		return fmt.Errorf("%s: %w", s.t.name, err)
	}
	st, err := s.t.proc.Stats()
	if err != nil {
		return fmt.Errorf("%s: %w", s.t.name, err)
	}
	if len(s.heap) == 0 {
		s.firstGC = gcs
	}
	s.lastGC = gcs
	s.heap = append(s.heap, heap)
	s.rss = append(s.rss, float64(st.RSSBytes))
	return nil
}

func (s *sampler) collected() bool { return s.lastGC > s.firstGC }

func (s *sampler) stats(window time.Duration) heapStats {
	return heapStats{
		minHeap: slices.Min(s.heap), medianHeap: median(s.heap), medianRSS: median(s.rss),
		gcs: int(s.lastGC - s.firstGC), samples: len(s.heap), window: window,
	}
}

// sampleHeaps samples both servers every podCacheSampleEvery for podCacheSampleFor, and on
// until each has run a GC since its first sample.
func sampleHeaps(ctx context.Context, hc *http.Client, token string, targets ...target) (hindsight, peer heapStats, err error) {
	ss := make([]*sampler, len(targets))
	for i, t := range targets {
		ss[i] = &sampler{t: t}
	}
	start := time.Now()
	tick := time.NewTicker(podCacheSampleEvery)
	defer tick.Stop()
	for {
		for _, s := range ss {
			if err := s.sample(ctx, hc, token); err != nil {
				return heapStats{}, heapStats{}, err
			}
		}
		elapsed := time.Since(start)
		if elapsed >= podCacheSampleMax || (elapsed >= podCacheSampleFor && ss[0].collected() && ss[1].collected()) {
			return ss[0].stats(elapsed), ss[1].stats(elapsed), nil
		}
		select {
		case <-ctx.Done():
			return heapStats{}, heapStats{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// metricValue returns the value of the unlabelled series name in a text exposition.
func metricValue(body []byte, name string) (float64, error) {
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s not in /metrics", name)
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// randName returns n characters of the alphabet the API server uses for generated names.
func randName(rng *rand.Rand, n int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

func hex64(rng *rand.Rand) string {
	return fmt.Sprintf("%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64())
}
