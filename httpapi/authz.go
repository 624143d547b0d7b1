package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/hindsight-metrics/hindsight/httpapi/promapi"
)

// Who may read what, for both read APIs:
//
//   - a namespace's pod and container series (history: its pods, containers, workloads
//     and total) to whoever may get pods.metrics.k8s.io in that namespace;
//   - node series and the cluster to whoever may get nodes.metrics.k8s.io;
//   - everything, unfiltered, to whoever may get nodes.metrics.k8s.io AND list
//     pods.metrics.k8s.io cluster-wide: a cluster-wide reader.
//
// These are the rights that kubectl top needs, so the aggregated
// system:aggregated-metrics-reader role (and view, edit, admin) grant history too.
//
// A namespace-scoped reader (not cluster-wide) sees a namespace only from the creation
// of its current incarnation (Namespaces): a tenant who re-creates a deleted namespace's
// name does not read the previous owner's history. Cluster-wide readers see every
// incarnation.

const (
	resourcePods  = "pods"
	resourceNodes = "nodes"
)

// Namespaces tells the current incarnation of a namespace. inventory.Namespaces
// implements it over the namespace informer.
type Namespaces interface {
	// Incarnation returns the UID and creation time of the namespace called name as the
	// API server has it now; ok is false when there is none.
	Incarnation(name string) (uid string, created time.Time, ok bool)
}

// authorize returns nil when the request's user may get resource in namespace ("" for
// nodes) of metrics.k8s.io, and a 403 that says which right is missing otherwise.
func (h *Handler) authorize(ctx context.Context, resource, namespace string) error {
	return authorizeMetrics(ctx, h.cfg.Authorizer, "get", resource, namespace)
}

// RequireUser is the Prometheus-compatible API's Authorize: the request must have an
// authenticated user. What the user reads is decided per request by PrometheusScope.
func RequireUser(r *http.Request) error {
	if _, ok := request.UserFrom(r.Context()); !ok {
		return errUnauthenticated
	}
	return nil
}

// PrometheusScope returns the Prometheus-compatible API's Config.Scope over a and nss:
// a cluster-wide reader reads everything; any other user reads the node series if they
// may get nodes.metrics.k8s.io, plus the pod and container series of the namespaces the
// request names (each checked: get pods.metrics.k8s.io in it), each from its current
// incarnation's creation on. A namespace that does not exist now shows nothing to them.
// A request that names a namespace its user may not read is refused, as is one of a
// user who may read neither nodes nor a named namespace. A nil nss does not clamp.
func PrometheusScope(a Authorizer, nss Namespaces) promapi.ScopeFunc {
	return func(r *http.Request, named []string) (promapi.Scope, error) {
		ctx := r.Context()
		all, nodes, err := clusterWide(ctx, a)
		if err != nil {
			return promapi.Scope{}, err
		}
		if all {
			return promapi.Scope{All: true}, nil
		}
		if !nodes && len(named) == 0 {
			return promapi.Scope{}, forbidden("name the namespaces to read (a namespace parameter, or namespace matchers in the selectors): "+
				"reading every namespace takes get %s and list %s of API group %q at the cluster scope", resourceNodes, resourcePods, metrics.GroupName)
		}
		s := promapi.Scope{Nodes: nodes, Namespaces: make(map[string]time.Time, len(named))}
		for _, ns := range named {
			if err := authorizeMetrics(ctx, a, "get", resourcePods, ns); err != nil {
				return promapi.Scope{}, err
			}
			if nss == nil {
				s.Namespaces[ns] = time.Time{}
				continue
			}
			if _, created, ok := nss.Incarnation(ns); ok {
				s.Namespaces[ns] = created
			}
		}
		return s, nil
	}
}

// clusterWide says whether the request's user may read everything (get nodes and list
// pods of metrics.k8s.io cluster-wide) and whether they may read nodes.
func clusterWide(ctx context.Context, a Authorizer) (all, nodes bool, err error) {
	nodes, err = allowed(ctx, a, "get", resourceNodes, "")
	if err != nil || !nodes {
		return false, false, err
	}
	all, err = allowed(ctx, a, "list", resourcePods, "")
	return all, true, err
}

// readNamespace authorizes the history of namespace ns and, for a reader who is not
// cluster-wide, clamps q to the current incarnation of ns (see clampToIncarnation): its
// q.notBefore is then that incarnation's creation, zero when nothing was clamped.
func (h *Handler) readNamespace(ctx context.Context, q *query, ns string) error {
	if err := h.authorize(ctx, resourcePods, ns); err != nil {
		return err
	}
	if h.cfg.Namespaces == nil {
		return nil
	}
	all, _, err := clusterWide(ctx, h.cfg.Authorizer)
	if err != nil || all {
		return err
	}
	_, created, ok := h.cfg.Namespaces.Incarnation(ns)
	if !ok {
		return notFound("namespace %q does not exist now: the history of its earlier incarnations is visible to cluster-wide readers only", ns)
	}
	return h.clampToIncarnation(q, ns, created)
}

// clampToIncarnation makes q read nothing older than created: its grid starts at the first
// step at or after created, and tsdb.DB.Range reads no sample before created (NotBefore)
// however far back the first step's lookback reaches. A namespace queried moments after
// its creation therefore answers its first steps (gaps until its pods' first scrapes),
// not a 404.
func (h *Handler) clampToIncarnation(q *query, ns string, created time.Time) error {
	q.notBefore = created
	if !q.start.Before(created) {
		return nil
	}
	n := (created.Sub(q.start) + q.step - 1) / q.step
	start := q.start.Add(n * q.step)
	if start.After(q.end) {
		return notFound("the range ends before namespace %q was created (%s): the history of its earlier incarnations is visible to cluster-wide readers only",
			ns, created.UTC().Format(time.RFC3339))
	}
	q.start = start
	return nil
}

func allowed(ctx context.Context, a Authorizer, verb, resource, namespace string) (bool, error) {
	err := authorizeMetrics(ctx, a, verb, resource, namespace)
	switch {
	case err == nil:
		return true, nil
	case isForbidden(err):
		return false, nil
	}
	return false, err
}

func authorizeMetrics(ctx context.Context, a Authorizer, verb, resource, namespace string) error {
	u, ok := request.UserFrom(ctx)
	if !ok {
		return errUnauthenticated
	}
	attrs := authorizer.AttributesRecord{
		User:            u,
		Verb:            verb,
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
	msg := fmt.Sprintf("user %q cannot %s resource %q in API group %q %s", u.GetName(), verb, resource, metrics.GroupName, where)
	if reason != "" {
		msg += ": " + reason
	}
	return forbidden("%s", msg)
}
