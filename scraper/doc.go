// Package scraper discovers nodes through an informer, fetches every kubelet's
// /metrics/resource once per metric resolution, decodes the Prometheus text body and hands one
// tsdb.Batch per round to a Writer. A node that fails contributes nothing to that round and is
// retried within the period; partial results are normal.
//
// Three pieces, usable on their own:
//
//   - Decode turns one body into a tsdb.NodeScrape: raw values (cumulative CPU in core-seconds,
//     bytes), the kubelet's own millisecond timestamps or the scrape time, metrics-server's
//     choices where a body is incomplete, and an error rather than a partial result for a body
//     that is broken, truncated or hostile. It never panics. A body past a cap no real kubelet
//     reaches fails too: a namespace, pod or container label longer than Kubernetes allows
//     (MaxNamespaceLen 63, MaxPodNameLen 253, MaxContainerNameLen 63 bytes), more than
//     MaxPodsPerNode (1,024) pods or MaxContainersPerPod (64) containers in one pod.
//   - KubeletClient reaches https://<address>:<port><path> for a Node (path overridable by the
//     metrics.k8s.io/resource-metrics-path annotation, as kwok needs), verifies TLS by default,
//     authenticates with a client certificate and/or a bearer token, and caps the body
//     (MaxBodyBytes, 8 MiB by default: the largest body of a 110-pod node, 20 containers a pod
//     and every name at its limit, is 5.1 MiB; a realistic one 0.39 MiB). Each body being read
//     and decoded reserves MaxBodyBytes of MaxBytesInFlight (256 MiB by default), so the
//     bodies of all nodes at once never hold more.
//   - Scraper runs the rounds: list nodes by selector, spread the start of each node's request
//     over up to min(8 ms × nodes, 4 s), fetch with bounded concurrency, retry a transient
//     failure with backoff while the period lasts, keep only the pods the API places on each
//     node (giving them their UIDs), leave out nodes whose sample times are off the scrape
//     time by more than tsdb.ClockSkewBound (logged when that starts and stops;
//     Scraper.CheckClocks lists them), write the batch.
//
// A pod's and its containers' samples are kept only when PodUIDs holds that namespace/name with
// spec.nodeName equal to the scraped node. Others are dropped and counted: a kubelet cannot
// write another node's pod, and a node stores at most the pods the API places there, whatever
// its kubelet invents. A pod created so recently that the informer has not seen it is dropped
// for that round, as metrics-server serves only the pods its informer knows.
//
// Self-metrics, registered on the injected Registerer (metrics-server's families under the
// hindsight_ prefix; per-node series are deleted when a node leaves the node list):
//
//	hindsight_kubelet_request_duration_seconds{node}   histogram, one per request
//	hindsight_kubelet_request_total{success}           counter
//	hindsight_kubelet_last_request_time_seconds{node}  gauge, Unix seconds
//	hindsight_manager_tick_duration_seconds            histogram, one per round (scrape + write)
//	hindsight_scrape_errors_total{reason}              counter: address, timeout, tls, network,
//	                                                   http_status, too_large, decode, write,
//	                                                   clock_skew (one per skewed node per round)
//	hindsight_scrape_dropped_samples_total{reason}     counter, one per pod or container sample
//	                                                   not stored: unknown_pod, wrong_node
//	                                                   (no node label: nothing to prune)
//
// Scraper.CheckTimely is the metric-collection-timely liveness check; Scraper.CheckClocks is
// the informational kubelet-clocks readiness check.
package scraper
