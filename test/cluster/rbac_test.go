package cluster

import (
	"path/filepath"
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
	if len(r.ClusterRoles) != 1 || len(r.ClusterRoleBindings) != 2 || len(r.RoleBindings) != 1 {
		t.Errorf("%d ClusterRoles, %d ClusterRoleBindings, %d RoleBindings, want 1, 2, 1", len(r.ClusterRoles), len(r.ClusterRoleBindings), len(r.RoleBindings))
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

// TestLoadReadersRBAC checks the readers' roles: two ClusterRoles, both aggregated into
// view, edit and admin, and nothing bound.
func TestLoadReadersRBAC(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := LoadRBAC(filepath.Join(root, ReadersRBACManifest))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ClusterRoles) != 2 || len(r.ClusterRoleBindings)+len(r.RoleBindings) != 0 {
		t.Fatalf("%d ClusterRoles, %d bindings, want 2 ClusterRoles and no bindings", len(r.ClusterRoles), len(r.ClusterRoleBindings)+len(r.RoleBindings))
	}
	for _, name := range []string{"system:aggregated-metrics-reader", "hindsight:history-reader"} {
		role := r.ClusterRole(name)
		if role == nil || len(role.Rules) == 0 {
			t.Errorf("ClusterRole %s = %v, want rules", name, role)
			continue
		}
		for _, agg := range []string{"view", "edit", "admin"} {
			if role.Labels["rbac.authorization.k8s.io/aggregate-to-"+agg] != "true" {
				t.Errorf("ClusterRole %s is not aggregated into %s", name, agg)
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
