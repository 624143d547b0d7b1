package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// rbacAuditPolicy logs every request of Hindsight's user, at Metadata (no bodies), and nothing else.
const rbacAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["system:hindsight"]
- level: None
`

const (
	hindsightUser = "system:hindsight"
	hindsightRole = "system:hindsight"
)

// rbacPending are rules of the ClusterRole granted for work in flight that does not read
// them yet. Once Hindsight reads one, TestRBAC fails until it is taken out of here (and
// given a removal case). None today.
var rbacPending = map[access]bool{}

// access is one (API group, resource[/subresource], verb).
type access struct{ group, resource, verb string }

func (a access) String() string { return fmt.Sprintf("%s %s.%s", a.verb, a.resource, a.group) }

// TestRBAC checks that the ClusterRole of deploy/kustomize/base/rbac.yaml is exactly what
// Hindsight uses, both ways, in one cluster whose kube-apiserver audits Hindsight's user
// and whose kubelets authorize like real ones (cluster.AuthorizingKubelet, in front of kwok):
//
//   - with the full role, Hindsight is ready, catalogs, scrapes with its client certificate
//     and no bearer token, and the set of accesses it made (audit log, plus the kubelets'
//     SubjectAccessReviews) equals the set the role grants;
//   - with each rule taken away in turn, Hindsight fails in the way that rule explains.
func TestRBAC(t *testing.T) {
	c := cluster.New(t, cluster.Options{AuditPolicy: rbacAuditPolicy})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	createFleet(ctx, t, c, []cluster.PodSpec{{Name: "web-0", Node: "kwok-a", Usage: cluster.Usage{CPU: "100m", Memory: "64Mi"}}})
	kubelet, err := c.StartAuthorizingKubelet()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kubelet.Close() })
	manifest, err := cluster.LoadHindsightRBAC()
	if err != nil {
		t.Fatal(err)
	}
	role := manifest.ClusterRole(hindsightRole)
	if role == nil {
		t.Fatalf("%s has no ClusterRole %s", cluster.HindsightRBACManifest, hindsightRole)
	}
	hc, err := adminHTTP(c)
	if err != nil {
		t.Fatal(err)
	}

	// Full role: ready, catalogued, scraping through the authorizing kubelet.
	start := time.Now()
	h, err := c.StartHindsight(ctx, cluster.HindsightOptions{ExtraArgs: []string{
		"--kubelet-use-node-status-port=false", "--kubelet-port=" + strconv.Itoa(kubelet.Port),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/readyz", "/readyz/catalog"} {
		if err := waitStatus(ctx, hc, h.Port, path, http.StatusOK, ""); err != nil {
			t.Fatal(err)
		}
	}
	scrape, err := kubelet.WaitRequest(ctx, 60*time.Second, hindsightUser, true)
	if err != nil {
		t.Fatal(err)
	}
	if scrape.Bearer {
		t.Error("Hindsight sent a bearer token to the kubelet beside its client certificate")
	}
	if err := h.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("full role: ready, catalogued and scraped in %s", time.Since(start).Round(100*time.Millisecond))
	if log := lastRun(h); strings.Contains(log, "forbidden") {
		t.Errorf("with the full role, Hindsight's log has a forbidden request:\n%s", log)
	}

	// Used == granted.
	used, err := auditedAccesses(c.AuditLogPath(), hindsightUser)
	if err != nil {
		t.Fatal(err)
	}
	used[access{resource: scrape.Attributes.Resource + "/" + scrape.Attributes.Subresource, verb: scrape.Attributes.Verb}] = true
	granted := grantedAccesses(role)
	for a := range used {
		switch {
		case delegatedAuth(a):
			// system:auth-delegator and extension-apiserver-authentication-reader, bound as shipped.
		case rbacPending[a]:
			t.Errorf("Hindsight now uses %s: take it out of rbacPending and give it a removal case", a)
		case !granted[a]:
			t.Errorf("Hindsight used %s, which %s does not grant", a, hindsightRole)
		}
	}
	for a := range granted {
		if !used[a] && !rbacPending[a] {
			t.Errorf("%s grants %s, which Hindsight did not use: remove it", hindsightRole, a)
		}
	}
	t.Logf("accesses used: %v; granted by %s: %d, of them pending (unused on purpose): %d", sortedAccesses(used), hindsightRole, len(granted), len(rbacPending))

	// Each rule taken away, one at a time.
	for i, rule := range role.Rules {
		first := access{group: rule.APIGroups[0], resource: rule.Resources[0], verb: rule.Verbs[0]}
		if rbacPending[first] {
			continue
		}
		t.Run(ruleName(rule), func(t *testing.T) {
			check, ok := removalChecks[first.resource]
			if !ok {
				t.Fatalf("rule %s has no removal check: add one to removalChecks", ruleName(rule))
			}
			rest := slices.Delete(slices.Clone(role.Rules), i, i+1)
			if err := c.SetClusterRoleRules(ctx, hindsightRole, rest); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.SetClusterRoleRules(ctx, hindsightRole, role.Rules); err != nil {
					t.Fatal(err)
				}
			}()
			if err := waitAllowed(ctx, c, first, false); err != nil {
				t.Fatal(err)
			}
			kubelet.Requests() // forget the earlier runs'
			start := time.Now()
			if err := c.LaunchHindsight(h); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := h.Stop(15 * time.Second); err != nil {
					t.Error(err)
				}
			}()
			for _, res := range rule.Resources {
				if strings.Contains(res, "/") {
					continue // a kubelet's authorization, not the kube-apiserver's
				}
				// The log is slog's text format, which escapes the quotes of the error it quotes.
				q := `\\?"`
				re := regexp.MustCompile(`cannot (list|watch) resource ` + q + regexp.QuoteMeta(res) + q + ` in API group ` + q + regexp.QuoteMeta(first.group) + q)
				if err := cluster.Poll(ctx, 60*time.Second, 250*time.Millisecond, "a forbidden "+res+" in Hindsight's log", func(context.Context) (bool, error) {
					return re.MatchString(lastRun(h)), nil
				}); err != nil {
					t.Error(err)
				}
			}
			if err := check(ctx, hc, h.Port, kubelet); err != nil {
				t.Error(err)
			}
			t.Logf("without %s: failed as expected within %s", ruleName(rule), time.Since(start).Round(100*time.Millisecond))
		})
	}
}

// removalChecks are, by the first resource of a rule, how Hindsight shows the rule missing
// (besides the forbidden list or watch in its log, for API resources).
var removalChecks = map[string]func(ctx context.Context, hc *http.Client, port int, k *cluster.AuthorizingKubelet) error{
	// The kubelet refuses the scrape.
	"nodes/metrics": func(ctx context.Context, _ *http.Client, _ int, k *cluster.AuthorizingKubelet) error {
		a, err := k.WaitRequest(ctx, 60*time.Second, hindsightUser, false)
		if err != nil {
			return err
		}
		if a.Attributes.Subresource != "metrics" || a.Attributes.Verb != "get" {
			return fmt.Errorf("kubelet refused %+v, want get nodes/metrics", a.Attributes)
		}
		return nil
	},
	// The metric informers never sync: not ready.
	"nodes": func(ctx context.Context, hc *http.Client, port int, _ *cluster.AuthorizingKubelet) error {
		return waitStatus(ctx, hc, port, "/readyz?verbose", http.StatusInternalServerError, "[-]metric-informer-sync failed")
	},
	// The pod metadata informer never syncs: not even live.
	"pods": func(ctx context.Context, hc *http.Client, port int, _ *cluster.AuthorizingKubelet) error {
		return waitStatus(ctx, hc, port, "/livez?verbose", http.StatusInternalServerError, "[-]metadata-informer-sync failed")
	},
	// The catalog cannot resolve owners, so its feed never syncs.
	"replicasets": catalogNotSynced,
	"jobs":        catalogNotSynced,
	// The namespace informer (namespace incarnations, for tenancy) never syncs; it does not
	// gate readiness (namespace-scoped readers see nothing until it syncs: it fails
	// closed), so the forbidden list and watch in the log are the whole sign.
	"namespaces": func(context.Context, *http.Client, int, *cluster.AuthorizingKubelet) error { return nil },
}

func catalogNotSynced(ctx context.Context, hc *http.Client, port int, _ *cluster.AuthorizingKubelet) error {
	return waitStatus(ctx, hc, port, "/readyz/catalog", http.StatusInternalServerError, "has not synced")
}

// waitStatus waits until GET path answers code with a body containing want.
func waitStatus(ctx context.Context, hc *http.Client, port int, path string, code int, want string) error {
	var last string
	err := cluster.Poll(ctx, 60*time.Second, 250*time.Millisecond, fmt.Sprintf("GET %s to answer %d", path, code), func(ctx context.Context) (bool, error) {
		got, body, err := get(ctx, hc, port, path)
		if err != nil {
			return false, err
		}
		last = fmt.Sprintf("%d %s", got, body)
		return got == code && strings.Contains(body, want), nil
	})
	if err != nil {
		return fmt.Errorf("%w (last answer: %.500s)", err, last)
	}
	return nil
}

// waitAllowed waits until the kube-apiserver's authorizer decides a for Hindsight's user as
// allowed says (RBAC changes reach it through an informer).
func waitAllowed(ctx context.Context, c *cluster.Cluster, a access, allowed bool) error {
	res, sub, _ := strings.Cut(a.resource, "/")
	return cluster.Poll(ctx, 30*time.Second, 100*time.Millisecond, fmt.Sprintf("%s allowed=%v for %s", a, allowed, hindsightUser), func(ctx context.Context) (bool, error) {
		sar, err := c.Client().AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: hindsightUser, ResourceAttributes: &authorizationv1.ResourceAttributes{Group: a.group, Resource: res, Subresource: sub, Verb: a.verb},
		}}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return sar.Status.Allowed == allowed, nil
	})
}

// lastRun returns Hindsight's log since its last start.
func lastRun(h *cluster.Hindsight) string {
	log := h.Tail(4 << 20)
	if i := strings.LastIndex(log, "starting hindsight"); i >= 0 {
		return log[i:]
	}
	return log
}

// auditedAccesses reads the accesses user made from a kube-apiserver JSON audit log.
func auditedAccesses(path, user string) (map[access]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	defer f.Close()
	used := map[access]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var ev struct {
			Verb       string `json:"verb"`
			RequestURI string `json:"requestURI"`
			User       struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef *struct {
				APIGroup    string `json:"apiGroup"`
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		if ev.User.Username != user || ev.ObjectRef == nil {
			continue // discovery and other non-resource URLs: every authenticated user's
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		used[access{group: ev.ObjectRef.APIGroup, resource: res, verb: ev.Verb}] = true
		if ev.Verb == "watch" && strings.Contains(ev.RequestURI, "sendInitialEvents=true") {
			// A streaming list (client-go's WatchListClient): the informer's list, which a
			// kube-apiserver without WatchList serves as a LIST, the fallback client-go takes.
			used[access{group: ev.ObjectRef.APIGroup, resource: res, verb: "list"}] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return used, nil
}

// grantedAccesses expands a role's rules.
func grantedAccesses(role *rbacv1.ClusterRole) map[access]bool {
	g := map[access]bool{}
	for _, r := range role.Rules {
		for _, group := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					g[access{group: group, resource: res, verb: v}] = true
				}
			}
		}
	}
	return g
}

// delegatedAuth reports whether a is granted by the built-in roles the manifest binds for
// delegated authentication and authorization, not by Hindsight's ClusterRole.
func delegatedAuth(a access) bool {
	switch {
	case a.group == "authentication.k8s.io" && a.resource == "tokenreviews" && a.verb == "create":
	case a.group == "authorization.k8s.io" && a.resource == "subjectaccessreviews" && a.verb == "create":
	case a.group == "" && a.resource == "configmaps": // kube-system/extension-apiserver-authentication
	default:
		return false
	}
	return true
}

func ruleName(r rbacv1.PolicyRule) string {
	return strings.Join(r.Verbs, ",") + " " + strings.Join(r.Resources, ",") + "." + strings.Join(r.APIGroups, ",")
}

func sortedAccesses(m map[access]bool) []string {
	s := make([]string, 0, len(m))
	for a := range m {
		s = append(s, a.String())
	}
	slices.Sort(s)
	return s
}
