// Package scraper discovers nodes through an informer, fetches every kubelet's
// /metrics/resource once per metric resolution, decodes the Prometheus text body and hands one
// tsdb.Batch per round to a Writer. A node that fails contributes nothing to that round and is
// retried within the period; partial results are normal.
package scraper
