// Command kwok-config writes the kwok configuration used by Hindsight's local control plane to
// standard output: a KwokConfiguration with every option spelled out (a partial one zeroes the
// rest), the node and pod stages, the /metrics/resource Metric and the usage-from-annotation
// ClusterResourceUsage. Everything but the KwokConfiguration comes verbatim from the kwok module
// itself, so it always matches the kwok binary built beside it.
//
// One expression is changed: kwok's Metric reports container_start_time_seconds as
// pod.SinceSecond(), the seconds since creation, which grows on every scrape. A kubelet reports
// the start time as a Unix epoch, and a metrics server treats a growing start time as a container
// restart, so it is replaced with the pod's creation time as an epoch.
package main

import (
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/kwok/kustomize/metrics/resource"
	"sigs.k8s.io/kwok/kustomize/metrics/usage"
	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	heartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/kwok/pkg/apis/config/v1alpha1"
	"sigs.k8s.io/yaml"
)

const (
	upstreamStartTime = "value: 'pod.SinceSecond()'"
	epochStartTime    = "value: 'UnixSecond(pod.metadata.creationTimestamp)'"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kwok-config:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := &v1alpha1.KwokConfiguration{}
	cfg.APIVersion = v1alpha1.GroupVersion.String()
	cfg.Kind = v1alpha1.KwokConfigurationKind
	cfg.Options.EnableCRDs = []string{} // stages and metrics come from this file, not from CRDs
	f := false
	cfg.Options.EnableProfilingHandler = &f
	cfg.Options.NodeLeaseDurationSeconds = 40
	v1alpha1.SetObjectDefaults_KwokConfiguration(cfg)
	head, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("marshal KwokConfiguration: %w", err)
	}

	if strings.Count(resource.DefaultMetricsResource, upstreamStartTime) != 1 {
		return fmt.Errorf("kwok's Metric no longer has exactly one %q; revisit the start-time fix", upstreamStartTime)
	}
	metric := strings.Replace(resource.DefaultMetricsResource, upstreamStartTime, epochStartTime, 1)

	docs := []string{
		string(head),
		nodefast.DefaultNodeInit,
		heartbeat.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
		metric,
		usage.DefaultUsageFromAnnotation,
	}
	for i, d := range docs {
		if i > 0 {
			fmt.Println("---")
		}
		fmt.Print(strings.TrimSpace(d) + "\n")
	}
	return nil
}
