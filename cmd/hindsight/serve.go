package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	defer func() {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close storage: %w", cerr))
		}
		log.Info("storage closed")
	}()

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

	apiCfg := &apiserver.Config{
		Source:       db,
		Nodes:        nodeInformer.Lister(),
		Pods:         podInformer.Lister(),
		NodeSelector: nodeSelector,
		ReadyzChecks: []healthz.HealthChecker{
			apiserver.StorageReadyCheck(db.Ready),
			apiserver.InformerSyncCheck(nodesSynced, podsSynced),
		},
		HealthChecks: []healthz.HealthChecker{apiserver.MetadataInformerSyncCheck(podsSynced)},
		LivezChecks: []healthz.HealthChecker{
			apiserver.CollectionTimelyCheck(func() error { return scr.CheckTimely(time.Now()) }),
		},
		Registerer: reg,
		Log:        log.With("component", "apiserver"),
	}
	if err := o.server.ApplyTo(apiCfg); err != nil {
		return fmt.Errorf("configure API server: %w", err)
	}
	srv, err := apiCfg.Complete().New()
	if err != nil {
		return fmt.Errorf("create API server: %w", err)
	}

	nodeFactory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	defer nodeFactory.Shutdown()
	defer podFactory.Shutdown()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// Scrape once the informers know the nodes and pods, so that the first round sees
		// every node and every sample gets its pod's UID.
		if !cache.WaitForCacheSync(gctx.Done(), nodesSynced, podsSynced) {
			return nil // shutting down
		}
		log.Info("informers synced; scraping")
		if err := scr.Run(gctx); err != nil {
			return fmt.Errorf("scraper: %w", err)
		}
		log.Info("scraper stopped")
		return nil
	})
	g.Go(func() error {
		if err := srv.Run(gctx); err != nil {
			return fmt.Errorf("API server: %w", err)
		}
		log.Info("API server stopped")
		return nil
	})
	return g.Wait()
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
