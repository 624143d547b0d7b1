// Package inventory keeps what Hindsight knows about the cluster's objects: the process's one
// pod cache and the feed that records pods and nodes in the object catalog (tsdb/catalog).
//
// The pod cache is a single informer of every pod, in every namespace and phase, whose
// objects TransformPod strips to what the scraper (UIDs and nodes, through PodUIDs), the metrics.k8s.io
// API (labels and phase) and the catalog (owners, node, QoS, requests and limits) read.
//
// Feed turns informer events into catalog records: owners resolved to the top workload
// (ReplicaSet → Deployment, Job → CronJob), requests and limits in canonical integers, node
// capacity and allocatable. Run writes every object once at start, marks deleted what
// disappeared while Hindsight was not running, and repairs the catalog on a schedule
// (failed writes, unresolved owners, dropped records, lost deletions). Check is the
// "catalog" check of /readyz; self-metrics:
//
//	hindsight_catalog_queued_records              gauge
//	hindsight_catalog_write_transactions_total    counter
//	hindsight_catalog_dropped_records_total       counter
//	hindsight_catalog_size_bytes                  gauge
//	hindsight_catalog_writable                    gauge, 1 or 0
//	hindsight_catalog_repairs_total{result}       counter: success, failure
package inventory
