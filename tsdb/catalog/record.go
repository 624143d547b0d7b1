package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Owner names a controlling object in the pod's namespace, such as Deployment/web.
type Owner struct {
	Kind string `json:"kind,omitempty"`
	Name string `json:"name,omitempty"`
}

// IsZero reports whether o names no object.
func (o Owner) IsZero() bool { return o.Kind == "" && o.Name == "" }

// String returns "Kind/Name", or "" for the zero Owner.
func (o Owner) String() string {
	if o.IsZero() {
		return ""
	}
	return o.Kind + "/" + o.Name
}

// ResourceChange is one set of requests and limits of a container and the time from which
// it was in effect. Quantities are in canonical units: CPU in millicores ("cpu"), memory
// and ephemeral storage in bytes; other resources as Kubernetes counts them.
type ResourceChange struct {
	At       time.Time        `json:"at"`
	Requests map[string]int64 `json:"requests,omitempty"`
	Limits   map[string]int64 `json:"limits,omitempty"`
}

// ContainerSpec is one container of a pod with its current requests and limits (canonical
// units, as in ResourceChange) and their history.
type ContainerSpec struct {
	Name     string           `json:"name"`
	Init     bool             `json:"init,omitempty"`
	Requests map[string]int64 `json:"requests,omitempty"`
	Limits   map[string]int64 `json:"limits,omitempty"`
	// Changes lists every distinct requests/limits pair the catalog saw, oldest first; the
	// last one equals Requests and Limits. The catalog maintains it: UpsertPod ignores the
	// Changes of its argument. Requests and limits can change in place (Kubernetes ≥ 1.33
	// resizes pods without restarting them).
	Changes []ResourceChange `json:"changes,omitempty"`
}

// At returns the requests and limits in effect at t, and false when t is before the
// container was first seen.
func (c ContainerSpec) At(t time.Time) (ResourceChange, bool) {
	i, found := slices.BinarySearchFunc(c.Changes, t, func(ch ResourceChange, t time.Time) int {
		return ch.At.Compare(t)
	})
	if found {
		return c.Changes[i], true
	}
	if i == 0 {
		return ResourceChange{}, false
	}
	return c.Changes[i-1], true
}

// PodRecord is what the catalog knows of one pod, keyed by UID.
type PodRecord struct {
	UID       string            `json:"uid"`
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Node      string            `json:"node,omitempty"` // empty until scheduled
	Labels    map[string]string `json:"labels,omitempty"`
	// Owner is the top workload: a Deployment for a ReplicaSet's pod, a CronJob for a
	// Job's pod, else the direct controller. Zero for a pod without a controller.
	Owner Owner `json:"owner,omitzero"`
	// Controller is the direct controller (ownerReference with controller=true), such as
	// the ReplicaSet between a pod and its Deployment.
	Controller Owner           `json:"controller,omitzero"`
	QoSClass   string          `json:"qosClass,omitempty"`
	Containers []ContainerSpec `json:"containers,omitempty"` // init containers included, with Init set
	// FirstSeen is when the catalog first saw the pod, or the earlier time the caller gave
	// (such as the pod's creation time).
	FirstSeen time.Time `json:"firstSeen"`
	// LastSeen is the latest observation: an upsert or the deletion.
	LastSeen  time.Time `json:"lastSeen"`
	Deleted   bool      `json:"deleted,omitempty"`
	DeletedAt time.Time `json:"deletedAt,omitzero"`
}

// NodeRecord is what the catalog knows of one node, keyed by name. A node deleted and
// recreated under the same name keeps one record, with the latest UID.
type NodeRecord struct {
	Name         string            `json:"name"`
	UID          string            `json:"uid,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Capacity     map[string]int64  `json:"capacity,omitempty"`    // canonical units, as in ResourceChange
	Allocatable  map[string]int64  `json:"allocatable,omitempty"` // canonical units, as in ResourceChange
	Zone         string            `json:"zone,omitempty"`
	InstanceType string            `json:"instanceType,omitempty"`
	FirstSeen    time.Time         `json:"firstSeen"`
	LastSeen     time.Time         `json:"lastSeen"`
	Deleted      bool              `json:"deleted,omitempty"`
	DeletedAt    time.Time         `json:"deletedAt,omitzero"`
}

// errInvalidRecord is wrapped by every validation failure of a record.
var errInvalidRecord = errors.New("invalid record")

// checkKeyPart rejects a value that cannot be part of an index key.
func checkKeyPart(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("%w: %s is empty", errInvalidRecord, field)
	case strings.IndexByte(v, 0) >= 0:
		return fmt.Errorf("%w: %s contains a NUL byte", errInvalidRecord, field)
	case len(v) > maxKeyPart:
		return fmt.Errorf("%w: %s is %d bytes long, more than %d", errInvalidRecord, field, len(v), maxKeyPart)
	}
	return nil
}

// maxKeyPart bounds each part of an index key so that keys stay below bbolt's limit;
// Kubernetes names are at most 253 bytes.
const maxKeyPart = 1024

func (r *PodRecord) validate() error {
	return errors.Join(
		checkKeyPart("uid", r.UID, true),
		checkKeyPart("namespace", r.Namespace, true),
		checkKeyPart("name", r.Name, true),
		checkKeyPart("node", r.Node, false),
		checkKeyPart("owner kind", r.Owner.Kind, false),
		checkKeyPart("owner name", r.Owner.Name, false),
		checkKeyPart("controller kind", r.Controller.Kind, false),
		checkKeyPart("controller name", r.Controller.Name, false),
	)
}

func (r *NodeRecord) validate() error {
	return checkKeyPart("name", r.Name, true)
}

// encodePod and the other codecs store a record as JSON: small enough for a catalog of
// objects (not samples), readable with bbolt's CLI, and tolerant of added fields.
func encodePod(r *PodRecord) ([]byte, error) { return json.Marshal(r) }

func encodeNode(r *NodeRecord) ([]byte, error) { return json.Marshal(r) }

// decodePod decodes and validates a stored pod record. It never panics.
func decodePod(b []byte) (PodRecord, error) {
	var r PodRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return PodRecord{}, fmt.Errorf("decode pod: %w", err)
	}
	if err := r.validate(); err != nil {
		return PodRecord{}, fmt.Errorf("decode pod: %w", err)
	}
	r.normalize()
	return r, nil
}

// decodeNode decodes and validates a stored node record. It never panics.
func decodeNode(b []byte) (NodeRecord, error) {
	var r NodeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return NodeRecord{}, fmt.Errorf("decode node: %w", err)
	}
	if err := r.validate(); err != nil {
		return NodeRecord{}, fmt.Errorf("decode node: %w", err)
	}
	r.normalize()
	return r, nil
}

// utc drops the location and monotonic reading of t, so that stored and compared times
// agree.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// nilIfEmpty returns nil for an empty map, so that nil and empty maps compare and encode
// alike.
func nilIfEmpty[M ~map[K]V, K comparable, V any](m M) M {
	if len(m) == 0 {
		return nil
	}
	return m
}

// normalize puts r in the form in which it is stored.
func (r *PodRecord) normalize() {
	r.Labels = nilIfEmpty(r.Labels)
	r.FirstSeen, r.LastSeen, r.DeletedAt = utc(r.FirstSeen), utc(r.LastSeen), utc(r.DeletedAt)
	if len(r.Containers) == 0 {
		r.Containers = nil
	}
	for i := range r.Containers {
		c := &r.Containers[i]
		c.Requests, c.Limits = nilIfEmpty(c.Requests), nilIfEmpty(c.Limits)
		if len(c.Changes) == 0 {
			c.Changes = nil
		}
		for j := range c.Changes {
			ch := &c.Changes[j]
			ch.At = utc(ch.At)
			ch.Requests, ch.Limits = nilIfEmpty(ch.Requests), nilIfEmpty(ch.Limits)
		}
	}
}

func (r *NodeRecord) normalize() {
	r.Labels, r.Capacity, r.Allocatable = nilIfEmpty(r.Labels), nilIfEmpty(r.Capacity), nilIfEmpty(r.Allocatable)
	r.FirstSeen, r.LastSeen, r.DeletedAt = utc(r.FirstSeen), utc(r.LastSeen), utc(r.DeletedAt)
}

// clonePod deep-copies the maps and slices of r, so that a queued record does not share
// memory with the caller's.
func clonePod(r PodRecord) PodRecord {
	r.Labels = maps.Clone(r.Labels)
	r.Containers = slices.Clone(r.Containers)
	for i := range r.Containers {
		c := &r.Containers[i]
		c.Requests, c.Limits = maps.Clone(c.Requests), maps.Clone(c.Limits)
		c.Changes = nil
	}
	return r
}

func cloneNode(r NodeRecord) NodeRecord {
	r.Labels, r.Capacity, r.Allocatable = maps.Clone(r.Labels), maps.Clone(r.Capacity), maps.Clone(r.Allocatable)
	return r
}

// observed returns when an upserted record was observed: its LastSeen, or now.
func observed(lastSeen time.Time, now func() time.Time) time.Time {
	if lastSeen.IsZero() {
		return utc(now())
	}
	return utc(lastSeen)
}

// minTime returns the earlier of a and b, ignoring a zero a.
func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// mergePod applies an observation of a pod at obs to the stored record old (nil when the
// pod is new) and returns the record to store. An observation older than the stored
// LastSeen only moves FirstSeen back: it never overwrites newer state. An observation after
// the deletion revives the record (the pod was wrongly marked deleted by a reconcile).
func mergePod(old *PodRecord, in PodRecord, obs time.Time) PodRecord {
	first := minTime(utc(in.FirstSeen), obs)
	if old == nil {
		r := in
		r.FirstSeen, r.LastSeen = first, obs
		r.Deleted, r.DeletedAt = false, time.Time{}
		for i := range r.Containers {
			c := &r.Containers[i]
			c.Changes = []ResourceChange{{At: first, Requests: c.Requests, Limits: c.Limits}}
		}
		r.normalize()
		return r
	}
	r := *old
	r.FirstSeen = minTime(r.FirstSeen, first)
	if obs.Before(r.LastSeen) || (r.Deleted && !obs.After(r.DeletedAt)) {
		return r
	}
	r.Namespace, r.Name, r.Node, r.Labels = in.Namespace, in.Name, in.Node, in.Labels
	r.Owner, r.Controller, r.QoSClass = in.Owner, in.Controller, in.QoSClass
	r.LastSeen = obs
	r.Deleted, r.DeletedAt = false, time.Time{}
	r.Containers = mergeContainers(old.Containers, in.Containers, obs)
	r.normalize()
	return r
}

// mergeContainers returns the containers of cur, each with the history of its namesake in
// old plus a change at obs when its requests or limits differ from the last ones. A
// container of old missing from cur is kept at the end with its history: the catalog never
// forgets what it saw.
func mergeContainers(old, cur []ContainerSpec, obs time.Time) []ContainerSpec {
	out := make([]ContainerSpec, 0, max(len(old), len(cur)))
	used := make([]bool, len(old))
	for _, c := range cur {
		i := slices.IndexFunc(old, func(o ContainerSpec) bool { return o.Name == c.Name })
		if i < 0 {
			c.Changes = []ResourceChange{{At: obs, Requests: c.Requests, Limits: c.Limits}}
			out = append(out, c)
			continue
		}
		used[i] = true
		c.Changes = old[i].Changes
		ch := ResourceChange{At: obs, Requests: c.Requests, Limits: c.Limits}
		switch n := len(c.Changes); {
		case n > 0 && sameResources(c.Changes[n-1], c.Requests, c.Limits):
		case n > 0 && c.Changes[n-1].At.Equal(obs): // two observations at one time: the later wins
			c.Changes = append(slices.Clone(c.Changes[:n-1]), ch)
		default:
			c.Changes = append(slices.Clip(c.Changes), ch)
		}
		out = append(out, c)
	}
	for i, o := range old {
		if !used[i] {
			out = append(out, o)
		}
	}
	return out
}

func sameResources(ch ResourceChange, req, lim map[string]int64) bool {
	return maps.Equal(ch.Requests, req) && maps.Equal(ch.Limits, lim)
}

// mergeNode is mergePod for nodes.
func mergeNode(old *NodeRecord, in NodeRecord, obs time.Time) NodeRecord {
	first := minTime(utc(in.FirstSeen), obs)
	if old == nil {
		r := in
		r.FirstSeen, r.LastSeen = first, obs
		r.Deleted, r.DeletedAt = false, time.Time{}
		r.normalize()
		return r
	}
	r := *old
	r.FirstSeen = minTime(r.FirstSeen, first)
	if obs.Before(r.LastSeen) || (r.Deleted && !obs.After(r.DeletedAt)) {
		return r
	}
	r.UID, r.Labels, r.Capacity, r.Allocatable = in.UID, in.Labels, in.Capacity, in.Allocatable
	r.Zone, r.InstanceType = in.Zone, in.InstanceType
	r.LastSeen = obs
	r.Deleted, r.DeletedAt = false, time.Time{}
	r.normalize()
	return r
}

// deletionTime returns the deletion time to record for an object first seen at firstSeen
// and deleted at at: never before it was first seen.
func deletionTime(firstSeen, at time.Time) time.Time {
	if at.Before(firstSeen) {
		return firstSeen
	}
	return at
}
