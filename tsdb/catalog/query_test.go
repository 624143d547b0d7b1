package catalog

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// uids returns the UIDs of pods, in order.
func uids(pods []PodRecord) []string {
	out := make([]string, 0, len(pods))
	for _, p := range pods {
		out = append(out, p.UID)
	}
	return out
}

// The acceptance test of issue 4: a pod deleted an hour ago is still in the catalog, found
// every way, with its owner and requests.
func TestDeletedPodFoundAnHourLater(t *testing.T) {
	t.Parallel()
	c, clk := newTestCatalog(t, Options{Retention: 30 * 24 * time.Hour})
	must(t, c.UpsertPod(webPod("u1", "web-1", "")))
	clk.Set(time.Second)
	must(t, c.UpsertPod(webPod("u1", "web-1", "n1"))) // scheduled
	clk.Set(10 * time.Minute)
	must(t, c.MarkPodDeleted("u1", time.Time{}))
	flush(t, c)
	clk.Set(70 * time.Minute)
	if n, err := c.Prune(t.Context()); err != nil || n != 0 {
		t.Fatalf("Prune = %d, %v; want nothing pruned within retention", n, err)
	}

	want := webPod("u1", "web-1", "n1")
	want.FirstSeen, want.LastSeen, want.Deleted, want.DeletedAt = at(0), at(10*time.Minute), true, at(10*time.Minute)
	for i := range want.Containers {
		ct := &want.Containers[i]
		ct.Changes = []ResourceChange{{At: at(0), Requests: ct.Requests, Limits: ct.Limits}}
	}
	now := at(70 * time.Minute)
	lookups := []struct {
		name string
		get  func() ([]PodRecord, error)
	}{
		{"by UID", func() ([]PodRecord, error) {
			p, err := c.Pod("u1")
			return []PodRecord{p}, err
		}},
		{"by name", func() ([]PodRecord, error) { return c.PodsByName("shop", "web-1") }},
		{"by namespace", func() ([]PodRecord, error) { return c.PodsInNamespace("shop", at(-time.Hour), now) }},
		{"by Deployment", func() ([]PodRecord, error) { return c.PodsByOwner("shop", "Deployment", "web", at(-time.Hour), now) }},
		{"by ReplicaSet", func() ([]PodRecord, error) {
			return c.PodsByOwner("shop", "ReplicaSet", "web-7d9f", at(-time.Hour), now)
		}},
		{"by node", func() ([]PodRecord, error) { return c.PodsOnNode("n1", at(-time.Hour), now) }},
		{"by label selector", func() ([]PodRecord, error) {
			return c.PodsMatching("shop", func(l map[string]string) bool { return l["app"] == "web" }, at(-time.Hour), now)
		}},
	}
	for _, l := range lookups {
		got, err := l.get()
		if err != nil {
			t.Errorf("%s: %v", l.name, err)
			continue
		}
		if diff := cmp.Diff([]PodRecord{want}, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", l.name, diff)
		}
	}
	got, err := c.Pod("u1")
	if err != nil {
		t.Fatal(err)
	}
	if req, ok := got.Containers[1].At(at(5 * time.Minute)); !ok || req.Requests[cpu] != 250 || req.Limits[mem] != 512<<20 {
		t.Errorf("web container's resources five minutes in: %+v, %t", req, ok)
	}
	// After its deletion the pod is outside every range.
	if pods, err := c.PodsOnNode("n1", at(20*time.Minute), now); err != nil || len(pods) != 0 {
		t.Errorf("pods on n1 after the deletion: %v, %v; want none", uids(pods), err)
	}
}

func TestSameNameNewUID(t *testing.T) {
	t.Parallel()
	c, clk := newTestCatalog(t, Options{})
	db := func(uid, node string) PodRecord {
		return PodRecord{UID: uid, Namespace: "data", Name: "db-0", Node: node,
			Owner: Owner{Kind: "StatefulSet", Name: "db"}, Controller: Owner{Kind: "StatefulSet", Name: "db"}}
	}
	must(t, c.UpsertPod(db("old", "n1")))
	clk.Set(time.Hour)
	must(t, c.MarkPodDeleted("old", time.Time{}))
	clk.Set(time.Hour + time.Minute)
	must(t, c.UpsertPod(db("new", "")))
	clk.Set(time.Hour + 2*time.Minute)
	must(t, c.UpsertPod(db("new", "n2")))
	flush(t, c)

	tests := []struct {
		name string
		get  func() ([]PodRecord, error)
		want []string
	}{
		{"by name, oldest first", func() ([]PodRecord, error) { return c.PodsByName("data", "db-0") }, []string{"old", "new"}},
		{"by name, other namespace", func() ([]PodRecord, error) { return c.PodsByName("shop", "db-0") }, []string{}},
		{"by name, prefix only", func() ([]PodRecord, error) { return c.PodsByName("data", "db") }, []string{}},
		{"by owner, whole history", func() ([]PodRecord, error) {
			return c.PodsByOwner("data", "StatefulSet", "db", time.Time{}, time.Time{})
		}, []string{"old", "new"}},
		{"by owner, before the recreation", func() ([]PodRecord, error) {
			return c.PodsByOwner("data", "StatefulSet", "db", at(0), at(time.Hour))
		}, []string{"old"}},
		{"by owner, after the deletion", func() ([]PodRecord, error) {
			return c.PodsByOwner("data", "StatefulSet", "db", at(time.Hour+time.Second), time.Time{})
		}, []string{"new"}},
		{"on the old node", func() ([]PodRecord, error) { return c.PodsOnNode("n1", time.Time{}, time.Time{}) }, []string{"old"}},
		{"on the new node", func() ([]PodRecord, error) { return c.PodsOnNode("n2", time.Time{}, time.Time{}) }, []string{"new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.get()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, uids(got)); diff != "" {
				t.Errorf("UIDs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTimeRanges(t *testing.T) {
	t.Parallel()
	c, clk := newTestCatalog(t, Options{})
	// "early" lived from 0 to 10m; "live" was first seen at 20m and still exists,
	// although its last event is from 21m.
	must(t, c.UpsertPod(webPod("early", "web-early", "n1")))
	clk.Set(10 * time.Minute)
	must(t, c.MarkPodDeleted("early", time.Time{}))
	clk.Set(20 * time.Minute)
	must(t, c.UpsertPod(webPod("live", "web-live", "n1")))
	clk.Set(21 * time.Minute)
	must(t, c.UpsertPod(webPod("live", "web-live", "n1")))
	flush(t, c)

	tests := []struct {
		name     string
		from, to time.Time
		want     []string
	}{
		{"unbounded", time.Time{}, time.Time{}, []string{"early", "live"}},
		{"before everything", at(-time.Hour), at(-time.Minute), []string{}},
		{"ends at the first sighting", at(-time.Hour), at(0), []string{"early"}},
		{"starts at the deletion", at(10 * time.Minute), at(15 * time.Minute), []string{"early"}},
		{"gap between them", at(11 * time.Minute), at(19 * time.Minute), []string{}},
		{"long after the live pod's last event", at(48 * time.Hour), at(49 * time.Hour), []string{"live"}},
		{"open end", at(5 * time.Minute), time.Time{}, []string{"early", "live"}},
		{"open start", time.Time{}, at(5 * time.Minute), []string{"early"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, get := range map[string]func() ([]PodRecord, error){
				"namespace": func() ([]PodRecord, error) { return c.PodsInNamespace("shop", tt.from, tt.to) },
				"owner":     func() ([]PodRecord, error) { return c.PodsByOwner("shop", "Deployment", "web", tt.from, tt.to) },
				"node":      func() ([]PodRecord, error) { return c.PodsOnNode("n1", tt.from, tt.to) },
				"labels":    func() ([]PodRecord, error) { return c.PodsMatching("", nil, tt.from, tt.to) },
			} {
				got, err := get()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if diff := cmp.Diff(tt.want, uids(got)); diff != "" {
					t.Errorf("%s: UIDs (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

func TestListsAreSortedAndSelective(t *testing.T) {
	t.Parallel()
	c, clk := newTestCatalog(t, Options{})
	pods := []PodRecord{
		{UID: "z", Namespace: "b", Name: "x", Labels: map[string]string{"app": "x"}},
		{UID: "y", Namespace: "a", Name: "y", Labels: map[string]string{"app": "y"}},
		{UID: "x", Namespace: "a", Name: "x", Labels: map[string]string{"app": "x"}},
		{UID: "w", Namespace: "a", Name: "x", Labels: map[string]string{"app": "x", "v": "2"}},
		{UID: "v", Namespace: "ab", Name: "x"},
	}
	for i, p := range pods {
		clk.Set(time.Duration(i) * time.Minute)
		must(t, c.UpsertPod(p))
	}
	for _, n := range []string{"n3", "n1", "n2"} {
		must(t, c.UpsertNode(NodeRecord{Name: n}))
	}
	flush(t, c)

	all, err := c.PodsInNamespace("", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// By namespace, name, then FirstSeen: x (first seen at 2m) before w (3m).
	if diff := cmp.Diff([]string{"x", "w", "y", "v", "z"}, uids(all)); diff != "" {
		t.Errorf("all pods (-want +got):\n%s", diff)
	}
	inA, err := c.PodsInNamespace("a", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"x", "w", "y"}, uids(inA)); diff != "" {
		t.Errorf("namespace a, not ab (-want +got):\n%s", diff)
	}
	appX, err := c.PodsMatching("a", func(l map[string]string) bool { return l["app"] == "x" }, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"x", "w"}, uids(appX)); diff != "" {
		t.Errorf("app=x in a (-want +got):\n%s", diff)
	}
	ns, err := c.Namespaces()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "ab", "b"}, ns); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
	nodes, err := c.Nodes(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	if !slices.Equal(names, []string{"n1", "n2", "n3"}) {
		t.Errorf("nodes %v, want n1 n2 n3", names)
	}
}

func TestNodesInRange(t *testing.T) {
	t.Parallel()
	c, clk := newTestCatalog(t, Options{})
	must(t, c.UpsertNode(NodeRecord{Name: "gone"}))
	must(t, c.UpsertNode(NodeRecord{Name: "live"}))
	clk.Set(time.Hour)
	must(t, c.MarkNodeDeleted("gone", time.Time{}))
	flush(t, c)
	for _, tt := range []struct {
		from time.Time
		want []string
	}{
		{at(0), []string{"gone", "live"}},
		{at(2 * time.Hour), []string{"live"}},
	} {
		nodes, err := c.Nodes(tt.from, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range nodes {
			got = append(got, n.Name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Nodes(%s, ∞) = %v, want %v", tt.from, got, tt.want)
		}
	}
}

func TestMaxResults(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalog(t, Options{MaxResults: 3})
	for i := range 4 {
		must(t, c.UpsertPod(webPod(fmt.Sprint("u", i), fmt.Sprint("web-", i), "n1")))
		must(t, c.UpsertNode(NodeRecord{Name: fmt.Sprint("n", i)}))
	}
	must(t, c.UpsertPod(PodRecord{UID: "other", Namespace: "shop", Name: "other"}))
	flush(t, c)
	for name, get := range map[string]func() ([]PodRecord, error){
		"namespace": func() ([]PodRecord, error) { return c.PodsInNamespace("shop", time.Time{}, time.Time{}) },
		"owner": func() ([]PodRecord, error) {
			return c.PodsByOwner("shop", "Deployment", "web", time.Time{}, time.Time{})
		},
		"node": func() ([]PodRecord, error) { return c.PodsOnNode("n1", time.Time{}, time.Time{}) },
		"labels": func() ([]PodRecord, error) {
			return c.PodsMatching("shop", func(l map[string]string) bool { return l["app"] == "web" }, time.Time{}, time.Time{})
		},
	} {
		if pods, err := get(); !errors.Is(err, ErrTooMany) || pods != nil {
			t.Errorf("%s: %d pods, %v; want ErrTooMany", name, len(pods), err)
		}
	}
	if _, err := c.Nodes(time.Time{}, time.Time{}); !errors.Is(err, ErrTooMany) {
		t.Errorf("Nodes: %v, want ErrTooMany", err)
	}
	// The limit counts matches, not candidates.
	pods, err := c.PodsMatching("shop", func(l map[string]string) bool { return l["app"] != "web" }, time.Time{}, time.Time{})
	if err != nil || len(pods) != 1 {
		t.Errorf("selective label match: %v, %v; want one pod", uids(pods), err)
	}
	if _, err := c.Pod("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Pod(nope) = %v, want ErrNotFound", err)
	}
}
