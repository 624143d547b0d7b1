// Package apiserver serves metrics.k8s.io (v1 and v1beta1) as an aggregated API server built
// on k8s.io/apiserver: NodeMetrics and PodMetrics, get and list, with delegated authentication
// and authorization. Conversion from tsdb.Usage to API objects lives here.
package apiserver
