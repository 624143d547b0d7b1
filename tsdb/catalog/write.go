package catalog

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

type opKind uint8

const (
	opUpsertPod opKind = iota
	opUpsertNode
	opDeletePod
	opDeleteNode
	opReconcilePods
	opReconcileNodes
)

// op is one queued write. Ops are applied in the order they were queued.
type op struct {
	kind    opKind
	pod     *PodRecord
	node    *NodeRecord
	key     string    // UID or node name, for deletions
	at      time.Time // observation or deletion time
	present map[string]struct{}
}

// UpsertPod queues an observation of a pod, to be merged into its record at the next
// write. The observation time is rec.LastSeen, or Options.Now() when zero; rec.FirstSeen,
// when set (say, to the pod's creation time), can move the record's FirstSeen back.
// rec.Deleted, rec.DeletedAt and the containers' Changes are ignored.
//
// Merging keeps FirstSeen, advances LastSeen, replaces the other fields, and appends a
// ResourceChange to a container only when its requests or limits differ from the last
// ones. An observation older than the record's LastSeen changes nothing but FirstSeen.
// It returns an error for an invalid record (empty UID, namespace or name; a NUL byte in
// a key field), after Close, or when the queue was full and writing it failed.
func (c *Catalog) UpsertPod(rec PodRecord) error {
	if err := rec.validate(); err != nil {
		return fmt.Errorf("upsert pod %s/%s: %w", rec.Namespace, rec.Name, err)
	}
	rec = clonePod(rec)
	return c.enqueue(op{kind: opUpsertPod, pod: &rec, at: observed(rec.LastSeen, c.opts.Now)})
}

// UpsertNode queues an observation of a node; see UpsertPod. A node recreated under the
// same name takes over the record, which keeps its FirstSeen and gets the new UID.
func (c *Catalog) UpsertNode(rec NodeRecord) error {
	if err := rec.validate(); err != nil {
		return fmt.Errorf("upsert node %s: %w", rec.Name, err)
	}
	rec = cloneNode(rec)
	return c.enqueue(op{kind: opUpsertNode, node: &rec, at: observed(rec.LastSeen, c.opts.Now)})
}

// MarkPodDeleted queues the deletion of pod uid at at (Options.Now() when zero). The
// record is kept, found by every lookup whose range reaches its life, until Retention
// after at. A UID the catalog does not hold is ignored, as is a second deletion.
func (c *Catalog) MarkPodDeleted(uid string, at time.Time) error {
	return c.enqueue(op{kind: opDeletePod, key: uid, at: observed(at, c.opts.Now)})
}

// MarkNodeDeleted is MarkPodDeleted for the node called name.
func (c *Catalog) MarkNodeDeleted(name string, at time.Time) error {
	return c.enqueue(op{kind: opDeleteNode, key: name, at: observed(at, c.opts.Now)})
}

// ReconcilePods queues the deletion, at at, of every live pod whose UID is not in
// present and that was last seen at or before at. Call it with an informer's list and the
// time taken before the list was read: after the initial list, to close out the pods
// deleted while Hindsight was not watching, and periodically, to repair deletions whose
// events were lost. A pod observed after at is left alone, since the list may predate it.
func (c *Catalog) ReconcilePods(present []string, at time.Time) error {
	return c.enqueue(op{kind: opReconcilePods, present: set(present), at: observed(at, c.opts.Now)})
}

// ReconcileNodes is ReconcilePods for nodes, by name.
func (c *Catalog) ReconcileNodes(present []string, at time.Time) error {
	return c.enqueue(op{kind: opReconcileNodes, present: set(present), at: observed(at, c.opts.Now)})
}

func set(keys []string) map[string]struct{} {
	m := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		m[k] = struct{}{}
	}
	return m
}

// apply performs o in tx. A stored record that does not decode is replaced (upsert) or
// left alone (deletion), with a warning, rather than failing the whole batch forever.
func (c *Catalog) apply(tx *bolt.Tx, o *op) error {
	switch o.kind {
	case opUpsertPod:
		old, err := getPod(tx, o.pod.UID)
		if err != nil {
			c.log.Warn("Replacing an unreadable catalog record", "err", err)
			if err := tx.Bucket(bucketPods).Delete([]byte(o.pod.UID)); err != nil {
				return err
			}
			old = nil
		}
		cur := mergePod(old, *o.pod, o.at)
		return putPod(tx, old, &cur)
	case opDeletePod:
		return c.deletePod(tx, o.key, o.at)
	case opReconcilePods:
		var gone []string
		err := tx.Bucket(bucketLive).ForEach(func(k, _ []byte) error {
			if _, ok := o.present[string(k)]; ok {
				return nil
			}
			// A pod observed after the list was taken (an add racing a periodic
			// reconcile) is not gone.
			if r, err := getPod(tx, string(k)); err == nil && r != nil && r.LastSeen.After(o.at) {
				return nil
			}
			gone = append(gone, string(k))
			return nil
		})
		if err != nil {
			return err
		}
		for _, uid := range gone {
			if err := c.deletePod(tx, uid, o.at); err != nil {
				return err
			}
		}
		if len(gone) > 0 {
			c.log.Info("Marked pods that disappeared while unobserved as deleted", "pods", len(gone))
		}
		return nil
	case opUpsertNode:
		old, err := getNode(tx, o.node.Name)
		if err != nil {
			c.log.Warn("Replacing an unreadable catalog record", "err", err)
			old = nil
		}
		cur := mergeNode(old, *o.node, o.at)
		return putNode(tx, &cur)
	case opDeleteNode:
		return c.deleteNode(tx, o.key, o.at)
	case opReconcileNodes:
		var gone []string
		err := tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			if _, ok := o.present[string(k)]; ok {
				return nil
			}
			if r, err := decodeNode(v); err == nil && !r.Deleted && !r.LastSeen.After(o.at) {
				gone = append(gone, string(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, name := range gone {
			if err := c.deleteNode(tx, name, o.at); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown catalog operation %d", o.kind)
}

func (c *Catalog) deletePod(tx *bolt.Tx, uid string, at time.Time) error {
	old, err := getPod(tx, uid)
	if err != nil {
		c.log.Warn("Cannot mark an unreadable catalog record deleted", "err", err)
		return nil
	}
	if old == nil {
		c.log.Debug("Ignoring the deletion of a pod the catalog never saw", "uid", uid)
		return nil
	}
	if old.Deleted {
		return nil
	}
	cur := *old
	cur.Deleted, cur.DeletedAt = true, deletionTime(cur.FirstSeen, at)
	if cur.DeletedAt.After(cur.LastSeen) {
		cur.LastSeen = cur.DeletedAt
	}
	return putPod(tx, old, &cur)
}

func (c *Catalog) deleteNode(tx *bolt.Tx, name string, at time.Time) error {
	old, err := getNode(tx, name)
	if err != nil {
		c.log.Warn("Cannot mark an unreadable catalog record deleted", "err", err)
		return nil
	}
	if old == nil || old.Deleted {
		return nil
	}
	cur := *old
	cur.Deleted, cur.DeletedAt = true, deletionTime(cur.FirstSeen, at)
	if cur.DeletedAt.After(cur.LastSeen) {
		cur.LastSeen = cur.DeletedAt
	}
	return putNode(tx, &cur)
}
