// Package cluster builds and runs a real local Kubernetes control plane for Hindsight's
// end-to-end tests, `make demo` and benchmarks: etcd, kube-apiserver, kube-controller-manager
// and kubectl v1.34.4, kwok v0.8.0 as the kubelets and the metrics-server v0.9.0 peer, all
// built from the pinned Go modules under test/tools/ (EnsureTools) and started on 127.0.0.1
// with free ports, a generated PKI and front-proxy aggregation (Start, or New in a test).
//
// Every process runs in its own process group with Pdeathsig, and Stop (t.Cleanup in tests)
// ends them by PID, newest first. docs/local-cluster.md explains the choices.
package cluster
