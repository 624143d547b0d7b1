package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/metrics/pkg/apis/metrics"
)

// Who may read what: a namespace's history (its pods, containers, workloads and total)
// is visible to whoever may get pods.metrics.k8s.io in that namespace; nodes and the
// cluster to whoever may get nodes.metrics.k8s.io. These are the rights that kubectl top
// needs, so the aggregated system:aggregated-metrics-reader role (and view, edit, admin)
// grant history too.

const (
	resourcePods  = "pods"
	resourceNodes = "nodes"
)

// authorize returns nil when the request's user may get resource in namespace ("" for
// nodes) of metrics.k8s.io, and a 403 that says which right is missing otherwise.
func (h *Handler) authorize(ctx context.Context, resource, namespace string) error {
	return authorizeMetrics(ctx, h.cfg.Authorizer, resource, namespace)
}

// RequireNodeMetrics returns a check that a request's user may get nodes.metrics.k8s.io:
// the right to read the whole cluster's usage, for APIs that are not split by namespace
// (the Prometheus-compatible one). The check's error says which right is missing.
func RequireNodeMetrics(a Authorizer) func(r *http.Request) error {
	return func(r *http.Request) error {
		return authorizeMetrics(r.Context(), a, resourceNodes, "")
	}
}

func authorizeMetrics(ctx context.Context, a Authorizer, resource, namespace string) error {
	u, ok := request.UserFrom(ctx)
	if !ok {
		return errUnauthenticated
	}
	attrs := authorizer.AttributesRecord{
		User:            u,
		Verb:            "get",
		Namespace:       namespace,
		APIGroup:        metrics.GroupName,
		APIVersion:      "*",
		Resource:        resource,
		ResourceRequest: true,
	}
	decision, reason, err := a.Authorize(ctx, attrs)
	if decision == authorizer.DecisionAllow {
		return nil
	}
	if err != nil {
		return fmt.Errorf("authorize %s: %w", u.GetName(), err)
	}
	where := "at the cluster scope"
	if namespace != "" {
		where = fmt.Sprintf("in the namespace %q", namespace)
	}
	msg := fmt.Sprintf("user %q cannot get resource %q in API group %q %s", u.GetName(), resource, metrics.GroupName, where)
	if reason != "" {
		msg += ": " + reason
	}
	return forbidden("%s", msg)
}
