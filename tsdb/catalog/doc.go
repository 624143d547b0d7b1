// Package catalog records Kubernetes pods and nodes over time in a bbolt file, so that
// the history of a pod that no longer exists can still be found: by UID, by name (every
// UID that ever had it), by namespace, by label selector, by owning workload, by node and
// by time range. It keeps what changes during a pod's life (labels, owner, requests and
// limits) out of the TSDB's series labels.
//
// Records are plain Go types (PodRecord, NodeRecord); converting Kubernetes objects into
// them, including resolving a pod's owner chain to its top workload, is the caller's job.
// Quantities are canonical: CPU in millicores, memory and storage in bytes.
//
// # Writing
//
// UpsertPod, UpsertNode, MarkPodDeleted, MarkNodeDeleted and the Reconcile methods only
// queue; Run writes the queue in one bbolt transaction every Options.BatchInterval or
// every Options.BatchSize records, and Flush or Close write it on demand. An informer
// event handler never waits for the disk unless the queue holds 8×BatchSize records.
// Deleted objects are kept for Options.Retention after they were last seen, then pruned;
// live objects are kept for as long as they live.
//
// # Lookups
//
// Lookups read what has been written: records still queued are not visible until the
// next write (Flush makes them so). A range [from, to] selects the objects that existed
// at some time in it: first seen at or before to and, if deleted, last seen at or after
// from; a zero from or to leaves that side unbounded. A live object extends to now
// however old its last event is. Pods come sorted by namespace, name, FirstSeen and UID;
// nodes by name. Results are bounded by Options.MaxResults rather than paged: a lookup
// matching more returns ErrTooMany and no records, and the caller narrows the range or
// the selection. Namespace, name, owner and node lookups read only index entries outside
// the range; a label selector decodes every record of the namespace within the range.
//
// # On-disk layout
//
// One bbolt file, conventionally <storage-path>/catalog.db next to the TSDB, with:
//
//	meta           "version" → "1"
//	pods           uid → PodRecord as JSON
//	nodes          name → NodeRecord as JSON
//	idx_live       uid → span                          (pods not deleted)
//	idx_namespace  namespace \0 uid → span
//	idx_name       namespace \0 name \0 uid → span
//	idx_owner      namespace \0 kind \0 name \0 uid → span   (top workload and direct controller)
//	idx_node       node \0 uid → span
//
// A span is 16 bytes: FirstSeen and the end of life (LastSeen if deleted, else the
// largest time) as big-endian Unix nanoseconds, so that time-range lookups filter index
// entries without decoding records. Every index is updated in the same transaction as its
// record. Beside the file: <path>.owner names the process holding the lock (PID, host,
// since when), <path>.compact exists during a compaction, and <path>.corrupt-<unix> is a
// corrupt file moved aside by OpenOrRebuild.
//
// # Locking and failures
//
// bbolt locks the file (flock) for one opener; Open waits at most Options.Timeout for it
// and then fails with ErrLocked, naming the holder from the owner file. Open checks every
// page and record and fails with ErrCorrupt on a file that is not a sound catalog;
// OpenOrRebuild moves such a file aside and starts empty. Compact rewrites the file
// (bbolt files never shrink) and swaps it in while holding the new file's lock.
//
// # Concurrency
//
// Every method is safe for concurrent use. Writes (Flush, Prune, Compact) are serialized;
// lookups run in bbolt read transactions beside them and see only written records.
package catalog
