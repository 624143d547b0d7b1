package tsdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// Reasons for hindsight_storage_skipped_samples_total.
const (
	skipDuplicate   = "duplicate"    // same timestamp as the series' last sample (a kubelet's cached sample)
	skipOutOfOrder  = "out_of_order" // older than the series' last sample
	skipOutOfBounds = "out_of_bounds"
	skipTooOld      = "too_old"
	skipNoTime      = "no_timestamp" // the sample carries no time at all
)

var skipReasons = []string{skipDuplicate, skipOutOfOrder, skipOutOfBounds, skipTooOld, skipNoTime}

// cacheIdleWrites is how many writes a series may go unwritten before its cache entry
// is dropped, so that the cache does not grow with pod churn.
const cacheIdleWrites = 10

// seriesRef caches what the appender needs to know about one series. It holds no label
// set: the head keeps each series' labels, and a reference is enough to append to it. The
// labels are built from the object's key only when there is no reference yet, or when the
// head no longer knows it, so the cache holds no second reference to every label string.
type seriesRef struct {
	ref storage.SeriesRef
	// lastT is the timestamp (ms) of the series' last appended sample, math.MinInt64
	// when unknown. Samples at or before it are skipped without asking the TSDB.
	lastT int64
}

// objSeries is the cache entry of one node, pod or container: its series by resource.
type objSeries struct {
	series [NumResources]seriesRef
	gen    uint64 // the write that last used the entry
}

// appender appends one batch to the TSDB. It is owned by DB and used under DB.writeMu.
type appender struct {
	cache map[objKey]*objSeries
	gen   uint64
	lb    labels.ScratchBuilder

	// Per-batch results.
	app       storage.AppenderV2
	appended  int
	committed bool
	commitErr error // the commit's error; nil when committed or when no commit was tried
	skipped   map[string]int
	errs      int   // unexpected append errors
	firstErr  error // the first of them
}

func newAppender() *appender {
	return &appender{
		cache:   make(map[objKey]*objSeries),
		lb:      labels.NewScratchBuilder(6),
		skipped: make(map[string]int, len(skipReasons)),
	}
}

// appendBatch appends every sample of b and commits. It returns an error for a failed
// commit or for samples that failed unexpectedly; the counts stay in a until the next call.
func (a *appender) appendBatch(ctx context.Context, app storage.AppenderV2, b *Batch) error {
	a.gen++
	a.app, a.appended, a.committed, a.commitErr, a.errs, a.firstErr = app, 0, false, nil, 0, nil
	clear(a.skipped)
	defer func() { a.app = nil }()

	for i := range b.Nodes {
		if err := ctx.Err(); err != nil {
			return errors.Join(fmt.Errorf("append: %w", err), app.Rollback())
		}
		ns := &b.Nodes[i]
		if ns.Node == "" {
			continue // rejected by the index
		}
		if ns.HasNode {
			k := objKey{kind: ObjectNode, node: ns.Node}
			a.appendSample(a.entry(k), k, &ns.NodeSample)
		}
		for j := range ns.Pods {
			p := &ns.Pods[j]
			k := objKey{kind: ObjectPod, node: ns.Node, namespace: p.Namespace, pod: p.Pod, uid: p.UID}
			a.appendSample(a.entry(k), k, &p.Sample)
		}
		for j := range ns.Containers {
			c := &ns.Containers[j]
			k := objKey{kind: ObjectContainer, node: ns.Node, namespace: c.Namespace, pod: c.Pod, container: c.Container, uid: c.UID}
			e := a.entry(k)
			a.appendSample(e, k, &c.Sample)
			if !c.StartTime.IsZero() && !c.Time.IsZero() {
				a.append(e, k, ResourceStartTime, c.Time.UnixMilli(), float64(c.StartTime.UnixNano())/1e9)
			}
		}
	}
	if err := app.Commit(); err != nil {
		// The appender is rolled back: forget every cached reference and timestamp.
		clear(a.cache)
		a.commitErr = fmt.Errorf("commit %d samples: %w", a.appended, err)
		return a.commitErr
	}
	a.committed = true
	if a.gen%cacheIdleWrites == 0 {
		for k, e := range a.cache {
			if a.gen-e.gen >= cacheIdleWrites {
				delete(a.cache, k)
			}
		}
	}
	if a.firstErr != nil {
		return fmt.Errorf("append: %d samples failed, first: %w", a.errs, a.firstErr)
	}
	return nil
}

// roundLoss returns what the last appendBatch lost to the TSDB's time constraints.
func (a *appender) roundLoss() roundLoss {
	l := roundLoss{
		outOfBounds: a.skipped[skipOutOfBounds] + a.skipped[skipTooOld],
		outOfOrder:  a.skipped[skipOutOfOrder],
		samples:     a.appended + a.errs,
	}
	for _, n := range a.skipped {
		l.samples += n
	}
	return l
}

func (a *appender) entry(k objKey) *objSeries {
	e := a.cache[k]
	if e == nil {
		e = &objSeries{}
		for i := range e.series {
			e.series[i].lastT = math.MinInt64
		}
		a.cache[k] = e
	}
	e.gen = a.gen
	return e
}

// appendSample appends every value of a sample that the object has a series for, raw,
// in Resource order.
func (a *appender) appendSample(e *objSeries, k objKey, s *Sample) {
	if s.Time.IsZero() {
		a.skipped[skipNoTime]++
		return
	}
	t := s.Time.UnixMilli()
	for r := range NumResources {
		if s.Present.Has(r) && seriesNames[k.kind][r] != "" {
			a.append(e, k, r, t, s.Values[r])
		}
	}
}

// append appends one sample, skipping (and counting) duplicate and out-of-order ones.
func (a *appender) append(e *objSeries, k objKey, r Resource, t int64, v float64) {
	s := &e.series[r]
	switch {
	case t == s.lastT:
		a.skipped[skipDuplicate]++
		return
	case t < s.lastT:
		a.skipped[skipOutOfOrder]++
		return
	}
	lset := labels.EmptyLabels()
	if s.ref == 0 {
		lset = k.labels(&a.lb, r)
	}
	ref, err := a.app.Append(s.ref, lset, 0, t, v, nil, nil, storage.AOptions{})
	if _, timeErr := skipReason(err); err != nil && s.ref != 0 && !timeErr {
		// The head does not know the reference (it dropped the series): by labels, once.
		lset = k.labels(&a.lb, r)
		ref, err = a.app.Append(0, lset, 0, t, v, nil, nil, storage.AOptions{})
	}
	if err != nil {
		s.ref = 0
		if reason, ok := skipReason(err); ok {
			a.skipped[reason]++
		} else {
			a.errs++
			if a.firstErr == nil {
				a.firstErr = fmt.Errorf("series %s at %s: %w", k.labels(&a.lb, r), time.UnixMilli(t).UTC().Format(time.RFC3339Nano), err)
			}
		}
		return
	}
	s.ref, s.lastT = ref, t
	a.appended++
}

// skipReason classifies an append error about the sample's time (rather than its series)
// as a reason of hindsight_storage_skipped_samples_total; ok is false for any other error.
func skipReason(err error) (reason string, ok bool) {
	switch {
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return skipDuplicate, true
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return skipOutOfOrder, true
	case errors.Is(err, storage.ErrOutOfBounds):
		return skipOutOfBounds, true
	case errors.Is(err, storage.ErrTooOldSample):
		return skipTooOld, true
	}
	return "", false
}
