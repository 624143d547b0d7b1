package cluster

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestLoadHindsightRBAC checks that the shipped manifest decodes into the objects the
// harness applies, namespaced as the kustomization puts them, and that its ServiceAccount
// subjects become the harness's user.
func TestLoadHindsightRBAC(t *testing.T) {
	r, err := LoadHindsightRBAC()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.ClusterRoles) + len(r.ClusterRoleBindings) + len(r.RoleBindings); got != 5 {
		t.Errorf("%d RBAC objects, want 5 (2 ClusterRoles, 2 ClusterRoleBindings, 1 RoleBinding)", got)
	}
	role := r.ClusterRole("system:hindsight")
	if role == nil || len(role.Rules) == 0 {
		t.Fatalf("ClusterRole system:hindsight = %v, want rules", role)
	}
	for _, rb := range r.RoleBindings {
		if rb.Namespace != manifestNamespace {
			t.Errorf("RoleBinding %s in namespace %q, want %q", rb.Name, rb.Namespace, manifestNamespace)
		}
	}
	for _, b := range r.ClusterRoleBindings {
		for _, s := range asUser(b.Subjects, "system:hindsight") {
			if s != (rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:hindsight"}) {
				t.Errorf("ClusterRoleBinding %s subject %+v, want the user", b.Name, s)
			}
		}
	}
}

// TestKubeletAuthorizerAttributes checks the kubelet's mapping of a request to the
// attributes it authorizes, as AuthorizingKubelet applies it.
func TestKubeletAuthorizerAttributes(t *testing.T) {
	tests := []struct{ method, path, verb, sub, node string }{
		{"GET", "/metrics/resource", "get", "metrics", ""},
		{"GET", "/metrics/nodes/kwok-a/metrics/resource", "get", "metrics", "kwok-a"},
		{"GET", "/stats/summary", "get", "stats", ""},
		{"GET", "/metricsfoo", "get", "proxy", ""},
		{"POST", "/exec/ns/pod/c", "create", "proxy", ""},
		{"GET", "/logs/", "get", "log", ""},
	}
	for _, tc := range tests {
		if v, s, n := kubeletVerb(tc.method), kubeletSubresource(tc.path), kwokNodeOf(tc.path); v != tc.verb || s != tc.sub || n != tc.node {
			t.Errorf("%s %s = %s nodes/%s (node %q), want %s nodes/%s (node %q)", tc.method, tc.path, v, s, n, tc.verb, tc.sub, tc.node)
		}
	}
}
