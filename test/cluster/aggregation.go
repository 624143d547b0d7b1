package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// RegisterAPIService makes the kube-apiserver proxy group/version to an aggregated API server
// listening on 127.0.0.1:port. Loopback addresses are refused in Endpoints and EndpointSlices,
// so the route is an ExternalName Service kube-system/<service> → localhost (with the default
// --enable-aggregator-routing=false); the server's certificate must be valid for
// "<service>.kube-system.svc" and signed by the cluster CA (see PKI and Options.Services).
// An existing APIService of the same name is updated in place, so a test can move
// metrics.k8s.io from one server to another as an operator would.
func (c *Cluster) RegisterAPIService(ctx context.Context, service string, port int, group string, versions ...string) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: "kube-system"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost"},
	}
	if _, err := c.client.CoreV1().Services("kube-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service %s: %w", service, err)
	}
	ca, err := c.PKI.CA()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(c.config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	for _, v := range versions {
		name := v + "." + group
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiregistration.k8s.io/v1",
			"kind":       "APIService",
			"metadata":   map[string]any{"name": name},
			"spec": map[string]any{
				"group":                group,
				"version":              v,
				"groupPriorityMinimum": int64(100),
				"versionPriority":      int64(versionPriority(v)),
				"service":              map[string]any{"name": service, "namespace": "kube-system", "port": int64(port)},
				"caBundle":             base64.StdEncoding.EncodeToString(ca),
			},
		}}
		// In place, as an operator takes metrics.k8s.io over from metrics-server: deleting
		// and re-creating would leave the group unserved in between.
		old, err := dyn.Resource(apiServiceGVR).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := dyn.Resource(apiServiceGVR).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create apiservice %s: %w", name, err)
			}
		case err != nil:
			return fmt.Errorf("get apiservice %s: %w", name, err)
		default:
			obj.SetResourceVersion(old.GetResourceVersion())
			if _, err := dyn.Resource(apiServiceGVR).Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update apiservice %s: %w", name, err)
			}
		}
	}
	return nil
}

// versionPriority ranks v1 above v1beta1, so clients that ask for the preferred version of
// metrics.k8s.io get v1 where it is served.
func versionPriority(v string) int {
	if v == "v1" {
		return 200
	}
	return 100
}

// WaitAPIServiceAvailable waits until the APIService has condition Available=True.
func (c *Cluster) WaitAPIServiceAvailable(ctx context.Context, name string, timeout time.Duration) error {
	dyn, err := dynamic.NewForConfig(c.config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	return Poll(ctx, timeout, 250*time.Millisecond, "APIService "+name+" Available", func(ctx context.Context) (bool, error) {
		obj, err := dyn.Resource(apiServiceGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
		for _, cd := range conds {
			m, _ := cd.(map[string]any)
			if m["type"] == "Available" {
				if m["status"] == "True" {
					return true, nil
				}
				return false, fmt.Errorf("%v: %v", m["reason"], m["message"])
			}
		}
		return false, nil
	})
}

// GrantMetricsServerRBAC gives user what metrics-server v0.9.0's own manifest
// (components.yaml) gives it: read nodes, pods and nodes/metrics, delegate authentication
// and authorization, and read the extension-apiserver-authentication ConfigMap. It also
// creates the aggregated role that lets view/edit/admin read metrics. Hindsight's rights
// are not these but HindsightRBACManifest's (GrantHindsightRBAC).
func (c *Cluster) GrantMetricsServerRBAC(ctx context.Context, user string) error {
	role := "metrics-reader:" + user
	objs := []any{
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: role},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}},
				{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "auth-delegator:" + user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "auth-reader:" + user, Namespace: "kube-system"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "extension-apiserver-authentication-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		},
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "system:aggregated-metrics-reader", Labels: map[string]string{
				"rbac.authorization.k8s.io/aggregate-to-view":  "true",
				"rbac.authorization.k8s.io/aggregate-to-edit":  "true",
				"rbac.authorization.k8s.io/aggregate-to-admin": "true",
			}},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}}},
		},
	}
	rb := c.client.RbacV1()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *rbacv1.ClusterRole:
			_, err = rb.ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = rb.ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = rb.RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create RBAC for %s: %w", user, err)
		}
	}
	return nil
}
