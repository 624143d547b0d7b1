// Package e2e holds Hindsight's end-to-end tests. They run against a real local control plane
// (etcd, kube-apiserver, kube-controller-manager and kubectl built from Go modules, kwok as the
// kubelets) started by package cluster, and are skipped only with -short.
//
// Each test has its own control plane, data directory and ports, so tests can share the
// machine. Most run one at a time; TestHistory, TestDiskFull and TestKillAtCrashPoints call
// t.Parallel and run two at a time (go test's -parallel, GOMAXPROCS by default) after the
// others: they spend most of their minutes waiting for scrapes, phases and restarts, and none
// of them measures speed. Tests that report CPU or memory ratios (TestHindsight) or restart
// latencies (TestRestartServesAtOnce) stay sequential, so their figures are not shared with
// another control plane.
package e2e
