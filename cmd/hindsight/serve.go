package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/hindsight-metrics/hindsight/apiserver"
	"github.com/hindsight-metrics/hindsight/httpapi"
	"github.com/hindsight-metrics/hindsight/httpapi/budget"
	"github.com/hindsight-metrics/hindsight/httpapi/promapi"
	"github.com/hindsight-metrics/hindsight/scraper"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// serve wires storage, informers, the scraper and the API server, runs them until ctx ends
// and shuts down in order: stop scraping and serving first, then close the storage.
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

	restConfig, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("create kubernetes client: %w", err)
	}
	metaClient, err := metadata.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("create metadata client: %w", err)
	}
	nodeSelector, err := labels.Parse(o.nodeSelector)
	if err != nil {
		return fmt.Errorf("parse --node-selector: %w", err) // validated already
	}

	reg := legacyregistry.Registerer()
	db, err := tsdb.Open(o.storageConfig(), log.With("component", "tsdb"), reg)
	if err != nil {
		return fmt.Errorf("open storage: %w", err)
	}
	// The catalog closes before the TSDB, and only once: closeStorage may run twice.
	stopCatalog := func() error { return nil }
	closeStorage := sync.OnceValue(func() error {
		var errs []error
		if err := stopCatalog(); err != nil {
			errs = append(errs, err)
		}
		if err := db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close storage: %w", err))
		}
		return errors.Join(errs...)
	})
	// Runs on an early return; after a run, the storage is closed already and this is a no-op.
	defer func() { err = errors.Join(err, closeStorage()) }()

	// Nodes: a full informer (the scraper needs addresses and ports, the API labels).
	// Pods: metadata only, Running pods only, as metrics-server watches them.
	nodeFactory := informers.NewSharedInformerFactory(client, 0)
	nodeInformer := nodeFactory.Core().V1().Nodes()
	podFactory := metadatainformer.NewFilteredSharedInformerFactory(metaClient, 0, metav1.NamespaceAll, func(lo *metav1.ListOptions) {
		lo.FieldSelector = "status.phase=Running"
	})
	podInformer := podFactory.ForResource(podsGVR)
	nodesSynced := nodeInformer.Informer().HasSynced
	podsSynced := podInformer.Informer().HasSynced

	kc := o.kubeletConfig()
	kubeletCredentials(&kc, restConfig, log)
	kubelets, err := scraper.NewKubeletClient(kc)
	if err != nil {
		return fmt.Errorf("kubelet client: %w", err)
	}
	defer kubelets.Close()
	scr, err := scraper.New(scraper.Config{Resolution: o.resolution, NodeSelector: nodeSelector},
		nodeInformer.Lister(), podUIDs{podInformer.Lister()}, kubelets, db, log.With("component", "scraper"), reg)
	if err != nil {
		return fmt.Errorf("create scraper: %w", err)
	}

	// The catalog opens before the API server, which serves history from it.
	cat, stop, err := startCatalog(ctx, o, client, nodeInformer.Informer(), log.With("component", "catalog"))
	if err != nil {
		return err
	}
	stopCatalog = stop

	apiCfg := &apiserver.Config{
		Source:       db,
		Nodes:        nodeInformer.Lister(),
		Pods:         podInformer.Lister(),
		NodeSelector: nodeSelector,
		ReadyzChecks: []healthz.HealthChecker{
			apiserver.StorageReadyCheck(db.Ready),
			apiserver.InformerSyncCheck(nodesSynced, podsSynced),
			storageWritableCheck(db.StorageHealth),
		},
		HealthChecks: []healthz.HealthChecker{apiserver.MetadataInformerSyncCheck(podsSynced)},
		LivezChecks: []healthz.HealthChecker{
			apiserver.CollectionTimelyCheck(func() error { return scr.CheckTimely(time.Now()) }),
		},
		Registerer: reg,
		Log:        log.With("component", "apiserver"),
	}
	o.server.SelfAuthorizedPaths = []string{httpapi.Prefix + "*", prometheusPrefix + "/*"}
	if err := o.server.ApplyTo(apiCfg); err != nil {
		return fmt.Errorf("configure API server: %w", err)
	}
	srv, err := apiCfg.Complete().New()
	if err != nil {
		return fmt.Errorf("create API server: %w", err)
	}
	// One query budget guards the TSDB for both read APIs.
	queries, err := budget.New(budget.DefaultSize)
	if err != nil {
		return fmt.Errorf("create query budget: %w", err)
	}
	history, err := httpapi.New(httpapi.Config{
		Samples:      db,
		Catalog:      cat,
		Authorizer:   apiCfg.Generic.Authorization.Authorizer,
		Resolution:   o.resolution,
		MaxPoints:    o.historyMaxPoints,
		MaxSeries:    o.historyMaxSeries,
		QueryTimeout: o.historyQueryTimeout,
		Budget:       queries,
		Log:          log.With("component", "history"),
		Registerer:   reg,
	})
	if err != nil {
		return fmt.Errorf("create history API: %w", err)
	}
	srv.HandlePrefix(httpapi.Prefix, history)
	prom, err := promapi.New(promapi.Config{
		Prefix:      prometheusPrefix + "/api/v1",
		Queryable:   db.Queryable(),
		Authorize:   httpapi.RequireNodeMetrics(apiCfg.Generic.Authorization.Authorizer),
		Revision:    "hindsight " + version,
		Timeout:     o.historyQueryTimeout,
		MaxSamples:  o.promMaxSamples,
		Budget:      queries,
		Unavailable: []error{tsdb.ErrClosed},
		Registerer:  reg,
	}, log.With("component", "promapi"))
	if err != nil {
		return fmt.Errorf("create Prometheus API: %w", err)
	}
	srv.HandlePrefix(prometheusPrefix+"/", prom)

	nodeFactory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	defer nodeFactory.Shutdown()
	defer podFactory.Shutdown()

	scrape := func(ctx context.Context) error {
		// Scrape once the informers know the nodes and pods, so that the first round sees
		// every node and every sample gets its pod's UID.
		if !cache.WaitForCacheSync(ctx.Done(), nodesSynced, podsSynced) {
			return nil // shutting down
		}
		log.Info("informers synced; scraping")
		if err := scr.Run(ctx); err != nil {
			return fmt.Errorf("scraper: %w", err)
		}
		return nil
	}
	serveAPI := func(ctx context.Context) error {
		if err := srv.Run(ctx); err != nil {
			return fmt.Errorf("API server: %w", err)
		}
		return nil
	}
	return runThenClose(ctx, log, scrape, serveAPI, closeStorage, storageCloseDeadline)
}

// prometheusPrefix is where the Prometheus-compatible read API lives: a Prometheus data
// source in Grafana, or promtool, is pointed at https://<hindsight>/prometheus.
const prometheusPrefix = "/prometheus"

// storageCloseDeadline bounds how long after shutdown begins the storage waits for the API
// server before it closes. The API server may take long to stop: --shutdown-delay-duration,
// then up to --request-timeout (60s) to drain requests, and as much again for the HTTP
// server's Shutdown. The kubelet sends SIGKILL terminationGracePeriodSeconds after SIGTERM
// (30s by default, 60s in deploy/); closing the storage by 20s leaves the memory snapshot
// time to be written, so that the next start replays little WAL. Closing it while the API
// server drains is safe: the current window is served from memory.
const storageCloseDeadline = 20 * time.Second

// runThenClose runs the scraper and the API server until ctx ends or either of them
// returns, then shuts down in order: the scraper stops first (its round in flight is
// cancelled, and it writes nothing after it returns), the API server drains, and the
// storage is closed last, flushing the TSDB and writing its memory snapshot. The storage
// closes only after the scraper has returned, and at the latest closeDeadline after the
// shutdown began, even if the API server is still draining (it goes on serving from
// memory). runThenClose returns once both have returned, with their errors and the
// storage's.
func runThenClose(ctx context.Context, log *slog.Logger, scrape, serveAPI func(context.Context) error, closeStorage func() error, closeDeadline time.Duration) error {
	g, gctx := errgroup.WithContext(ctx)
	// Either one returning, even with nil, stops the other.
	gctx, stop := context.WithCancel(gctx)
	defer stop()
	scraperDone, apiDone := make(chan struct{}), make(chan struct{})
	g.Go(func() error {
		defer close(scraperDone)
		defer stop()
		err := scrape(gctx)
		log.Info("scraper stopped")
		return err
	})
	g.Go(func() error {
		defer close(apiDone)
		defer stop()
		err := serveAPI(gctx)
		log.Info("API server stopped")
		return err
	})

	<-gctx.Done()
	log.Info("shutting down: stopping the scraper, then the API server, then closing the storage",
		"storageCloseDeadline", closeDeadline)
	deadline := time.NewTimer(closeDeadline)
	defer deadline.Stop()
	<-scraperDone
	select {
	case <-apiDone:
	case <-deadline.C:
		log.Warn("The API server is still draining; closing the storage now, the current window is still served from memory",
			"after", closeDeadline)
	}
	closeErr := closeStorage()
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

// checkStorageWritable names the dedicated storage check.
const checkStorageWritable = "storage-writable"

// storageWritableCheck returns the "storage-writable" check for /readyz. It is
// informational: GET /readyz/storage-writable fails (500) with health's error, which says
// since when and why the storage cannot be written, but within the /readyz aggregate, which
// the kubelet's readiness probe reads, it always passes.
//
// A full or read-only volume loses history only: the current window is computed from
// memory and still right. Failing readiness would take the only replica out of the
// Service's endpoints, so the aggregator would answer 503 for metrics.k8s.io and the HPA
// would stop scaling, for a problem that an operator must fix; failing liveness would
// restart the container in a loop, which frees no space. So an unwritable storage shows as
// this check, hindsight_storage_writable = 0, and one warning in the log. Reading the
// check takes a token allowed to get /readyz/* (the built-in system:monitoring role), like
// the kube-apiserver's own individual checks.
func storageWritableCheck(health func() error) healthz.HealthChecker {
	return healthz.NamedCheck(checkStorageWritable, func(r *http.Request) error {
		if path.Base(r.URL.Path) != checkStorageWritable {
			return nil // evaluated as part of /readyz
		}
		return health()
	})
}

// podUIDs looks pod UIDs up in the metadata informer's cache.
type podUIDs struct{ lister cache.GenericLister }

func (p podUIDs) PodUID(namespace, name string) string {
	obj, err := p.lister.ByNamespace(namespace).Get(name)
	if err != nil {
		return ""
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return ""
	}
	return string(m.UID)
}
