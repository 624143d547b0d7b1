// Package tsdb owns Hindsight's storage: the embedded Prometheus TSDB under --storage-path, the
// label schema of its series, and the in-memory index of the latest points from which the
// current metrics.k8s.io window is computed with metrics-server's rules.
//
// Series (raw, as the kubelet exposes them; timestamps in milliseconds), each a row of Schema
// (schema.go), which the decoder, the appender, range queries and the history API all read:
//
//	node_cpu_usage_seconds_total, node_memory_working_set_bytes        {node}
//	container_cpu_usage_seconds_total, container_memory_working_set_bytes,
//	container_start_time_seconds                                       {node, namespace, pod, container, uid}
//	pod_cpu_usage_seconds_total, pod_memory_working_set_bytes          {node, namespace, pod, uid}
//	*_swap_usage_bytes where the kubelet reports swap                  (same labels as above)
//
// Values are stored as reported: cumulative CPU in core-seconds, working set and swap in
// bytes, container start time in Unix seconds (written at the container's sample time).
// A label with an empty value (uid while the pod informer does not know the pod) is left
// out. Anything that changes during a pod's life (labels, owner, requests) lives in the
// catalog, not in series labels, so series do not churn.
//
// # On-disk layout
//
// Under Config.Dir (--storage-path, the PersistentVolume):
//
//	<dir>/hindsight.lock  locked (flock) by Open until Close; names the holder's PID, host
//	                      and start time while held, empty after Close
//	<dir>/tsdb/           the Prometheus TSDB: wal/, chunks_head/, chunk_snapshot.* (written
//	                      on Close), one directory per block, lock
//	<dir>/window.snapshot the current window as Close left it (windowsnap.go); the next
//	                      Open removes it and uses it when no sample was stored since
//	<dir>/tiers/5m/, 1h/  the downsampled tiers (tier.go): Prometheus TSDBs of blocks only,
//	                      each with its own retention
//	<dir>/tiers/<name>.watermark  the start of the next window the rollup job writes
//	<dir>/catalog.db      the bbolt catalog of pods and nodes (package tsdb/catalog)
//	<dir>/damaged/<time>/ damaged TSDB parts Open moved aside (same paths as under tsdb/),
//	                      kept for inspection, never deleted
//
// A second Open of the same directory, in this process or another, fails at once with
// ErrLocked; it never waits. The kernel drops the lock when its holder exits, however it
// exits. A WAL whose last record a crash tore, or that ends in garbage, is repaired by Open
// (the TSDB logs a warning): the samples before the damage are kept. A block that does not
// open, a WAL segment other than the last that does not read to its end (its records before
// the damage are kept, and the later segments), a chunks_head file whose chunks do not
// read back, and a chunk snapshot that does not read back are moved to damaged/ before the
// TSDB opens (one warning each, hindsight_storage_recovered_total{part}); Open never fails
// for them. Loss: the block's samples; the rest of that WAL segment; nothing for head
// chunks and the snapshot, whose samples the WAL replays.
//
// # Retention
//
// Samples are kept for Config.Retention (14 days by default; the tiers keep 90 and 400 days
// of rollups) and, when Config.RetentionSize
// is set, within that many bytes (blocks, WAL and head chunks together); the oldest blocks
// go first. Blocks are compacted up to a tenth of the retention (at most 31 days), so that
// retention deletes at that granularity. DiskBytesPerSample (5, measured) sizes a day:
// series × 86400s/resolution × 5 bytes, plus the WAL's last 2-3 hours.
//
// # Storage health
//
// When a commit fails (a full or read-only volume), Write still updates the in-memory
// index, so the current window keeps being served; the round's samples are lost to history.
// DB.StorageHealth reports the failure, since when and why; hindsight_storage_writable is
// 0 meanwhile; one warning is logged when commits start failing and one line when they
// succeed again, which the next Write tries by itself.
//
// Before that happens, Write checks the free space of the file system (statfs) each round:
// below the reserve (diskspace.go: 7.1 MiB plus 4 KiB per series), it appends nothing,
// counts the round's samples in hindsight_storage_dropped_samples_total
// {reason="low_disk_space"} and reports ErrLowDiskSpace in StorageHealth, so that the
// TSDB never fails the head chunk write it would panic on; compactions are off while a
// compaction's estimated size does not fit above the reserve. Both resume by themselves,
// and Open starts paused on a disk still short of space.
//
// # Kubelet clocks
//
// A node scrape whose newest sample time is more than ClockSkewBound (max(2 × resolution,
// 30s), at most 30m) from its ScrapeTime, either way, is dropped by Write before the index
// and the TSDB see it (CheckClock; counted in hindsight_storage_rejected_points_total
// {reason="clock_skew"}), so that a node hours or days ahead cannot move the TSDB head's
// newest time, which would put every other node's samples out of bounds, nor the blocks
// retention counts back from. The scraper calls CheckClock first, to count and report the
// node. In the current window the node is treated as absent (see below).
//
// Storage is also unhealthy (StorageHealth, hindsight_storage_writable 0) while the TSDB
// refuses more than 1 % of each of 3 consecutive rounds' samples as out of bounds or out of
// order (hindsight_storage_skipped_samples_total counts them); the first round below 1 %
// clears it.
//
// # Current window
//
// DB.Write feeds an in-memory index of the last two points of every node and container;
// DB.NodeUsage and DB.PodUsage compute the window from it and never read the TSDB. The
// numbers are those of metrics-server v0.9.0: CPU in nanocores is
// uint64(float64(Δ uint64(cpuSeconds*1e9)) / window.Seconds()), the window is the real time
// between the two points, memory is the last working set; restarts are detected through
// the container start time; a container at least 10s but less than one resolution old gets
// a window from its start time; a pod is served only when all its reported containers
// have a window, with the timestamp and window of its earliest container. Deliberate
// differences, all documented where they are made:
//   - A node absent from a batch (its scrape failed) keeps its points and its pods'; its
//     state is forgotten only after 10 resolutions without it. So is a node dropped for
//     its clock.
//   - A node present in a batch replaces the set of pods it owns.
//   - Open restores the window from the last stored points when they are at most two
//     resolutions old, so a restart serves at once.
//   - A container with a rejected window (decreasing counter or start time) leaves its whole
//     pod out rather than being left out of it.
//
// # History
//
// DB.Range reads past usage on a grid of steps, for the history API: a raw point per scrape
// (memory as stored; CPU as the rate between two consecutive counter samples, none over a
// reset or a gap of more than 2.5 resolutions), aggregated per step over the points that
// cover it (a CPU rate in every step its interval overlaps, weighed by the overlap; a
// memory sample's last value in the steps up to the next sample), so that timestamp
// jitter leaves no step empty, and summarized over the range, streamed one series
// at a time. DB.Queryable gives the raw series and the tiers' to the PromQL engine, and
// DB.DownsampledQueryable the kubelet-named series read from the tiers (downsampled.go:
// Thanos' max_source_resolution). Close ends the queries
// in progress (ErrClosed), at their next series or within 1024 samples of one, and waits for
// their queriers, so that no query reads a closed TSDB and shutdown never waits for a long one.
//
// # Concurrency
//
// Every DB method is safe for concurrent use. Writes are serialized; queries take a read
// lock on the index only, so they never wait for a TSDB append or commit.
//
// This package imports nothing of Hindsight's and nothing from k8s.io/metrics; turning its
// Usage values into API objects is package apiserver's job.
package tsdb
