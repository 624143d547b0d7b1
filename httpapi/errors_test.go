package httpapi

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestErrors: every refused request gets its status and a JSON body that says why,
// naming the parameter at fault.
func TestErrors(t *testing.T) {
	e := newEnv(t, defaultFixture())
	long := "a=" + strings.Repeat("b", maxParamLen)
	maxSeries1 := func(c *Config) { c.MaxSeries = 1 }
	const known = "start, end, step, resource, agg, summary, view, format, labelSelector, by, resolution"
	const aggs = "avg, min, max, count, or a percentile pNN or pNN.N (0 < NN < 100, at most 3 decimals: p50, p99.9)"
	for _, tc := range []struct {
		name, method, path string
		user               string // admin when empty
		cfg                func(*Config)
		status             int
		reason, param, msg string
	}{
		// Times and steps.
		{name: "bad start", path: "/cluster?start=yesterday", status: 400, reason: "BadParameter", param: "start",
			msg: `start: cannot parse "yesterday" to a valid timestamp`},
		{name: "bad end", path: "/cluster?end=2026-13-01T00:00:00Z", status: 400, reason: "BadParameter", param: "end",
			msg: `end: cannot parse "2026-13-01T00:00:00Z" to a valid timestamp`},
		{name: "bad relative start", path: "/cluster?start=now-", status: 400, reason: "BadParameter", param: "start",
			msg: `start: cannot parse "now-" to a valid timestamp: cannot parse "" to a valid duration`},
		{name: "start before 1970", path: "/cluster?start=1969-12-31T00:00:00Z", status: 400, reason: "BadParameter", param: "start",
			msg: `start: "1969-12-31T00:00:00Z" is outside 1970-2200`},
		{name: "end after 2200", path: "/cluster?end=7258118400", status: 400, reason: "BadParameter", param: "end",
			msg: `end: "7258118400" is outside 1970-2200`},
		{name: "bad step", path: "/cluster?step=abc", status: 400, reason: "BadParameter", param: "step",
			msg: `step: cannot parse "abc" to a valid duration`},
		{name: "negative step", path: "/cluster?step=-1m", status: 400, reason: "BadParameter", param: "step",
			msg: `step: cannot parse "-1m" to a valid duration`},
		{name: "step unit", path: "/cluster?step=5x", status: 400, reason: "BadParameter", param: "step",
			msg: `step: cannot parse "5x" to a valid duration`},
		{name: "step too small", path: "/cluster?step=0.5", status: 400, reason: "BadParameter", param: "step",
			msg: `step: 500ms is shorter than 1s`},
		{name: "zero step", path: "/cluster?step=0s", status: 400, reason: "BadParameter", param: "step",
			msg: `step: 0s is shorter than 1s`},
		{name: "step too long", path: "/cluster?step=3651d", status: 400, reason: "BadParameter", param: "step",
			msg: `step: "3651d" is longer than 10 years`},
		{name: "start after end", path: "/cluster?start=-1h&end=-2h", status: 400, reason: "BadParameter", param: "start",
			msg: `start: 2026-11-29T23:30:00Z is not before end 2026-11-29T22:30:00Z`},
		{name: "start at end", path: "/cluster?start=2026-11-30T00:00:00Z&end=1795996800", status: 400, reason: "BadParameter", param: "start",
			msg: `start: 2026-11-30T00:00:00Z is not before end 2026-11-30T00:00:00Z`},
		{name: "start after now", path: "/cluster?start=now%2B1h", status: 400, reason: "BadParameter", param: "start",
			msg: `start: 2026-11-30T01:30:00Z is not before end 2026-11-30T00:30:00Z`},
		// The parameters themselves.
		{name: "unknown parameter", path: "/cluster?stat=p95", status: 400, reason: "BadParameter", param: "stat",
			msg: `stat: unknown parameter; known: ` + known},
		{name: "unknown parameters", path: "/cluster?zz=1&lableSelector=a&step=1m", status: 400, reason: "BadParameter", param: "lableSelector",
			msg: `lableSelector: unknown parameter; known: ` + known},
		{name: "repeated parameter", path: "/cluster?step=1m&step=5m", status: 400, reason: "BadParameter", param: "step",
			msg: `step: given 2 times; give it once`},
		{name: "long parameter", path: "/nodes?labelSelector=" + long, status: 400, reason: "BadParameter", param: "labelSelector",
			msg: `labelSelector: 4098 bytes long, more than 4096`},
		{name: "unknown resource", path: "/cluster?resource=cpu,gpu", status: 400, reason: "BadParameter", param: "resource",
			msg: `resource: unknown resource "gpu"; known: cpu, memory, swap`},
		{name: "empty resource", path: "/cluster?resource=cpu,", status: 400, reason: "BadParameter", param: "resource",
			msg: `resource: unknown resource ""; known: cpu, memory, swap`},
		{name: "unknown agg", path: "/cluster?agg=mean", status: 400, reason: "BadParameter", param: "agg",
			msg: `agg: unknown aggregation "mean"; known: ` + aggs},
		{name: "unknown summary", path: "/cluster?summary=p95,p100", status: 400, reason: "BadParameter", param: "summary",
			msg: `summary: unknown aggregation "p100"; known: ` + aggs + `; or none`},
		{name: "unknown percentile", path: "/cluster?agg=p99.90", status: 400, reason: "BadParameter", param: "agg",
			msg: `agg: unknown aggregation "p99.90"; known: ` + aggs},
		{name: "unknown view", path: "/cluster?view=table", status: 400, reason: "BadParameter", param: "view",
			msg: `view: unknown view "table"; known: series, summary`},
		{name: "unknown format", path: "/cluster?format=xml", status: 400, reason: "BadParameter", param: "format",
			msg: `format: unknown format "xml"; known: json, csv`},
		{name: "unknown by", path: "/namespaces/shop?by=node", status: 400, reason: "BadParameter", param: "by",
			msg: `by: unknown grouping "node"; known: pod`},
		{name: "bad labelSelector", path: "/nodes?labelSelector=!!!", status: 400, reason: "BadParameter", param: "labelSelector",
			msg: `labelSelector: unable to parse requirement: found '!', expected: identifier`},
		{name: "error in CSV is JSON", path: "/cluster?format=csv&step=abc", status: 400, reason: "BadParameter", param: "step",
			msg: `step: cannot parse "abc" to a valid duration`},
		// Parameters an endpoint does not take.
		{name: "labelSelector of a node", path: "/nodes/n1?labelSelector=pool=a", status: 400, reason: "BadParameter", param: "labelSelector",
			msg: `labelSelector: not supported by one node`},
		{name: "labelSelector of namespaces", path: "/namespaces?labelSelector=app=web", status: 400, reason: "BadParameter", param: "labelSelector",
			msg: `labelSelector: not supported by namespaces`},
		{name: "labelSelector of a pod", path: "/namespaces/shop/pods/db-0?labelSelector=app=db", status: 400, reason: "BadParameter", param: "labelSelector",
			msg: `labelSelector: not supported by one pod`},
		{name: "labelSelector of a UID", path: "/pods/u-web-a/containers?labelSelector=app=db", status: 400, reason: "BadParameter", param: "labelSelector",
			msg: `labelSelector: not supported by one pod`},
		{name: "by of the cluster", path: "/cluster?by=pod", status: 400, reason: "BadParameter", param: "by",
			msg: `by: not supported by the cluster`},
		{name: "by of nodes", path: "/nodes?by=pod", status: 400, reason: "BadParameter", param: "by",
			msg: `by: not supported by nodes`},
		{name: "by of pods", path: "/namespaces/shop/pods?by=pod", status: 400, reason: "BadParameter", param: "by",
			msg: `by: not supported by pods`},
		// Limits.
		{name: "too many points", path: "/cluster?start=-30d&step=1s", status: 422, reason: "LimitExceeded",
			msg: `step 1s over 720h0m0s gives 2592001 points per series, more than the limit of 11000 (--history-max-points): use a step of at least 3m56s`},
		{name: "too many pods", path: "/namespaces/shop/pods", cfg: maxSeries1, status: 422, reason: "LimitExceeded",
			msg: `4 pods match, more than the limit of 1 series (--history-max-series): use a label selector or a shorter range`},
		{name: "too many incarnations", path: "/namespaces/shop/pods/db-0", cfg: maxSeries1, status: 422, reason: "LimitExceeded",
			msg: `2 pods match, more than the limit of 1 series (--history-max-series): use a label selector or a shorter range`},
		{name: "too many containers", path: "/pods/u-db-0-2/containers", cfg: maxSeries1, status: 422, reason: "LimitExceeded",
			msg: `2 containers, more than the limit of 1 series (--history-max-series)`},
		{name: "too many nodes", path: "/nodes", cfg: maxSeries1, status: 422, reason: "LimitExceeded",
			msg: `2 nodes match, more than the limit of 1 series (--history-max-series): use a label selector`},
		{name: "too many namespaces", path: "/namespaces", cfg: maxSeries1, status: 422, reason: "LimitExceeded",
			msg: `2 namespaces, more than the limit of 1 series (--history-max-series)`},
		// Objects that do not exist.
		{name: "unknown workload kind", path: "/namespaces/shop/foos/web", status: 404, reason: "NotFound",
			msg: `no history endpoint for "foos": known workloads are deployments, statefulsets, daemonsets, replicasets, jobs and cronjobs`},
		{name: "unknown pod", path: "/namespaces/shop/pods/nope", status: 404, reason: "NotFound", msg: `pod shop/nope was never seen`},
		{name: "unknown pod's containers", path: "/namespaces/shop/pods/nope/containers", status: 404, reason: "NotFound", msg: `pod shop/nope was never seen`},
		{name: "unknown node", path: "/nodes/n9", status: 404, reason: "NotFound", msg: `node "n9" was never seen`},
		{name: "unknown namespace", path: "/namespaces/nope", status: 404, reason: "NotFound", msg: `no pod of namespace "nope" was ever seen`},
		{name: "unknown namespace's pods", path: "/namespaces/nope/pods", status: 404, reason: "NotFound", msg: `no pod of namespace "nope" was ever seen`},
		{name: "unknown deployment", path: "/namespaces/shop/deployments/nope", status: 404, reason: "NotFound", msg: `no pod of Deployment shop/nope was ever seen`},
		{name: "statefulset by a deployment's name", path: "/namespaces/shop/statefulsets/web", status: 404, reason: "NotFound", msg: `no pod of StatefulSet shop/web was ever seen`},
		{name: "unknown UID", path: "/pods/nope", status: 404, reason: "NotFound", msg: `no pod with UID "nope" was seen in a namespace you may read`},
		// Methods and paths.
		{name: "POST", method: http.MethodPost, path: "/cluster", status: 405, reason: "MethodNotAllowed", msg: `POST is not allowed; the history API is read with GET`},
		{name: "HEAD", method: http.MethodHead, path: "/cluster", status: 405, reason: "MethodNotAllowed", msg: `HEAD is not allowed; the history API is read with GET`},
		{name: "DELETE of no endpoint", method: http.MethodDelete, path: "/nope", status: 405, reason: "MethodNotAllowed", msg: `DELETE is not allowed; the history API is read with GET`},
		{name: "unknown path", path: "/nope", status: 404, reason: "NotFound", msg: `no history endpoint at /history/v1/nope; GET /history/v1/ lists them`},
		{name: "below a pod", path: "/namespaces/shop/pods/web-a/logs", status: 404, reason: "NotFound", msg: `no history endpoint at /history/v1/namespaces/shop/pods/web-a/logs; GET /history/v1/ lists them`},
		// Authorization (see TestAuthorization for the matrix).
		{name: "nothing visible", user: "bob", path: "/namespaces", status: 403, reason: "Forbidden",
			msg: `no namespace's history is visible: that takes get pods.metrics.k8s.io in a namespace`},
		{name: "node denied", user: "alice", path: "/nodes/n1", status: 403, reason: "Forbidden",
			msg: `user "alice" cannot get resource "nodes" in API group "metrics.k8s.io" at the cluster scope: no RBAC policy matched`},
		{name: "namespace denied", user: "alice", path: "/namespaces/other/pods", status: 403, reason: "Forbidden",
			msg: `user "alice" cannot get resource "pods" in API group "metrics.k8s.io" in the namespace "other": no RBAC policy matched`},
		{name: "no user", user: "-", path: "/cluster", status: 401, reason: "Unauthorized", msg: `authentication required`},
		{name: "authorizer fails", user: "broken", path: "/cluster", status: 500, reason: "InternalError", msg: `authorize broken: webhook unreachable`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			h := newTestHandler(t, cfg)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			user := tc.user
			switch user {
			case "":
				user = "admin"
			case "-":
				user = ""
			}
			w := do(t, h, httptest.NewRequest(method, "/history/v1"+tc.path, nil), user)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, trim(w.Body.String()))
			}
			body := decodeError(t, w)
			if body.Reason != tc.reason || body.Parameter != tc.param || body.Message != tc.msg {
				t.Errorf("got  reason %q parameter %q message %q\nwant reason %q parameter %q message %q",
					body.Reason, body.Parameter, body.Message, tc.reason, tc.param, tc.msg)
			}
			if w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("no X-Content-Type-Options: nosniff")
			}
			if tc.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") != "GET" {
				t.Errorf("Allow %q, want GET", w.Header().Get("Allow"))
			}
		})
	}
}

// TestTooManyPointsSuggestion: the step that a 422 for too many points names is
// accepted, and is close to the smallest one: range / (max points - 1).
func TestTooManyPointsSuggestion(t *testing.T) {
	e := newEnv(t, defaultFixture())
	re := regexp.MustCompile(`\(--history-max-points\): use a step of at least (\S+)$`)
	for _, maxPoints := range []int{3, 10, 100, 11000} {
		cfg := e.config()
		cfg.MaxPoints = maxPoints
		h := newTestHandler(t, cfg)
		for _, r := range []struct{ start, end, step string }{
			{"-30d", "now", "1s"},
			{"-1h", "now", "15s"},
			{rfc(30 * time.Second), rfc(20 * time.Minute), "1s"},
			{rfc(59 * time.Second), rfc(61 * time.Second), "1s"},
			{rfc(7 * time.Second), rfc(3 * time.Hour), "1s"},
		} {
			path := "/history/v1/cluster?start=" + r.start + "&end=" + r.end + "&step="
			w := get(t, h, "admin", path+r.step)
			if w.Code == http.StatusOK {
				continue
			}
			if w.Code != http.StatusUnprocessableEntity {
				t.Fatalf("%s: status %d: %s", path, w.Code, w.Body)
			}
			m := re.FindStringSubmatch(decodeError(t, w).Message)
			if m == nil {
				t.Fatalf("%s: message %q names no step", path, decodeError(t, w).Message)
			}
			step, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatal(err)
			}
			start, err1 := parseTime(r.start, e.f.now)
			end, err2 := parseTime(r.end, e.f.now)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if lower := end.Sub(start) / time.Duration(maxPoints-1); step < lower || step > 2*lower+time.Second {
				t.Errorf("max %d points, %s: suggests %s, but the least possible is about %s", maxPoints, path, step, lower)
			}
			w = get(t, h, "admin", path+m[1])
			if w.Code != http.StatusOK {
				t.Errorf("max %d points: the suggested %s is refused: %d %s", maxPoints, path+m[1], w.Code, w.Body)
			} else if n := decode(t, w).Query.Points; n > maxPoints {
				t.Errorf("max %d points: %s answers %d points", maxPoints, path+m[1], n)
			}
		}
	}
}
