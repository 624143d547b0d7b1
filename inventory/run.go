package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Run feeds the catalog until ctx is done. It waits for the node, ReplicaSet and Job caches,
// so that every pod's owner resolves on its first write; adds the event handlers (which
// replay the caches: every object is written once at start); waits until the initial lists
// are handed to the catalog; marks deleted what disappeared while Hindsight was not watching;
// and then repairs the catalog every RepairEvery. It returns nil when ctx ends, and an error
// when the handlers cannot be added (the informers were stopped): a process whose catalog
// is not fed must not look healthy.
func (f *Feed) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), f.ownerSynced...) {
		return nil // shutting down
	}
	if err := f.addHandlers(); err != nil {
		return fmt.Errorf("start catalog feed: %w", err)
	}
	if !cache.WaitForCacheSync(ctx.Done(), f.HasSynced) {
		return nil
	}
	f.repair(ctx, false)
	f.mu.Lock()
	f.synced = true
	f.mu.Unlock()
	t := time.NewTicker(f.repairEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.repair(ctx, true)
		}
	}
}

// repair brings the catalog in line with the informers' caches. At start (periodic false)
// it only reconciles deletions: the handlers have just written every object. Periodically it
// also rewrites the objects whose last write failed or whose owner was a fallback, or every
// object when the catalog dropped records since the last full rewrite. Its outcome is logged
// on a change, counted in hindsight_catalog_repairs_total and reported by Check.
func (f *Feed) repair(ctx context.Context, periodic bool) {
	at := f.now() // before the caches are read: what is observed later is not marked deleted
	var errs []error
	if periodic {
		dropped := f.w.Stats().Dropped
		f.mu.Lock()
		all := dropped > f.droppedSeen
		f.mu.Unlock()
		if err := f.rewrite(ctx, at, !all); err != nil {
			errs = append(errs, err)
		} else if all {
			f.mu.Lock()
			f.droppedSeen = dropped
			f.mu.Unlock()
		}
	}
	var uids, names []string
	for _, obj := range f.pods.GetStore().List() {
		if p, ok := obj.(*corev1.Pod); ok {
			uids = append(uids, string(p.UID))
		}
	}
	for _, obj := range f.nodes.GetStore().List() {
		if n, ok := obj.(*corev1.Node); ok {
			names = append(names, n.Name)
		}
	}
	if err := errors.Join(f.w.ReconcilePods(uids, at), f.w.ReconcileNodes(names, at)); err != nil {
		errs = append(errs, fmt.Errorf("reconcile catalog: %w", err))
	}
	err := errors.Join(errs...)
	if ctx.Err() != nil {
		return // stopping: a cancelled repair says nothing about the catalog
	}
	f.mu.Lock()
	prev := f.repairErr
	f.repairErr = err
	f.mu.Unlock()
	switch {
	case err != nil:
		f.metrics.repairs.WithLabelValues("failure").Inc()
		if prev == nil {
			f.logWriteError("Repairing the catalog from the informers failed; retrying at the next repair", err)
		}
	default:
		f.metrics.repairs.WithLabelValues("success").Inc()
		if prev != nil || !periodic {
			f.log.Info("catalog in sync with the informers", "pods", len(uids), "nodes", len(names))
		}
	}
}

// Check reports whether the catalog is fed and written: it fails until the initial lists
// are written and reconciled, while the catalog's writes fail, and while the last repair
// failed. It is the "catalog" check of /readyz.
func (f *Feed) Check() error {
	f.mu.Lock()
	synced, repairErr := f.synced, f.repairErr
	f.mu.Unlock()
	if !synced {
		return errors.New("catalog feed has not synced with the informers yet")
	}
	return errors.Join(f.w.Health(), repairErr)
}

// feedMetrics are the catalog's self-metrics.
type feedMetrics struct {
	repairs *prometheus.CounterVec
}

func newFeedMetrics(cat Catalog, reg prometheus.Registerer) (*feedMetrics, error) {
	m := &feedMetrics{
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_catalog_repairs_total",
			Help: "Repairs of the catalog from the informers' caches, by result (success, failure).",
		}, []string{"result"}),
	}
	for _, r := range []string{"success", "failure"} {
		m.repairs.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.repairs, newStatsCollector(cat)}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, r := range cs[:i] {
				reg.Unregister(r)
			}
			return nil, fmt.Errorf("register catalog metrics: %w", err)
		}
	}
	return m, nil
}

// statsCollector exports the catalog's Stats and Health, read once per collection (Stats
// stats the file).
type statsCollector struct {
	cat                                    Catalog
	queued, writeTxs, dropped, size, write *prometheus.Desc
}

func newStatsCollector(cat Catalog) *statsCollector {
	return &statsCollector{
		cat:      cat,
		queued:   prometheus.NewDesc("hindsight_catalog_queued_records", "Catalog records waiting for the next write.", nil, nil),
		writeTxs: prometheus.NewDesc("hindsight_catalog_write_transactions_total", "Write transactions committed to the catalog since the process started.", nil, nil),
		dropped:  prometheus.NewDesc("hindsight_catalog_dropped_records_total", "Catalog records lost because a write failed while the queue was full; the next repair rewrites every object.", nil, nil),
		size:     prometheus.NewDesc("hindsight_catalog_size_bytes", "Size of the catalog file.", nil, nil),
		write:    prometheus.NewDesc("hindsight_catalog_writable", "1 while the catalog's writes succeed, 0 while they fail.", nil, nil),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queued, c.writeTxs, c.dropped, c.size, c.write} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.cat.Stats()
	writable := 1.0
	if c.cat.Health() != nil {
		writable = 0
	}
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(st.Queued))
	ch <- prometheus.MustNewConstMetric(c.writeTxs, prometheus.CounterValue, float64(st.WriteTxs))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.write, prometheus.GaugeValue, writable)
}
