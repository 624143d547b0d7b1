package catalog

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// resized returns p with the web container's requests and limits replaced.
func resized(p PodRecord, req, lim map[string]int64) PodRecord {
	p.Containers = []ContainerSpec{p.Containers[0], {Name: "web", Requests: req, Limits: lim}}
	return p
}

func TestUpsertPodMerge(t *testing.T) {
	t.Parallel()
	base := webPod("u1", "web-1", "")
	scheduled := webPod("u1", "web-1", "n1")
	// step is one operation at a simulated time.
	type step struct {
		at     time.Duration
		upsert *PodRecord
		delete bool
	}
	up := func(d time.Duration, p PodRecord) step { return step{at: d, upsert: &p} }
	del := func(d time.Duration) step { return step{at: d, delete: true} }
	initDB := func() ContainerSpec {
		return ContainerSpec{Name: "init-db", Init: true, Requests: res(50, 32<<20),
			Changes: []ResourceChange{{At: at(0), Requests: res(50, 32<<20)}}}
	}
	web := func(changes ...ResourceChange) ContainerSpec {
		last := changes[len(changes)-1]
		return ContainerSpec{Name: "web", Requests: last.Requests, Limits: last.Limits, Changes: changes}
	}
	orig := ResourceChange{At: at(0), Requests: res(250, 256<<20), Limits: res(1000, 512<<20)}
	want := func(mod func(*PodRecord)) PodRecord {
		r := base
		r.Containers = []ContainerSpec{initDB(), web(orig)}
		r.FirstSeen, r.LastSeen = at(0), at(0)
		mod(&r)
		return r
	}
	withCreation := base
	withCreation.FirstSeen = at(-time.Hour)
	relabeled := scheduled
	relabeled.Labels = map[string]string{"app": "web", "tier": "front"}
	noInit := scheduled
	noInit.Containers = noInit.Containers[1:]

	tests := []struct {
		name  string
		steps []step
		want  PodRecord
	}{
		{
			name:  "new pod",
			steps: []step{up(0, base)},
			want:  want(func(*PodRecord) {}),
		},
		{
			name:  "same resources advance LastSeen only",
			steps: []step{up(0, base), up(time.Minute, base), up(2*time.Minute, base)},
			want:  want(func(r *PodRecord) { r.LastSeen = at(2 * time.Minute) }),
		},
		{
			name:  "scheduling sets the node",
			steps: []step{up(0, base), up(time.Minute, scheduled)},
			want:  want(func(r *PodRecord) { r.Node, r.LastSeen = "n1", at(time.Minute) }),
		},
		{
			name:  "labels are replaced",
			steps: []step{up(0, base), up(time.Minute, relabeled)},
			want: want(func(r *PodRecord) {
				r.Node, r.LastSeen, r.Labels = "n1", at(time.Minute), map[string]string{"app": "web", "tier": "front"}
			}),
		},
		{
			name: "in-place resize appends changes",
			steps: []step{
				up(0, base),
				up(time.Minute, resized(base, res(500, 256<<20), res(1000, 512<<20))),
				up(2*time.Minute, resized(base, res(500, 256<<20), res(1000, 512<<20))),
				up(3*time.Minute, resized(base, res(500, 256<<20), nil)),
				up(4*time.Minute, base),
			},
			want: want(func(r *PodRecord) {
				r.LastSeen = at(4 * time.Minute)
				r.Containers[1] = web(orig,
					ResourceChange{At: at(time.Minute), Requests: res(500, 256<<20), Limits: res(1000, 512<<20)},
					ResourceChange{At: at(3 * time.Minute), Requests: res(500, 256<<20)},
					ResourceChange{At: at(4 * time.Minute), Requests: res(250, 256<<20), Limits: res(1000, 512<<20)},
				)
			}),
		},
		{
			name:  "older observation changes nothing",
			steps: []step{up(time.Minute, base), up(0, resized(scheduled, res(1, 1), nil))},
			want: want(func(r *PodRecord) {
				r.LastSeen = at(time.Minute)
				r.Containers[0].Changes[0].At = at(time.Minute)
				r.Containers[1].Changes[0].At = at(time.Minute)
			}),
		},
		{
			name:  "caller's creation time moves FirstSeen back",
			steps: []step{up(0, base), up(time.Minute, withCreation)},
			want: want(func(r *PodRecord) {
				r.FirstSeen, r.LastSeen = at(-time.Hour), at(time.Minute)
			}),
		},
		{
			name:  "deletion",
			steps: []step{up(0, scheduled), del(10 * time.Minute)},
			want: want(func(r *PodRecord) {
				r.Node, r.Deleted, r.DeletedAt, r.LastSeen = "n1", true, at(10*time.Minute), at(10*time.Minute)
			}),
		},
		{
			name:  "second deletion keeps the first",
			steps: []step{up(0, base), del(time.Minute), del(2 * time.Minute)},
			want: want(func(r *PodRecord) {
				r.Deleted, r.DeletedAt, r.LastSeen = true, at(time.Minute), at(time.Minute)
			}),
		},
		{
			name:  "observation at the deletion time does not revive",
			steps: []step{up(0, base), del(time.Minute), up(time.Minute, scheduled)},
			want: want(func(r *PodRecord) {
				r.Deleted, r.DeletedAt, r.LastSeen = true, at(time.Minute), at(time.Minute)
			}),
		},
		{
			name:  "observation after the deletion revives",
			steps: []step{up(0, base), del(time.Minute), up(2*time.Minute, scheduled)},
			want:  want(func(r *PodRecord) { r.Node, r.LastSeen = "n1", at(2*time.Minute) }),
		},
		{
			name: "two resizes at one time keep the later",
			steps: []step{
				up(0, base),
				up(time.Minute, resized(base, res(500, 256<<20), nil)),
				up(time.Minute, resized(base, res(600, 256<<20), nil)),
			},
			want: want(func(r *PodRecord) {
				r.LastSeen = at(time.Minute)
				r.Containers[1] = web(orig, ResourceChange{At: at(time.Minute), Requests: res(600, 256<<20)})
			}),
		},
		{
			name:  "a vanished container keeps its history",
			steps: []step{up(0, scheduled), up(time.Minute, noInit)},
			want: want(func(r *PodRecord) {
				r.Node, r.LastSeen = "n1", at(time.Minute)
				r.Containers = []ContainerSpec{r.Containers[1], r.Containers[0]}
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, clk := newTestCatalog(t, Options{})
			for _, s := range tt.steps {
				clk.Set(s.at)
				if s.delete {
					must(t, c.MarkPodDeleted("u1", time.Time{}))
				} else {
					must(t, c.UpsertPod(*s.upsert))
				}
			}
			flush(t, c)
			got, err := c.Pod("u1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
			// Flushing after every step gives the same record.
			c2, clk2 := newTestCatalog(t, Options{})
			for _, s := range tt.steps {
				clk2.Set(s.at)
				if s.delete {
					must(t, c2.MarkPodDeleted("u1", time.Time{}))
				} else {
					must(t, c2.UpsertPod(*s.upsert))
				}
				flush(t, c2)
			}
			got2, err := c2.Pod("u1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, got2); diff != "" {
				t.Errorf("one flush per step differs from one flush (-one +each):\n%s", diff)
			}
		})
	}
}

func TestUpsertDoesNotShareCallerMaps(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalog(t, Options{})
	p := webPod("u1", "web-1", "n1")
	must(t, c.UpsertPod(p))
	p.Labels["app"] = "changed"
	p.Containers[1].Requests[cpu] = 1
	flush(t, c)
	got, err := c.Pod("u1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels["app"] != "web" || got.Containers[1].Requests[cpu] != 250 {
		t.Errorf("record changed with the caller's maps: %+v", got)
	}
}

func TestContainerAt(t *testing.T) {
	t.Parallel()
	ct := ContainerSpec{Name: "web", Changes: []ResourceChange{
		{At: at(0), Requests: res(100, 1)},
		{At: at(time.Hour), Requests: res(200, 1)},
	}}
	tests := []struct {
		name string
		at   time.Time
		want ResourceChange
		ok   bool
	}{
		{"before first seen", at(-time.Second), ResourceChange{}, false},
		{"at first change", at(0), ct.Changes[0], true},
		{"between", at(time.Minute), ct.Changes[0], true},
		{"at second change", at(time.Hour), ct.Changes[1], true},
		{"after", at(48 * time.Hour), ct.Changes[1], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ct.At(tt.at)
			if ok != tt.ok {
				t.Errorf("At(%s) ok = %t, want %t", tt.at, ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("At(%s) (-want +got):\n%s", tt.at, diff)
			}
		})
	}
}

func TestUpsertNodeMerge(t *testing.T) {
	t.Parallel()
	c, clk := newTestCatalog(t, Options{})
	n := NodeRecord{
		Name: "n1", UID: "nu1", Labels: map[string]string{"topology.kubernetes.io/zone": "a"},
		Capacity: res(4000, 16<<30), Allocatable: res(3800, 15<<30), Zone: "a", InstanceType: "m5.xlarge",
	}
	must(t, c.UpsertNode(n))
	clk.Set(time.Minute)
	n2 := n
	n2.Allocatable = res(3500, 14<<30)
	must(t, c.UpsertNode(n2))
	clk.Set(2 * time.Minute)
	must(t, c.MarkNodeDeleted("n1", time.Time{}))
	must(t, c.MarkNodeDeleted("unknown", time.Time{}))
	flush(t, c)
	got, err := c.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	want := n2
	want.FirstSeen, want.LastSeen, want.Deleted, want.DeletedAt = at(0), at(2*time.Minute), true, at(2*time.Minute)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deleted node (-want +got):\n%s", diff)
	}

	// Recreated under the same name: the record is revived with the new UID.
	clk.Set(time.Hour)
	n3 := n2
	n3.UID = "nu2"
	must(t, c.UpsertNode(n3))
	flush(t, c)
	got, err = c.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	want = n3
	want.FirstSeen, want.LastSeen = at(0), at(time.Hour)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recreated node (-want +got):\n%s", diff)
	}
	if _, err := c.Node("unknown"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Node(unknown) = %v, want ErrNotFound", err)
	}
}

func TestUpsertRejectsInvalidRecords(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalog(t, Options{})
	valid := webPod("u1", "web-1", "n1")
	tests := []struct {
		name string
		mod  func(*PodRecord)
		want string
	}{
		{"empty UID", func(r *PodRecord) { r.UID = "" }, "uid is empty"},
		{"empty namespace", func(r *PodRecord) { r.Namespace = "" }, "namespace is empty"},
		{"empty name", func(r *PodRecord) { r.Name = "" }, "name is empty"},
		{"NUL in node", func(r *PodRecord) { r.Node = "a\x00b" }, "node contains a NUL byte"},
		{"long owner", func(r *PodRecord) { r.Owner.Name = strings.Repeat("x", 2000) }, "owner name is 2000 bytes long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid
			tt.mod(&r)
			err := c.UpsertPod(r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("UpsertPod = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if err := c.UpsertNode(NodeRecord{}); err == nil {
		t.Error("UpsertNode of a nameless node succeeded")
	}
	if q := c.Stats().Queued; q != 0 {
		t.Errorf("%d invalid records queued", q)
	}
}

func TestOneTransactionPerFlush(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalog(t, Options{BatchSize: 10_000})
	flush(t, c) // an empty queue writes nothing
	if n := c.Stats().WriteTxs; n != 0 {
		t.Fatalf("empty flush: %d write transactions, want 0", n)
	}
	for i := range 1000 {
		must(t, c.UpsertPod(webPod(fmt.Sprint("u", i), fmt.Sprint("web-", i), "n1")))
		if i%10 == 0 {
			must(t, c.MarkPodDeleted(fmt.Sprint("u", i), time.Time{}))
		}
	}
	must(t, c.UpsertNode(NodeRecord{Name: "n1"}))
	if q := c.Stats().Queued; q != 1101 {
		t.Errorf("queued %d records, want 1101", q)
	}
	flush(t, c)
	if s := c.Stats(); s.WriteTxs != 1 || s.Queued != 0 {
		t.Errorf("after one flush: %+v, want 1 write transaction and nothing queued", s)
	}
	pods, err := c.PodsInNamespace("shop", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1000 {
		t.Errorf("%d pods, want 1000", len(pods))
	}
}

func TestFullQueueIsWrittenByTheCaller(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalog(t, Options{BatchSize: 10})
	for i := range 79 {
		must(t, c.UpsertPod(webPod(fmt.Sprint("u", i), fmt.Sprint("web-", i), "n1")))
	}
	if s := c.Stats(); s.WriteTxs != 0 || s.Queued != 79 {
		t.Fatalf("below 8×BatchSize: %+v, want 79 queued and no write", s)
	}
	must(t, c.UpsertPod(webPod("u79", "web-79", "n1")))
	if s := c.Stats(); s.WriteTxs != 1 || s.Queued != 0 {
		t.Errorf("at 8×BatchSize: %+v, want everything written in one transaction", s)
	}
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	c, clk := newTestCatalog(t, Options{})
	for _, uid := range []string{"a", "b", "c"} {
		must(t, c.UpsertPod(webPod(uid, "web-"+uid, "n1")))
	}
	for _, n := range []string{"n1", "n2"} {
		must(t, c.UpsertNode(NodeRecord{Name: n}))
	}
	flush(t, c)
	// Hindsight restarts an hour later; the informers list b and n1 only.
	clk.Set(time.Hour)
	must(t, c.UpsertPod(webPod("b", "web-b", "n1")))
	must(t, c.UpsertNode(NodeRecord{Name: "n1"}))
	must(t, c.ReconcilePods([]string{"b"}, time.Time{}))
	must(t, c.ReconcileNodes([]string{"n1"}, time.Time{}))
	flush(t, c)
	for uid, wantDeleted := range map[string]bool{"a": true, "b": false, "c": true} {
		p, err := c.Pod(uid)
		if err != nil {
			t.Fatal(err)
		}
		if p.Deleted != wantDeleted || (wantDeleted && !p.DeletedAt.Equal(at(time.Hour))) {
			t.Errorf("pod %s: Deleted %t at %s, want %t", uid, p.Deleted, p.DeletedAt, wantDeleted)
		}
	}
	for name, wantDeleted := range map[string]bool{"n1": false, "n2": true} {
		n, err := c.Node(name)
		if err != nil {
			t.Fatal(err)
		}
		if n.Deleted != wantDeleted {
			t.Errorf("node %s: Deleted %t, want %t", name, n.Deleted, wantDeleted)
		}
	}
}

func TestReconcileKeepsObjectsSeenAfterTheList(t *testing.T) {
	t.Parallel()
	c, clk := newTestCatalog(t, Options{})
	must(t, c.UpsertPod(webPod("old", "web-old", "n1")))
	must(t, c.UpsertNode(NodeRecord{Name: "n-old"}))
	// A periodic reconcile takes its list at 1h; a pod and a node added after it are
	// upserted at 2h, before the reconcile is applied.
	clk.Set(2 * time.Hour)
	must(t, c.UpsertPod(webPod("new", "web-new", "n1")))
	must(t, c.UpsertNode(NodeRecord{Name: "n-new"}))
	must(t, c.ReconcilePods(nil, at(time.Hour)))
	must(t, c.ReconcileNodes(nil, at(time.Hour)))
	flush(t, c)
	for uid, wantDeleted := range map[string]bool{"old": true, "new": false} {
		p, err := c.Pod(uid)
		if err != nil {
			t.Fatal(err)
		}
		if p.Deleted != wantDeleted {
			t.Errorf("pod %s: Deleted %t, want %t", uid, p.Deleted, wantDeleted)
		}
	}
	for name, wantDeleted := range map[string]bool{"n-old": true, "n-new": false} {
		n, err := c.Node(name)
		if err != nil {
			t.Fatal(err)
		}
		if n.Deleted != wantDeleted {
			t.Errorf("node %s: Deleted %t, want %t", name, n.Deleted, wantDeleted)
		}
	}
}

func TestFailedWritesStayQueued(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalog(t, Options{BatchSize: 10}) // the queue holds 80
	diskFull := errors.New("no space left on device")
	c.failWrite.Store(&diskFull)
	for i := range 5 {
		must(t, c.UpsertPod(webPod(fmt.Sprint("u", i), fmt.Sprint("web-", i), "n1")))
	}
	if err := c.Flush(t.Context()); !errors.Is(err, diskFull) {
		t.Fatalf("Flush = %v, want the write error", err)
	}
	if s := c.Stats(); s.Queued != 5 || s.Dropped != 0 || s.WriteTxs != 0 {
		t.Errorf("after a failed flush: %+v, want 5 queued", s)
	}
	if err := c.Health(); !errors.Is(err, diskFull) || !strings.Contains(err.Error(), "failing since") {
		t.Errorf("Health while writes fail = %v, want the write error and since when", err)
	}
	for i := 5; i < 79; i++ {
		must(t, c.UpsertPod(webPod(fmt.Sprint("u", i), fmt.Sprint("web-", i), "n1")))
	}
	for i := 79; i < 81; i++ { // fill the queue, then overfill it by one
		if err := c.UpsertPod(webPod(fmt.Sprint("u", i), fmt.Sprint("web-", i), "n1")); !errors.Is(err, diskFull) {
			t.Errorf("UpsertPod filling the queue = %v, want the write error", err)
		}
	}
	if s := c.Stats(); s.Queued != 80 || s.Dropped != 1 {
		t.Errorf("overfilled queue: %+v, want 80 queued and the oldest dropped", s)
	}

	c.failWrite.Store(nil) // space is back
	flush(t, c)
	if err := c.Health(); err != nil {
		t.Errorf("Health after a successful write = %v, want nil", err)
	}
	pods, err := c.PodsInNamespace("shop", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 80 {
		t.Errorf("%d pods written, want 80", len(pods))
	}
	if _, err := c.Pod("u0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("oldest record: %v, want it dropped", err)
	}
}
