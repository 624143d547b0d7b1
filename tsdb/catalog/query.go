package catalog

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Pod returns the record of the pod with the given UID, or ErrNotFound.
func (c *Catalog) Pod(uid string) (PodRecord, error) {
	var r *PodRecord
	err := c.view(func(tx *bolt.Tx) error {
		var err error
		r, err = getPod(tx, uid)
		return err
	})
	if err != nil {
		return PodRecord{}, err
	}
	if r == nil {
		return PodRecord{}, fmt.Errorf("pod %s: %w", uid, ErrNotFound)
	}
	return *r, nil
}

// PodsByName returns every pod that was ever called name in namespace ns: a pod deleted
// and recreated under its name (a StatefulSet's, or a bare pod) has one record per UID.
func (c *Catalog) PodsByName(ns, name string) ([]PodRecord, error) {
	return c.pods(bucketByName, ns+sep+name+sep, newWindow(time.Time{}, time.Time{}), nil)
}

// PodsInNamespace returns the pods of namespace ns, or of all namespaces when ns is
// empty, that existed during [from, to].
func (c *Catalog) PodsInNamespace(ns string, from, to time.Time) ([]PodRecord, error) {
	return c.pods(bucketByNS, nsPrefix(ns), newWindow(from, to), nil)
}

// PodsByOwner returns the pods of namespace ns owned by the workload kind/name during
// [from, to]: either their top workload (Deployment, CronJob, StatefulSet, DaemonSet, …)
// or their direct controller (such as one ReplicaSet of a Deployment) is kind/name. The
// pods of every rollout of a Deployment are found by the Deployment. A pod is found by
// its current owner: one orphaned or adopted since is not found by its former owner.
func (c *Catalog) PodsByOwner(ns, kind, name string, from, to time.Time) ([]PodRecord, error) {
	return c.pods(bucketByOwner, ownerPrefix(ns, kind, name), newWindow(from, to), nil)
}

// PodsOnNode returns the pods scheduled to node during [from, to].
func (c *Catalog) PodsOnNode(node string, from, to time.Time) ([]PodRecord, error) {
	return c.pods(bucketByNode, node+sep, newWindow(from, to), nil)
}

// PodsMatching returns the pods of namespace ns (all namespaces when empty) that existed
// during [from, to] and whose labels satisfy match, such as a label selector's Matches.
// match must not keep or modify the map. Labels are those of the latest observation.
func (c *Catalog) PodsMatching(ns string, match func(labels map[string]string) bool, from, to time.Time) ([]PodRecord, error) {
	if match == nil {
		match = func(map[string]string) bool { return true }
	}
	return c.pods(bucketByNS, nsPrefix(ns), newWindow(from, to), match)
}

func nsPrefix(ns string) string {
	if ns == "" {
		return ""
	}
	return ns + sep
}

// pods returns the records found under prefix in the index bucket, within w and
// satisfying match (when not nil).
func (c *Catalog) pods(index []byte, prefix string, w window, match func(map[string]string) bool) ([]PodRecord, error) {
	limit := c.opts.MaxResults
	var out []PodRecord
	err := c.view(func(tx *bolt.Tx) error {
		out = nil
		var uids []string
		err := scanPrefix(tx.Bucket(index), []byte(prefix), func(k, v []byte) (bool, error) {
			if !w.overlaps(v) {
				return true, nil
			}
			uids = append(uids, uidOf(k))
			if match == nil && len(uids) > limit {
				return false, fmt.Errorf("more than %d pods match: %w", limit, ErrTooMany)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		out = make([]PodRecord, 0, min(len(uids), limit))
		for _, uid := range uids {
			r, err := getPod(tx, uid)
			if err != nil {
				return err
			}
			if r == nil {
				return fmt.Errorf("index %s names pod %s, which has no record", index, uid)
			}
			if match != nil && !match(r.Labels) {
				continue
			}
			if len(out) == limit {
				return fmt.Errorf("more than %d pods match: %w", limit, ErrTooMany)
			}
			out = append(out, *r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, comparePods)
	return out, nil
}

func comparePods(a, b PodRecord) int {
	return cmp.Or(
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name),
		a.FirstSeen.Compare(b.FirstSeen),
		cmp.Compare(a.UID, b.UID),
	)
}

// Node returns the record of the node called name, or ErrNotFound.
func (c *Catalog) Node(name string) (NodeRecord, error) {
	var r *NodeRecord
	err := c.view(func(tx *bolt.Tx) error {
		var err error
		r, err = getNode(tx, name)
		return err
	})
	if err != nil {
		return NodeRecord{}, err
	}
	if r == nil {
		return NodeRecord{}, fmt.Errorf("node %s: %w", name, ErrNotFound)
	}
	return *r, nil
}

// Nodes returns the nodes that existed during [from, to].
func (c *Catalog) Nodes(from, to time.Time) ([]NodeRecord, error) {
	w := newWindow(from, to)
	limit := c.opts.MaxResults
	var out []NodeRecord
	err := c.view(func(tx *bolt.Tx) error {
		out = nil
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			r, err := decodeNode(v)
			if err != nil {
				return fmt.Errorf("node %s: %w", k, err)
			}
			if !w.overlaps(span(r.FirstSeen, r.LastSeen, r.Deleted)) {
				return nil
			}
			if len(out) == limit {
				return fmt.Errorf("more than %d nodes match: %w", limit, ErrTooMany)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil // bbolt iterates in key (name) order
}

// Namespaces returns, sorted, every namespace that holds a pod record, live or deleted.
func (c *Catalog) Namespaces() ([]string, error) {
	var out []string
	err := c.view(func(tx *bolt.Tx) error {
		out = nil
		cur := tx.Bucket(bucketByNS).Cursor()
		for k, _ := cur.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("malformed namespace index key %q", k)
			}
			ns := string(k[:i])
			out = append(out, ns)
			k, _ = cur.Seek([]byte(ns + "\x01")) // the first key of the next namespace
		}
		return nil
	})
	return out, err
}
