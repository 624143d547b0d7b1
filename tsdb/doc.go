// Package tsdb owns Hindsight's storage: the embedded Prometheus TSDB under --storage-path, the
// label schema of its series, and the in-memory index of the latest points from which the
// current metrics.k8s.io window is computed with metrics-server's rules.
//
// Series (raw, as the kubelet exposes them; timestamps in milliseconds):
//
//	node_cpu_usage_seconds_total, node_memory_working_set_bytes        {node}
//	container_cpu_usage_seconds_total, container_memory_working_set_bytes,
//	container_start_time_seconds                                       {node, namespace, pod, container, uid}
//	pod_cpu_usage_seconds_total, pod_memory_working_set_bytes          {node, namespace, pod, uid}
//	*_swap_usage_bytes where the kubelet reports swap                  (same labels as above)
//
// Anything that changes during a pod's life (labels, owner, requests) lives in the catalog,
// not in series labels, so series do not churn.
//
// This package imports nothing of Hindsight's and nothing from k8s.io/metrics; turning its
// Usage values into API objects is package apiserver's job.
package tsdb
