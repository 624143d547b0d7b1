package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// TestAuditedAccesses checks the audit log reader on kube-apiserver events of the JSON
// format: resource requests of the user only, subresources joined, non-resource URLs left
// out, a forbidden request counted (Hindsight tried it), and a streaming list (watch with
// sendInitialEvents) counted as the list it stands for.
func TestAuditedAccesses(t *testing.T) {
	got, err := auditedAccesses("testdata/audit-sample.jsonl", hindsightUser)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"get nodes/proxy.", "list configmaps.", "list jobs.batch", "list pods.", "watch jobs.batch", "watch replicasets.apps"}
	if s := sortedAccesses(got); !slices.Equal(s, want) {
		t.Errorf("auditedAccesses() = %v, want %v", s, want)
	}
}

// TestRBACChecksCoverManifest checks, without a cluster, that TestRBAC has a removal check
// for every rule of the shipped ClusterRole that is not pending, and that every pending
// access is granted: a rule added to deploy/kustomize/base/rbac.yaml needs a test.
func TestRBACChecksCoverManifest(t *testing.T) {
	r, err := cluster.LoadHindsightRBAC()
	if err != nil {
		t.Fatal(err)
	}
	role := r.ClusterRole(hindsightRole)
	if role == nil {
		t.Fatalf("no ClusterRole %s", hindsightRole)
	}
	granted := grantedAccesses(role)
	for a := range rbacPending {
		if !granted[a] {
			t.Errorf("pending %s is not granted: take it out of rbacPending", a)
		}
	}
	for _, rule := range role.Rules {
		if len(rule.APIGroups) != 1 || len(rule.Resources) != 1 || slices.Contains(rule.Verbs, "*") || slices.Contains(rule.Resources, "*") {
			t.Errorf("rule %s: want one group, one resource, no wildcard (a removal takes away one thing)", ruleName(rule))
			continue
		}
		first := access{group: rule.APIGroups[0], resource: rule.Resources[0], verb: rule.Verbs[0]}
		if rbacPending[first] {
			continue
		}
		if _, ok := removalChecks[first.resource]; !ok {
			t.Errorf("rule %s has no removal check in removalChecks", ruleName(rule))
		}
		if strings.Contains(first.resource, "/") != (first.resource == "nodes/metrics") {
			t.Errorf("rule %s: the only subresource TestRBAC can check is nodes/metrics (through the authorizing kubelet)", ruleName(rule))
		}
	}
}
