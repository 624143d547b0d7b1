package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// HindsightRBACManifest is the path of Hindsight's RBAC inside the source tree: the one
// definition of what Hindsight may do, which the harness applies as it ships.
const HindsightRBACManifest = "deploy/kustomize/base/rbac.yaml"

// ReadersRBACManifest holds the ClusterRoles of those who read what Hindsight serves
// (aggregated into view, edit and admin), as they ship.
const ReadersRBACManifest = "deploy/kustomize/base/readers.yaml"

// manifestNamespace is the namespace deploy/kustomize/base/kustomization.yaml puts every
// namespaced object in.
const manifestNamespace = "kube-system"

// RBAC is the RBAC objects of a manifest. ServiceAccounts and other kinds are left out.
type RBAC struct {
	ClusterRoles        []*rbacv1.ClusterRole
	ClusterRoleBindings []*rbacv1.ClusterRoleBinding
	RoleBindings        []*rbacv1.RoleBinding
}

// ClusterRole returns the manifest's ClusterRole called name, or nil.
func (r RBAC) ClusterRole(name string) *rbacv1.ClusterRole {
	for _, cr := range r.ClusterRoles {
		if cr.Name == name {
			return cr
		}
	}
	return nil
}

// LoadHindsightRBAC reads HindsightRBACManifest from this source tree.
func LoadHindsightRBAC() (RBAC, error) {
	root, err := RepoRoot()
	if err != nil {
		return RBAC{}, err
	}
	return LoadRBAC(filepath.Join(root, HindsightRBACManifest))
}

// LoadRBAC decodes the RBAC objects of a multi-document YAML manifest. Namespaced objects
// without a namespace get kube-system, as the kustomization gives them.
func LoadRBAC(path string) (RBAC, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return RBAC{}, fmt.Errorf("read RBAC manifest: %w", err)
	}
	var r RBAC
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return r, nil
		}
		if err != nil {
			return RBAC{}, fmt.Errorf("read RBAC manifest %s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return RBAC{}, fmt.Errorf("decode RBAC manifest %s: %w", path, err)
		}
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			r.ClusterRoles = append(r.ClusterRoles, o)
		case *rbacv1.ClusterRoleBinding:
			r.ClusterRoleBindings = append(r.ClusterRoleBindings, o)
		case *rbacv1.RoleBinding:
			if o.Namespace == "" {
				o.Namespace = manifestNamespace
			}
			r.RoleBindings = append(r.RoleBindings, o)
		}
	}
}

// asUser returns subjects with every ServiceAccount replaced by user: in the harness,
// Hindsight authenticates with a client certificate for user, not as a service account.
func asUser(subjects []rbacv1.Subject, user string) []rbacv1.Subject {
	out := make([]rbacv1.Subject, 0, len(subjects))
	for _, s := range subjects {
		if s.Kind == rbacv1.ServiceAccountKind {
			s = rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}
		}
		out = append(out, s)
	}
	return out
}

// ApplyRBAC creates r's objects, or updates them where they exist, with the manifest's
// ServiceAccount subjects bound to user instead.
func (c *Cluster) ApplyRBAC(ctx context.Context, r RBAC, user string) error {
	rb := c.client.RbacV1()
	for _, o := range r.ClusterRoles {
		o = o.DeepCopy()
		_, err := rb.ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = c.updateClusterRole(ctx, o)
		}
		if err != nil {
			return fmt.Errorf("apply ClusterRole %s: %w", o.Name, err)
		}
	}
	for _, o := range r.ClusterRoleBindings {
		o = o.DeepCopy()
		o.Subjects = asUser(o.Subjects, user)
		_, err := rb.ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var cur *rbacv1.ClusterRoleBinding
			if cur, err = rb.ClusterRoleBindings().Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				cur.Subjects = o.Subjects // roleRef is immutable
				_, err = rb.ClusterRoleBindings().Update(ctx, cur, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("apply ClusterRoleBinding %s: %w", o.Name, err)
		}
	}
	for _, o := range r.RoleBindings {
		o = o.DeepCopy()
		o.Subjects = asUser(o.Subjects, user)
		_, err := rb.RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var cur *rbacv1.RoleBinding
			if cur, err = rb.RoleBindings(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				cur.Subjects = o.Subjects
				_, err = rb.RoleBindings(o.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("apply RoleBinding %s/%s: %w", o.Namespace, o.Name, err)
		}
	}
	return nil
}

// SetClusterRoleRules replaces the rules of an existing ClusterRole (a test takes one away).
func (c *Cluster) SetClusterRoleRules(ctx context.Context, name string, rules []rbacv1.PolicyRule) error {
	if err := c.updateClusterRole(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}); err != nil {
		return fmt.Errorf("set rules of ClusterRole %s: %w", name, err)
	}
	return nil
}

func (c *Cluster) updateClusterRole(ctx context.Context, want *rbacv1.ClusterRole) error {
	cur, err := c.client.RbacV1().ClusterRoles().Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cur.Rules, cur.Labels = want.Rules, want.Labels
	_, err = c.client.RbacV1().ClusterRoles().Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// GrantHindsightRBAC applies HindsightRBACManifest, bound to user, and the readers'
// ClusterRoles of ReadersRBACManifest.
func (c *Cluster) GrantHindsightRBAC(ctx context.Context, user string) error {
	r, err := LoadHindsightRBAC()
	if err != nil {
		return err
	}
	if err := c.ApplyRBAC(ctx, r, user); err != nil {
		return err
	}
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	readers, err := LoadRBAC(filepath.Join(root, ReadersRBACManifest))
	if err != nil {
		return err
	}
	return c.ApplyRBAC(ctx, readers, user)
}
