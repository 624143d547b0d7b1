package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/scraper"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// catalogFile is the catalog's file name inside --storage-path, beside the TSDB.
const catalogFile = "catalog.db"

// startCatalog opens the object catalog (rebuilding it from the informers, with a warning,
// when the file is corrupt) and feeds it: a full pod informer for every phase, ReplicaSets
// and Jobs to resolve owners, and the scraper's node informer. The returned stop function
// stops the feed and closes the catalog, writing what is queued; call it after the scraper
// has stopped and before the TSDB closes.
func startCatalog(ctx context.Context, o *options, client kubernetes.Interface, nodes cache.SharedIndexInformer, log *slog.Logger) (_ *catalog.Catalog, stop func() error, err error) {
	cat, err := catalog.OpenOrRebuild(filepath.Join(o.storagePath, catalogFile), catalog.Options{Retention: o.retention}, log)
	if err != nil {
		return nil, nil, fmt.Errorf("open catalog: %w", err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods().Informer()
	if err := pods.SetTransform(stripManagedFields); err != nil {
		return nil, nil, errors.Join(fmt.Errorf("pod informer: %w", err), cat.Close())
	}
	rs, jobs := factory.Apps().V1().ReplicaSets(), factory.Batch().V1().Jobs()
	rsLister, jobLister := rs.Lister(), jobs.Lister()

	ctx, cancel := context.WithCancel(ctx)
	factory.Start(ctx.Done())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() {
		if err := cat.Run(ctx); err != nil {
			runErr = fmt.Errorf("catalog: %w", err)
		}
	})
	wg.Go(func() {
		// Handlers are added once ReplicaSets and Jobs are known, so that every pod's owner
		// resolves on its first write; the informers replay their caches to a new handler.
		if !cache.WaitForCacheSync(ctx.Done(), rs.Informer().HasSynced, jobs.Informer().HasSynced, nodes.HasSynced) {
			return
		}
		inv, err := scraper.NewInventory(cat, pods, nodes, rsLister, jobLister, nil, log.With("component", "inventory"))
		if err != nil {
			log.Error("catalog feed not started", "err", err)
			return
		}
		if !cache.WaitForCacheSync(ctx.Done(), inv.HasSynced) {
			return
		}
		// Objects deleted while Hindsight was down are marked deleted now.
		at := time.Now()
		var uids []string
		for _, obj := range pods.GetStore().List() {
			if p, ok := obj.(*corev1.Pod); ok {
				uids = append(uids, string(p.UID))
			}
		}
		var names []string
		for _, obj := range nodes.GetStore().List() {
			if n, ok := obj.(*corev1.Node); ok {
				names = append(names, n.Name)
			}
		}
		if err := errors.Join(cat.ReconcilePods(uids, at), cat.ReconcileNodes(names, at)); err != nil {
			log.Warn("catalog reconcile after start", "err", err)
			return
		}
		log.Info("catalog in sync", "pods", len(uids), "nodes", len(names))
	})
	return cat, func() error {
		cancel()
		factory.Shutdown()
		wg.Wait()
		return errors.Join(runErr, cat.Close())
	}, nil
}

// stripManagedFields drops managedFields from cached objects: the catalog never reads them,
// and on pods they are often the larger part of the object.
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}
