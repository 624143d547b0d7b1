// Package e2e holds Hindsight's end-to-end tests. They run against a real local control plane
// (etcd, kube-apiserver, kube-controller-manager and kubectl built from Go modules, kwok as the
// kubelets) started by package cluster, and are skipped only with -short.
package e2e
