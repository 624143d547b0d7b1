package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/metrics/pkg/apis/metrics"
	metricsv1 "k8s.io/metrics/pkg/apis/metrics/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/hindsight-metrics/hindsight/apiserver/internal/openapi"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

// MetricsSource answers current-window queries. *tsdb.DB implements it. Both methods answer in
// input order and leave out what has no window; they must be safe for concurrent use.
type MetricsSource interface {
	// NodeUsage returns the current window of each named node that has one.
	NodeUsage(nodes []string) []tsdb.NodeUsage
	// PodUsage returns the current window of each pod that has a complete one (every container).
	PodUsage(pods []tsdb.PodRef) []tsdb.PodUsage
}

// Config is everything New needs. Build the Generic part with Options.ApplyTo (or, in tests,
// NewGenericConfig plus hand-set serving and auth), fill the rest, then Complete().New().
type Config struct {
	// Generic configures the generic API server: serving, authentication, authorization, audit,
	// limits. Required, with SecureServing, Authentication.Authenticator and
	// Authorization.Authorizer set: this server never runs without authn and authz. Start from
	// NewGenericConfig, which carries this package's codecs and OpenAPI definitions.
	Generic *genericapiserver.Config

	// Source provides the numbers. Required.
	Source MetricsSource
	// Nodes lists the nodes that may be served and provides their labels. Required.
	Nodes corev1listers.NodeLister
	// Pods lists the pods and provides their labels and phase: the process's one pod cache
	// (every phase). Only Running pods are served, as metrics-server serves them. Required.
	Pods corev1listers.PodLister
	// NodeSelector limits the nodes served (metrics-server's -l/--node-selector). Nil serves
	// every node the lister has.
	NodeSelector labels.Selector

	// HealthChecks are added to /healthz, /livez and /readyz; LivezChecks to /livez only;
	// ReadyzChecks to /readyz only. StorageReadyCheck and the other check constructors give
	// metrics-server's set and say where each belongs.
	HealthChecks []healthz.HealthChecker
	LivezChecks  []healthz.HealthChecker
	ReadyzChecks []healthz.HealthChecker

	// Registerer receives the self-metrics (hindsight_api_metric_freshness_seconds). Pass
	// legacyregistry.Registerer() for them to appear on this server's /metrics. Nil keeps them
	// unregistered.
	Registerer prometheus.Registerer
	// Log receives lifecycle messages. Nil discards them. The generic apiserver itself logs
	// through klog; cmd routes klog to the same handler.
	Log *slog.Logger
}

// Validate reports every missing required field.
func (c *Config) Validate() error {
	var errs []error
	if c.Generic == nil {
		errs = append(errs, errors.New("apiserver config: Generic is required"))
	} else {
		if c.Generic.SecureServing == nil {
			errs = append(errs, errors.New("apiserver config: Generic.SecureServing is required"))
		}
		if c.Generic.Authentication.Authenticator == nil {
			errs = append(errs, errors.New("apiserver config: Generic.Authentication.Authenticator is required"))
		}
		if c.Generic.Authorization.Authorizer == nil {
			errs = append(errs, errors.New("apiserver config: Generic.Authorization.Authorizer is required"))
		}
	}
	if c.Source == nil {
		errs = append(errs, errors.New("apiserver config: Source is required"))
	}
	if c.Nodes == nil {
		errs = append(errs, errors.New("apiserver config: Nodes is required"))
	}
	if c.Pods == nil {
		errs = append(errs, errors.New("apiserver config: Pods is required"))
	}
	return errors.Join(errs...)
}

// NewGenericConfig returns the generic apiserver configuration this package serves with: its
// codecs (JSON, YAML, protobuf), the build's effective version, and OpenAPI v2 and v3 from the
// definitions generated for metrics.k8s.io v1 and v1beta1 (the generic apiserver needs the
// v3 ones to install any API group). Serving and auth are left to Options.ApplyTo.
func NewGenericConfig() *genericapiserver.Config {
	c := genericapiserver.NewConfig(codecs)
	c.EffectiveVersion = utilcompatibility.DefaultBuildEffectiveVersion()
	setOpenAPI(c)
	return c
}

func setOpenAPI(c *genericapiserver.Config) {
	namer := openapinamer.NewDefinitionNamer(scheme)
	if c.OpenAPIConfig == nil {
		c.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openapi.GetOpenAPIDefinitions, namer)
		c.OpenAPIConfig.Info.Title = "Hindsight"
	}
	if c.OpenAPIV3Config == nil {
		c.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openapi.GetOpenAPIDefinitions, namer)
		c.OpenAPIV3Config.Info.Title = "Hindsight"
	}
}

// CompletedConfig is a Config with its defaults filled in; only Complete makes one.
type CompletedConfig struct {
	*completedConfig
}

type completedConfig struct {
	Config
}

// Complete fills in defaults: OpenAPI configs and effective version when Generic lacks them
// (set in place on *Generic), an everything node selector, a discarding logger. It does not
// validate; New does.
func (c *Config) Complete() CompletedConfig {
	cc := &completedConfig{Config: *c}
	if cc.Generic != nil {
		if cc.Generic.EffectiveVersion == nil {
			cc.Generic.EffectiveVersion = utilcompatibility.DefaultBuildEffectiveVersion()
		}
		setOpenAPI(cc.Generic)
	}
	if cc.NodeSelector == nil {
		cc.NodeSelector = labels.Everything()
	}
	if cc.Log == nil {
		cc.Log = slog.New(slog.DiscardHandler)
	}
	return CompletedConfig{cc}
}

// Server is the metrics.k8s.io API server.
type Server struct {
	generic *genericapiserver.GenericAPIServer
	log     *slog.Logger
}

// New validates the config and builds the server: metrics.k8s.io v1 and v1beta1 with nodes
// and pods, the health checks and the self-metrics. Nothing runs until Run.
func (c CompletedConfig) New() (*Server, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	am, err := newAPIMetrics(c.Registerer)
	if err != nil {
		return nil, err
	}
	gs, err := c.Generic.Complete(nil).New("hindsight", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("build generic apiserver: %w", err)
	}

	nodes := &nodeMetrics{source: c.Source, nodes: c.Nodes, selector: c.NodeSelector, metrics: am, now: time.Now}
	pods := &podMetrics{source: c.Source, pods: c.Pods, metrics: am, now: time.Now}
	info := genericapiserver.NewDefaultAPIGroupInfo(metrics.GroupName, scheme, metav1.ParameterCodec, codecs)
	for _, v := range []string{metricsv1.SchemeGroupVersion.Version, metricsv1beta1.SchemeGroupVersion.Version} {
		info.VersionedResourcesStorageMap[v] = map[string]rest.Storage{"nodes": nodes, "pods": pods}
	}
	if err := gs.InstallAPIGroup(&info); err != nil {
		return nil, fmt.Errorf("install metrics.k8s.io: %w", err)
	}
	if err := gs.AddHealthChecks(c.HealthChecks...); err != nil {
		return nil, fmt.Errorf("add health checks: %w", err)
	}
	if err := gs.AddLivezChecks(0, c.LivezChecks...); err != nil {
		return nil, fmt.Errorf("add livez checks: %w", err)
	}
	if err := gs.AddReadyzChecks(c.ReadyzChecks...); err != nil {
		return nil, fmt.Errorf("add readyz checks: %w", err)
	}
	return &Server{generic: gs, log: c.Log}, nil
}

// HandlePrefix serves h for every path under prefix (which should end in "/") on this
// server's port, behind the same authentication, authorization (as a non-resource URL: verb
// "get" on the path, unless the path is one of Options.SelfAuthorizedPaths), audit and
// limits as metrics.k8s.io. The authenticated user is in the
// request context (k8s.io/apiserver/pkg/endpoints/request.UserFrom). Call it before Run.
func (s *Server) HandlePrefix(prefix string, h http.Handler) {
	s.generic.Handler.NonGoRestfulMux.HandlePrefix(prefix, h)
}

// Run serves until ctx is done, then shuts down gracefully (see the generic apiserver's
// --shutdown-delay-duration) and returns nil on a clean stop. Call it once.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("serving metrics.k8s.io", "versions", []string{"v1", "v1beta1"})
	return s.generic.PrepareRun().RunWithContext(ctx)
}
