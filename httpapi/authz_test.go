package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// TestAuthorization: a namespace's history takes get pods.metrics.k8s.io there; nodes
// and the cluster take get nodes.metrics.k8s.io; nobody learns of what they may not read.
func TestAuthorization(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	q := "?" + goldenRange
	for _, tc := range []struct {
		user, path string
		status     int
	}{
		// alice reads shop and nothing else.
		{"alice", "/namespaces/shop", 200},
		{"alice", "/namespaces/shop?by=pod", 200},
		{"alice", "/namespaces/shop/pods", 200},
		{"alice", "/namespaces/shop/pods/web-a", 200},
		{"alice", "/namespaces/shop/pods/db-0/containers", 200},
		{"alice", "/namespaces/shop/deployments/web", 200},
		{"alice", "/namespaces/shop/statefulsets/db", 200},
		{"alice", "/pods/u-web-b", 200},
		{"alice", "/pods/u-web-b/containers", 200},
		{"alice", "/namespaces", 200},
		{"alice", "/namespaces/other", 403},
		{"alice", "/namespaces/other/pods", 403},
		{"alice", "/namespaces/other/pods/x", 403},
		{"alice", "/namespaces/other/pods/x/containers", 403},
		{"alice", "/namespaces/other/deployments/nope", 403}, // not 404: nothing is told of other
		{"alice", "/namespaces/nope", 403},
		// By UID, a pod of another namespace is answered as an unknown UID (see
		// TestUIDOfAnotherNamespace).
		{"alice", "/pods/u-x", 404},
		{"alice", "/pods/u-x/containers", 404},
		{"alice", "/nodes", 403},
		{"alice", "/nodes/n1", 403},
		{"alice", "/nodes/n9", 403},
		{"alice", "/cluster", 403},
		// nodereader reads nodes and the cluster only.
		{"nodereader", "/nodes", 200},
		{"nodereader", "/nodes/n1", 200},
		{"nodereader", "/cluster", 200},
		{"nodereader", "/namespaces", 403},
		{"nodereader", "/namespaces/shop", 403},
		// bob reads nothing.
		{"bob", "/namespaces", 403},
		{"bob", "/namespaces/shop", 403},
		{"bob", "/namespaces/shop/pods/web-a", 403},
		{"bob", "/cluster", 403},
		{"bob", "/pods/u-web-a", 404},
		// admin reads everything.
		{"admin", "/namespaces/other/pods/x", 200},
		{"admin", "/cluster", 200},
		// An authorizer that fails is an internal error, not a denial.
		{"broken", "/cluster", 500},
		{"broken", "/namespaces", 500},
		// No user: 401, before anything else.
		{"", "/cluster", 401},
		{"", "/namespaces", 401},
		{"", "/namespaces/shop/pods", 401},
		{"", "/nope", 401},
		{"", "/", 401},
	} {
		t.Run(tc.user+tc.path, func(t *testing.T) {
			sep := q
			if strings.Contains(tc.path, "?") {
				sep = "&" + q[1:]
			}
			w := get(t, h, tc.user, "/history/v1"+tc.path+sep)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, trim(w.Body.String()))
			}
			if tc.status == 200 {
				return
			}
			body := decodeError(t, w)
			reason := map[int]string{401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 500: "InternalError"}[tc.status]
			if body.Reason != reason || body.Message == "" {
				t.Errorf("reason %q message %q, want reason %q", body.Reason, body.Message, reason)
			}
			if tc.status == 403 && tc.user == "alice" && strings.Contains(tc.path, "other") && !strings.Contains(body.Message, `"other"`) {
				t.Errorf("message %q does not say which namespace was refused", body.Message)
			}
		})
	}
}

// TestUIDOfAnotherNamespace: a pod's UID answers whoever may read its namespace; to
// anyone else, it is a UID never seen, so that UIDs tell nothing of other namespaces.
func TestUIDOfAnotherNamespace(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	for _, user := range []string{"alice", "bob"} {
		for _, suffix := range []string{"", "/containers"} {
			unknown := get(t, h, user, "/history/v1/pods/u-never"+suffix+"?"+goldenRange)
			other := get(t, h, user, "/history/v1/pods/u-x"+suffix+"?"+goldenRange)
			if other.Code != unknown.Code || other.Code != http.StatusNotFound {
				t.Errorf("%s%s: u-x gives %d, an unknown UID %d; want 404 for both", user, suffix, other.Code, unknown.Code)
			}
			if got, want := strings.ReplaceAll(other.Body.String(), "u-x", "U"), strings.ReplaceAll(unknown.Body.String(), "u-never", "U"); got != want {
				t.Errorf("%s%s: u-x answers %s, an unknown UID %s", user, suffix, got, want)
			}
			if strings.Contains(other.Body.String(), "other") {
				t.Errorf("%s%s: the answer names the pod's namespace: %s", user, suffix, other.Body)
			}
		}
	}
	if w := get(t, h, "admin", "/history/v1/pods/u-x?"+goldenRange); w.Code != http.StatusOK {
		t.Errorf("admin: u-x gives %d", w.Code)
	}
}

// TestNamespacesListsOnlyVisible: /namespaces answers the namespaces the user may read,
// and nothing of the others, in any format.
func TestNamespacesListsOnlyVisible(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	for _, format := range []string{"json", "csv"} {
		w := get(t, h, "alice", "/history/v1/namespaces?format="+format+"&"+goldenRange)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", format, w.Code, w.Body)
		}
		if strings.Contains(w.Body.String(), "other") || strings.Contains(w.Body.String(), "u-x") {
			t.Errorf("%s: alice's namespaces mention another namespace:\n%s", format, w.Body)
		}
		if format == "json" {
			r := decode(t, w)
			if len(r.Series) != 1 || r.Series[0].Object.Name != "shop" {
				t.Errorf("alice's namespaces: %d series, want shop only", len(r.Series))
			}
			// shop's total is the same as admin's: alice's view is not a partial sum.
			a := decode(t, get(t, h, "admin", "/history/v1/namespaces?"+goldenRange))
			shop := seriesOf(t, a, "Namespace", "shop")
			for res, rr := range shop.Resources {
				checkValues(t, "shop "+res, r.Series[0].Resources[res].Values, values(rr.Values))
			}
		}
	}
	// admin sees both.
	r := decode(t, get(t, h, "admin", "/history/v1/namespaces?"+goldenRange))
	if len(r.Series) != 2 || r.Series[0].Object.Name != "other" || r.Series[1].Object.Name != "shop" {
		t.Errorf("admin's namespaces: %d series, want other and shop", len(r.Series))
	}
}

// TestAuthorizerAttributes: the attributes asked are those of kubectl top.
func TestAuthorizerAttributes(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	for _, tc := range []struct {
		path, resource, namespace string
		calls                     int
	}{
		{"/cluster", "nodes", "", 1},
		{"/nodes/n1", "nodes", "", 1},
		{"/namespaces/shop/pods/web-a", "pods", "shop", 1},
		{"/pods/u-x", "pods", "other", 1},
		{"/namespaces/shop/deployments/web", "pods", "shop", 1},
		{"/namespaces", "pods", "shop", 2}, // one per namespace; shop is the last
	} {
		before := e.authz.count()
		w := get(t, h, "admin", "/history/v1"+tc.path+"?"+goldenRange)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.path, w.Code, w.Body)
		}
		e.authz.mu.Lock()
		calls := e.authz.calls[before:]
		e.authz.mu.Unlock()
		if len(calls) != tc.calls {
			t.Fatalf("%s: %d authorizer calls, want %d", tc.path, len(calls), tc.calls)
		}
		a := calls[len(calls)-1]
		want := authorizer.AttributesRecord{Verb: "get", APIGroup: "metrics.k8s.io", APIVersion: "*", Resource: tc.resource, Namespace: tc.namespace, ResourceRequest: true}
		if a.GetVerb() != want.Verb || a.GetAPIGroup() != want.APIGroup || a.GetResource() != want.Resource ||
			a.GetNamespace() != want.Namespace || !a.IsResourceRequest() || a.GetSubresource() != "" || a.GetName() != "" {
			t.Errorf("%s: asked %s %s/%s in %q (resource request %v)", tc.path, a.GetVerb(), a.GetAPIGroup(), a.GetResource(), a.GetNamespace(), a.IsResourceRequest())
		}
		if a.GetUser() == nil || a.GetUser().GetName() != "admin" {
			t.Errorf("%s: asked for user %v", tc.path, a.GetUser())
		}
	}
}
