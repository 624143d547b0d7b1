// Package apiserver serves metrics.k8s.io (v1 and v1beta1) as an aggregated API server built
// on k8s.io/apiserver: NodeMetrics and PodMetrics, get and list, with delegated authentication
// and authorization. Conversion from tsdb.Usage to API objects lives here.
//
// The package follows kubernetes/sample-apiserver: cmd builds an Options (NewOptions, AddFlags),
// applies it to a Config (Options.ApplyTo), then Config.Complete().New() returns a Server whose
// Run blocks until its context is done. Numbers come from a MetricsSource (the tsdb); which
// nodes and pods exist, and their labels, come from the listers in Config, exactly as in
// metrics-server v0.9.0: a node or pod the lister does not know is not served even when the
// source has points for it, and a Running pod without a complete window is simply absent.
//
// Behaviour matched to metrics-server: results are sorted (nodes by name, pods by namespace then
// name); labels are copied from the Node or Pod; label selectors go to the listers, field
// selectors (metadata.name, metadata.namespace) are applied afterwards; CPU is a DecimalSI
// quantity in nanocores, memory a BinarySI quantity in bytes; there is no watch and no
// pagination; a Get of an object the lister does not know returns the lister's NotFound
// (`node "x" not found`, `pods "x" not found`), one without metrics returns
// `nodemetrics.metrics.k8s.io "x" not found` or `podmetrics.metrics.k8s.io "ns/x" not found`.
//
// Self-metrics go to the prometheus.Registerer in Config. The generic apiserver serves
// /metrics from k8s.io/component-base/metrics/legacyregistry, so cmd passes
// legacyregistry.Registerer() to have them (and everything else registered there) on /metrics.
package apiserver
