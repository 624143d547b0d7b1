package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/informers"
	appsv1informers "k8s.io/client-go/informers/apps/v1"
	batchv1informers "k8s.io/client-go/informers/batch/v1"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/hindsight-metrics/hindsight/apiserver"
	"github.com/hindsight-metrics/hindsight/httpapi"
	"github.com/hindsight-metrics/hindsight/httpapi/budget"
	"github.com/hindsight-metrics/hindsight/httpapi/promapi"
	"github.com/hindsight-metrics/hindsight/inventory"
	"github.com/hindsight-metrics/hindsight/scraper"
	"github.com/hindsight-metrics/hindsight/tsdb"
	"github.com/hindsight-metrics/hindsight/tsdb/catalog"
)

// serve runs Hindsight until ctx ends. It is built in phases, each a function below:
//
//  1. informers: one shared factory (nodes; pods, every phase, stripped to what is read;
//     ReplicaSets and Jobs for owners), started at once;
//  2. storage: the TSDB and the catalog beside it, on --storage-path, and the catalog
//     feed on the informers;
//  3. scraper: the kubelet client and the scrape loop;
//  4. servers: metrics.k8s.io with its health checks, the history API and the
//     Prometheus-compatible API on the same secure port.
//
// The shutdown order is runThenClose's: the scraper stops, the API server drains (up to
// storageCloseDeadline), the catalog feed and the informers stop, the catalog closes,
// the TSDB closes last.
func serve(ctx context.Context, o *options, logOut io.Writer) (err error) {
	log, err := newLogger(o, logOut)
	if err != nil {
		return err
	}
	klog.SetSlogLogger(log.With("component", "k8s"))
	log.Info("starting hindsight", "version", version, "storagePath", o.storagePath,
		"metricResolution", o.resolution, "retention", o.retention)
	if o.kubeletInsecureTLS {
		log.Warn("--kubelet-insecure-tls is set: kubelet serving certificates are not verified; use it for tests only")
	}
	restConfig, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("create kubernetes client: %w", err)
	}
	nodeSelector, err := labels.Parse(o.nodeSelector)
	if err != nil {
		return fmt.Errorf("parse --node-selector: %w", err) // validated already
	}
	reg := legacyregistry.Registerer()

	// The informers start first: their initial lists (30,000 pods take seconds) load while
	// the TSDB opens, instead of after it. The catalog feed registers its handlers once the
	// catalog is open; a handler added to a running informer is handed every cached object
	// first, so it misses nothing.
	inf := newInformers(client)
	infCtx, stopInf := context.WithCancel(context.WithoutCancel(ctx))
	inf.factory.Start(infCtx.Done())
	stopInformers := sync.OnceFunc(func() {
		stopInf()
		inf.factory.Shutdown() // the feed's event handlers have returned: nothing writes the catalog
	})
	defer stopInformers() // on an early return; after a run, a no-op

	st, err := openStorage(o, log, reg)
	if err != nil {
		return err
	}
	// On an early return; after a run, the storage is closed already and this is a no-op.
	defer func() { err = errors.Join(err, st.close()) }()
	st.stopFirst = stopInformers

	feed, err := inventory.New(st.catalog, inventory.Config{
		Pods: inf.pods.Informer(), Nodes: inf.nodes.Informer(),
		ReplicaSets: inf.replicaSets, Jobs: inf.jobs,
	}, log.With("component", "catalog"), reg)
	if err != nil {
		return fmt.Errorf("create catalog feed: %w", err)
	}
	scr, stopKubelets, err := newScraper(o, nodeSelector, restConfig, inf, st.db, log.With("component", "scraper"), reg)
	if err != nil {
		return err
	}
	defer stopKubelets()
	srv, err := newServers(o, nodeSelector, st, inf, scr, feed, log, reg)
	if err != nil {
		return err
	}

	return runThenClose(ctx, log, components{
		scrape: func(ctx context.Context) error {
			// Scrape once the informers know the nodes and pods, so that the first round
			// sees every node and every sample gets its pod's UID.
			if !cache.WaitForCacheSync(ctx.Done(), inf.nodes.Informer().HasSynced, inf.pods.Informer().HasSynced) {
				return nil // shutting down
			}
			log.Info("informers synced; scraping")
			if err := scr.Run(ctx); err != nil {
				return fmt.Errorf("scraper: %w", err)
			}
			return nil
		},
		rollup: func(ctx context.Context) error {
			return st.db.RunRollups(ctx, rollupInterval)
		},
		serveAPI: func(ctx context.Context) error {
			if err := srv.Run(ctx); err != nil {
				return fmt.Errorf("API server: %w", err)
			}
			return nil
		},
		feed: func(ctx context.Context) error {
			if err := feed.Run(ctx); err != nil {
				return fmt.Errorf("catalog feed: %w", err)
			}
			return nil
		},
		closeStorage: st.close,
	}, storageCloseDeadline)
}

// catalogFile is the catalog's file name inside --storage-path, beside the TSDB.
const catalogFile = "catalog.db"

// storage is the TSDB and the catalog, opened together and closed in order.
type storage struct {
	db      *tsdb.DB
	catalog *catalog.Catalog
	// stopFirst, when set, runs before the catalog closes: it stops what writes into it.
	stopFirst func()
	close     func() error
}

// openStorage opens the TSDB, then the catalog (rebuilt from the informers, with a
// warning, when its file is corrupt), and runs the catalog's background writer. close stops
// stopFirst's writers, closes the catalog (writing what is queued) and then the TSDB; it
// runs once, however often it is called.
func openStorage(o *options, log *slog.Logger, reg prometheus.Registerer) (*storage, error) {
	db, err := tsdb.Open(o.storageConfig(), log.With("component", "tsdb"), reg)
	if err != nil {
		return nil, fmt.Errorf("open storage: %w", err)
	}
	cat, err := catalog.OpenOrRebuild(filepath.Join(o.storagePath, catalogFile), catalog.Options{Retention: o.retention},
		log.With("component", "catalog"))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open catalog: %w", err), db.Close())
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() {
		if err := cat.Run(ctx); err != nil {
			runErr = fmt.Errorf("catalog: %w", err)
		}
	})
	st := &storage{db: db, catalog: cat}
	st.close = sync.OnceValue(func() error {
		if st.stopFirst != nil {
			st.stopFirst()
		}
		cancel()
		wg.Wait()
		errs := []error{runErr, cat.Close()}
		if err := db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close storage: %w", err))
		}
		return errors.Join(errs...)
	})
	return st, nil
}

// informerSet is the process's one informer factory and the informers taken from it. Pods
// are cached once for the scraper, the metrics API and the catalog, stripped by
// inventory.TransformPod.
type informerSet struct {
	factory     informers.SharedInformerFactory
	nodes       corev1informers.NodeInformer
	pods        corev1informers.PodInformer
	namespaces  corev1informers.NamespaceInformer // the read APIs' namespace incarnations
	replicaSets appsv1informers.ReplicaSetInformer
	jobs        batchv1informers.JobInformer
}

func newInformers(client kubernetes.Interface) *informerSet {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTransform(stripManagedFields))
	s := &informerSet{
		factory:     factory,
		nodes:       factory.Core().V1().Nodes(),
		pods:        factory.Core().V1().Pods(),
		namespaces:  factory.Core().V1().Namespaces(),
		replicaSets: factory.Apps().V1().ReplicaSets(),
		jobs:        factory.Batch().V1().Jobs(),
	}
	// Taking the informers registers them with the factory, so that Start starts them.
	s.nodes.Informer()
	s.namespaces.Informer()
	s.replicaSets.Informer()
	s.jobs.Informer()
	_ = s.pods.Informer().SetTransform(inventory.TransformPod) // not started yet: cannot fail
	return s
}

// stripManagedFields is the factory's transform for nodes, ReplicaSets and Jobs: nobody
// reads managedFields, often the larger part of an object.
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

// newScraper builds the kubelet client and the scrape loop; stop releases the client's
// idle connections.
func newScraper(o *options, nodeSelector labels.Selector, rc *rest.Config, inf *informerSet, db *tsdb.DB, log *slog.Logger, reg prometheus.Registerer) (_ *scraper.Scraper, stop func(), err error) {
	kc := o.kubeletConfig()
	kubeletCredentials(&kc, rc, log)
	kubelets, err := scraper.NewKubeletClient(kc, log)
	if err != nil {
		return nil, nil, fmt.Errorf("kubelet client: %w", err)
	}
	scr, err := scraper.New(scraper.Config{Resolution: o.resolution, NodeSelector: nodeSelector},
		inf.nodes.Lister(), inventory.PodUIDs{Lister: inf.pods.Lister()}, kubelets, db, log, reg)
	if err != nil {
		kubelets.Close()
		return nil, nil, fmt.Errorf("create scraper: %w", err)
	}
	return scr, kubelets.Close, nil
}

// newServers builds the metrics.k8s.io server with its health checks and mounts the
// history API and the Prometheus-compatible API on it.
func newServers(o *options, nodeSelector labels.Selector, st *storage, inf *informerSet, scr *scraper.Scraper, feed *inventory.Feed, log *slog.Logger, reg prometheus.Registerer) (*apiserver.Server, error) {
	nodesSynced, podsSynced := inf.nodes.Informer().HasSynced, inf.pods.Informer().HasSynced
	apiCfg := &apiserver.Config{
		Source:       st.db,
		Nodes:        inf.nodes.Lister(),
		Pods:         inf.pods.Lister(),
		NodeSelector: nodeSelector,
		ReadyzChecks: []healthz.HealthChecker{
			apiserver.StorageReadyCheck(st.db.Ready),
			apiserver.InformerSyncCheck(nodesSynced, podsSynced),
			apiserver.InformationalCheck(checkStorageWritable, st.db.StorageHealth),
			apiserver.InformationalCheck(checkCatalog, feed.Check),
			apiserver.InformationalCheck(checkKubeletClocks, scr.CheckClocks),
			apiserver.InformationalCheck(checkRollups, st.db.RollupHealth),
		},
		HealthChecks: []healthz.HealthChecker{apiserver.MetadataInformerSyncCheck(podsSynced)},
		LivezChecks: []healthz.HealthChecker{
			apiserver.CollectionTimelyCheck(func() error { return scr.CheckTimely(time.Now()) }),
		},
		Registerer: reg,
		Log:        log.With("component", "apiserver"),
	}
	o.server.SelfAuthorizedPaths = []string{httpapi.Prefix + "*", prometheusPrefix + "/*"}
	// The read APIs have limits of their own (below), apart from metrics.k8s.io's
	// --max-requests-inflight and --request-timeout: history load never takes the HPA's
	// places. That holds for their aggregated groups too, whose requests the delegated
	// authorizer checks first (they are resource requests of those groups).
	o.server.OwnLimitPaths = append(slices.Clone(o.server.SelfAuthorizedPaths),
		"/apis/"+httpapi.GroupVersion.String()+"/*", "/apis/"+prometheusGroupVersion.String()+"/*")
	if err := o.server.ApplyTo(apiCfg); err != nil {
		return nil, fmt.Errorf("configure API server: %w", err)
	}
	srv, err := apiCfg.Complete().New()
	if err != nil {
		return nil, fmt.Errorf("create API server: %w", err)
	}
	namespaces := inventory.Namespaces{Lister: inf.namespaces.Lister()}
	// One query budget guards the TSDB for both read APIs, and one in-flight limit bounds
	// their requests (and so the responses held while slow clients read them).
	queries, err := budget.New(o.historyQueries)
	if err != nil {
		return nil, fmt.Errorf("create query budget: %w", err)
	}
	inFlight, err := budget.NewQueued(o.historyInFlight, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("create the history in-flight limit: %w", err)
	}
	history, err := httpapi.New(httpapi.Config{
		Samples:          st.db,
		Catalog:          st.catalog,
		Authorizer:       apiCfg.Generic.Authorization.Authorizer,
		Namespaces:       namespaces,
		Resolution:       o.resolution,
		MaxPoints:        o.historyMaxPoints,
		MaxSeries:        o.historyMaxSeries,
		QueryTimeout:     o.historyQueryTimeout,
		MaxResponseBytes: o.maxResponseBytes(),
		WriteTimeout:     o.historyWriteTimeout,
		Budget:           queries,
		InFlight:         inFlight,
		Log:              log.With("component", "history"),
		Registerer:       reg,
	})
	if err != nil {
		return nil, fmt.Errorf("create history API: %w", err)
	}
	srv.HandlePrefix(httpapi.Prefix, history)
	srv.HandleGroup(httpapi.GroupVersion, httpapi.Prefix, history)
	prom, err := promapi.New(promapi.Config{
		Prefix:           prometheusPrefix + "/api/v1",
		Queryable:        st.db.Queryable(),
		Downsampled:      st.db,
		Authorize:        httpapi.RequireUser,
		Scope:            httpapi.PrometheusScope(apiCfg.Generic.Authorization.Authorizer, namespaces),
		Revision:         "hindsight " + version,
		Timeout:          o.historyQueryTimeout,
		MaxSamples:       o.promMaxSamples,
		MaxResponseBytes: o.maxResponseBytes(),
		WriteTimeout:     o.historyWriteTimeout,
		Budget:           queries,
		InFlight:         inFlight,
		Unavailable:      []error{tsdb.ErrClosed},
		Registerer:       reg,
	}, log.With("component", "promapi"))
	if err != nil {
		return nil, fmt.Errorf("create Prometheus API: %w", err)
	}
	// <prefix>/namespaces/<ns>/api/v1 is a tenant's own data source: through the
	// aggregator, a RoleBinding in <ns> grants it.
	tenants := promapi.Namespaced(prometheusPrefix, prom)
	srv.HandlePrefix(prometheusPrefix+"/", tenants)
	srv.HandleGroup(prometheusGroupVersion, prometheusPrefix+"/", tenants)
	return srv, nil
}

// prometheusPrefix is where the Prometheus-compatible read API lives: a Prometheus data
// source in Grafana, or promtool, is pointed at https://<hindsight>/prometheus.
const prometheusPrefix = "/prometheus"

// prometheusGroupVersion is the Prometheus-compatible API as an aggregated API group:
// through the kube-apiserver, a data source is pointed at
// https://<kube-apiserver>/apis/prometheus.hindsight.dev/v1 (its /api/v1/query is then
// /apis/prometheus.hindsight.dev/v1/api/v1/query, which RBAC sees as cluster-scoped
// resource "api", name "v1", subresource "query"; verb get, or create for POST), or a
// tenant's at .../v1/namespaces/<ns> (the same, in namespace <ns>).
var prometheusGroupVersion = schema.GroupVersion{Group: "prometheus.hindsight.dev", Version: "v1"}

// storageCloseDeadline bounds how long after shutdown begins the storage waits for the API
// server before it closes. The API server may take long to stop: --shutdown-delay-duration,
// then up to --request-timeout (60s) to drain requests, and as much again for the HTTP
// server's Shutdown. The kubelet sends SIGKILL terminationGracePeriodSeconds after SIGTERM
// (30s by default, 60s in deploy/); closing the storage by 20s leaves the memory snapshot
// time to be written, so that the next start replays little WAL. Closing it while the API
// server drains is safe: the current window is served from memory, and history queries
// still running end with 503 Unavailable.
const storageCloseDeadline = 20 * time.Second

// rollupInterval is how often the rollup job looks for windows whose raw samples are
// final; a tier's batch (2h for 5m, 6h for 1h) is written at the first pass after it is.
const rollupInterval = time.Minute

// components are what runThenClose runs and stops.
type components struct {
	// scrape, serveAPI and feed run until their context ends; any of them returning, even
	// with nil, shuts the others down.
	scrape, serveAPI, feed func(context.Context) error
	// rollup, when set, runs the downsampled tiers' rollup job like the scraper: it stops
	// with it, before the storage closes.
	rollup func(context.Context) error
	// closeStorage closes the catalog and the TSDB; it may be called again.
	closeStorage func() error
}

// runThenClose runs the scraper, the API server and the catalog feed until ctx ends or one
// of them returns, then shuts down in order: the scraper stops first (its round in flight
// is cancelled, and it writes nothing after it returns); the API server drains; the
// catalog feed stops; the storage is closed last, flushing the TSDB and writing its memory
// snapshot. The storage closes only after the scraper and the feed have returned, and at the
// latest closeDeadline after the shutdown began, even if the API server is still draining
// (it goes on serving from memory). runThenClose returns once all have returned, with their
// errors and the storage's.
func runThenClose(ctx context.Context, log *slog.Logger, c components, closeDeadline time.Duration) error {
	g, gctx := errgroup.WithContext(ctx)
	gctx, stop := context.WithCancel(gctx)
	defer stop()
	// The feed has a context of its own: it stops after the API server, not with it.
	feedCtx, stopFeed := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFeed()
	run := func(what string, fn func(context.Context) error, ctx context.Context) <-chan struct{} {
		done := make(chan struct{})
		g.Go(func() error {
			defer close(done)
			defer stop()
			err := fn(ctx)
			log.Info(what + " stopped")
			return err
		})
		return done
	}
	scraperDone := run("scraper", c.scrape, gctx)
	rollup := c.rollup
	if rollup == nil {
		rollup = func(ctx context.Context) error { <-ctx.Done(); return nil }
	}
	rollupDone := run("rollup job", rollup, gctx)
	apiDone := run("API server", c.serveAPI, gctx)
	feedDone := run("catalog feed", c.feed, feedCtx)

	<-gctx.Done()
	log.Info("shutting down: stopping the scraper, then the API server and the catalog feed, then closing the storage",
		"storageCloseDeadline", closeDeadline)
	deadline := time.NewTimer(closeDeadline)
	defer deadline.Stop()
	<-scraperDone
	<-rollupDone
	select {
	case <-apiDone:
	case <-deadline.C:
		log.Warn("The API server is still draining; closing the storage now, the current window is still served from memory",
			"after", closeDeadline)
	}
	stopFeed()
	<-feedDone
	closeErr := c.closeStorage()
	if closeErr == nil {
		log.Info("storage closed")
	}
	return errors.Join(g.Wait(), closeErr)
}

func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	level, err := o.level()
	if err != nil {
		return nil, err
	}
	ho := &slog.HandlerOptions{Level: level}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	}
	return slog.New(slog.NewTextHandler(w, ho)), nil
}

// kubeConfig is the kube-apiserver client configuration of --kubeconfig (in-cluster when
// empty). Its requests and responses are protobuf, as metrics-server's, for the informers'
// LISTs and WATCHes (a LIST of 30,000 pods from the watch cache took 2.2–2.5 s as protobuf,
// 2.0–3.3 s as JSON, on the 2-core machine: the kube-apiserver's side dominates there).
func kubeConfig(kubeconfig string) (*rest.Config, error) {
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return c, nil
}

// kubeletCredentials fills in what the kubelet flags leave out from Hindsight's own
// kubeconfig or service account, as metrics-server does: the CA that verifies kubelets
// (in a cluster, the service account's ca.crt) and the client credentials.
func kubeletCredentials(kc *scraper.KubeletConfig, rc *rest.Config, log *slog.Logger) {
	if kc.CAFile == "" && !kc.InsecureTLS {
		if rc.CAFile != "" {
			kc.CAFile = rc.CAFile
		} else {
			log.Warn("kubelet serving certificates are verified against the system roots: give --kubelet-certificate-authority")
		}
	}
	if kc.ClientCertFile != "" {
		return
	}
	switch {
	case rc.CertFile != "" && rc.KeyFile != "":
		kc.ClientCertFile, kc.ClientKeyFile = rc.CertFile, rc.KeyFile
	case rc.BearerTokenFile != "":
		kc.TokenFile = rc.BearerTokenFile
	case rc.BearerToken != "":
		kc.BearerToken = rc.BearerToken
	default:
		log.Warn("kubelets are scraped without credentials: give --kubelet-client-certificate/--kubelet-client-key, or a kubeconfig whose credentials are files or a token")
	}
}

// The names of the informational /readyz checks (see apiserver.InformationalCheck).
const (
	checkStorageWritable = "storage-writable"
	checkCatalog         = "catalog"
	checkKubeletClocks   = "kubelet-clocks"
	checkRollups         = "rollups"
)
