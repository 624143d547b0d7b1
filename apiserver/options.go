package apiserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/compatibility"
)

// Defaults of the serving flags. The port and the certificate directory are metrics-server's.
const (
	// DefaultSecurePort is --secure-port's default.
	DefaultSecurePort = 10250
	// DefaultCertDir is --cert-dir's default, relative to the working directory. With a
	// read-only root filesystem, point --cert-dir at a writable volume or pass
	// --tls-cert-file/--tls-private-key-file.
	DefaultCertDir = "apiserver.local.config/certificates"
)

// Options holds the generic apiserver flags metrics-server v0.9.0 exposes, under the same
// names and defaults, so Hindsight can replace it in place: serving (--secure-port,
// --bind-address, --cert-dir, --tls-*), delegated authentication (--authentication-kubeconfig,
// --client-ca-file, --requestheader-*, ...), delegated authorization
// (--authorization-kubeconfig, --authorization-always-allow-paths, ...), audit (--audit-*),
// features (--profiling, ...) and the generic run options (--shutdown-delay-duration,
// --request-timeout, --max-requests-inflight, ...). cmd owns the remaining flags, including
// --kubeconfig.
type Options struct {
	ServerRun      *genericoptions.ServerRunOptions
	SecureServing  *genericoptions.SecureServingOptionsWithLoopback
	Authentication *genericoptions.DelegatingAuthenticationOptions
	Authorization  *genericoptions.DelegatingAuthorizationOptions
	Audit          *genericoptions.AuditOptions
	Features       *genericoptions.FeatureOptions

	// SelfAuthorizedPaths are paths (with a trailing * for a prefix, as
	// --authorization-always-allow-paths takes them) whose handlers authorize every
	// request themselves, such as the history API's SubjectAccessReviews per namespace.
	// Requests to them are still authenticated (an anonymous one gets 401), but the
	// server's own authorization lets them through, so that reading them takes no
	// non-resource RBAC rule beyond the rights the handler checks. Not a flag.
	SelfAuthorizedPaths []string

	// OwnLimitPaths are paths (a trailing * for a prefix) whose handlers bound their own
	// requests: their own in-flight limit, query timeout and write timeout. They are left
	// out of --max-requests-inflight and --request-timeout, which then guard
	// metrics.k8s.io (and the server's other paths) alone, so that load on them never
	// takes the HPA's or kubectl top's places. (The server treats them as long-running:
	// a graceful shutdown does not wait for them.) Not a flag.
	OwnLimitPaths []string
}

// NewOptions returns the options with metrics-server's defaults: port 10250 on all
// interfaces, a self-signed certificate in DefaultCertDir when none is given, anonymous
// requests delegated to the kube-apiserver (so they get 403, not data), and /healthz, /readyz
// and /livez allowed without authorization.
func NewOptions() *Options {
	o := &Options{
		// An empty component registry, as in metrics-server: the version flags exist but
		// there are no Hindsight feature gates to emulate.
		ServerRun:      genericoptions.NewServerRunOptionsForComponent("hindsight", compatibility.NewComponentGlobalsRegistry()),
		SecureServing:  genericoptions.NewSecureServingOptions().WithLoopback(),
		Authentication: genericoptions.NewDelegatingAuthenticationOptions(),
		Authorization:  genericoptions.NewDelegatingAuthorizationOptions(),
		Audit:          genericoptions.NewAuditOptions(),
		Features:       genericoptions.NewFeatureOptions(),
	}
	o.SecureServing.BindPort = DefaultSecurePort
	o.SecureServing.ServerCert.CertDirectory = DefaultCertDir
	return o
}

// AddNamedFlags adds the flags in metrics-server's sections: "generic", "apiserver secure
// serving", "apiserver authentication", "apiserver authorization", "apiserver audit log" and
// "features".
func (o *Options) AddNamedFlags(nfs *cliflag.NamedFlagSets) {
	o.ServerRun.AddUniversalFlags(nfs.FlagSet("generic"))
	o.SecureServing.AddFlags(nfs.FlagSet("apiserver secure serving"))
	o.Authentication.AddFlags(nfs.FlagSet("apiserver authentication"))
	o.Authorization.AddFlags(nfs.FlagSet("apiserver authorization"))
	o.Audit.AddFlags(nfs.FlagSet("apiserver audit log"))
	o.Features.AddFlags(nfs.FlagSet("features"))
}

// AddFlags adds every flag of AddNamedFlags to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	var nfs cliflag.NamedFlagSets
	o.AddNamedFlags(&nfs)
	for _, name := range nfs.Order {
		fs.AddFlagSet(nfs.FlagSets[name])
	}
}

// Validate reports every invalid flag value.
func (o *Options) Validate() error {
	var errs []error
	errs = append(errs, o.ServerRun.Validate()...)
	errs = append(errs, o.SecureServing.Validate()...)
	errs = append(errs, o.Authentication.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	errs = append(errs, o.Audit.Validate()...)
	errs = append(errs, o.Features.Validate()...)
	return errors.Join(errs...)
}

// ApplyTo fills cfg.Generic (created with NewGenericConfig when nil): it generates a
// self-signed certificate for localhost and 127.0.0.1 when no --tls-cert-file is given, opens
// the listener, and builds the delegating authenticator and authorizer, which reach the
// kube-apiserver through --authentication-kubeconfig/--authorization-kubeconfig or the
// in-cluster config. Call it once, after parsing flags.
//
// --enable-priority-and-fairness is accepted but has no effect (as in metrics-server): the
// max-in-flight limits apply instead.
func (o *Options) ApplyTo(cfg *Config) (err error) {
	if cfg.Generic == nil {
		cfg.Generic = NewGenericConfig()
	}
	g := cfg.Generic
	if err := o.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return fmt.Errorf("create self-signed certificate: %w", err)
	}
	if err := o.ServerRun.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("apply version flags: %w", err)
	}
	effective := g.EffectiveVersion
	if err := o.ServerRun.ApplyTo(g); err != nil {
		return fmt.Errorf("apply generic run options: %w", err)
	}
	// The component registry is empty, so ServerRun.ApplyTo leaves no effective version.
	if g.EffectiveVersion == nil {
		g.EffectiveVersion = effective
	}
	if g.EffectiveVersion == nil {
		g.EffectiveVersion = utilcompatibility.DefaultBuildEffectiveVersion()
	}
	if err := o.SecureServing.ApplyTo(&g.SecureServing, &g.LoopbackClientConfig); err != nil {
		return fmt.Errorf("apply secure serving: %w", err)
	}
	defer func() {
		if err != nil && g.SecureServing != nil && g.SecureServing.Listener != nil {
			err = errors.Join(err, g.SecureServing.Listener.Close())
		}
	}()
	if err := o.Authentication.ApplyTo(&g.Authentication, g.SecureServing, g.OpenAPIConfig); err != nil {
		return fmt.Errorf("apply delegated authentication: %w", err)
	}
	if g.Authentication.Authenticator != nil {
		g.Authentication.Authenticator = anonymousOnlyForHealth{g.Authentication.Authenticator}
	}
	for _, p := range o.SelfAuthorizedPaths {
		if !slices.Contains(o.Authorization.AlwaysAllowPaths, p) {
			o.Authorization.AlwaysAllowPaths = append(o.Authorization.AlwaysAllowPaths, p)
		}
	}
	if len(o.OwnLimitPaths) > 0 {
		g.LongRunningFunc = ownLimit(o.OwnLimitPaths, g.LongRunningFunc)
	}
	if err := o.Authorization.ApplyTo(&g.Authorization); err != nil {
		return fmt.Errorf("apply delegated authorization: %w", err)
	}
	if err := o.Audit.ApplyTo(g); err != nil {
		return fmt.Errorf("apply audit: %w", err)
	}
	g.EnableProfiling = o.Features.EnableProfiling
	g.EnableContentionProfiling = o.Features.EnableContentionProfiling
	g.DebugSocketPath = o.Features.DebugSocketPath
	return nil
}

// ownLimit returns a long-running check that is true for paths (a trailing * for a
// prefix) and otherwise asks next (nil: false).
func ownLimit(paths []string, next apirequest.LongRunningRequestCheck) apirequest.LongRunningRequestCheck {
	return func(r *http.Request, ri *apirequest.RequestInfo) bool {
		for _, p := range paths {
			if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(r.URL.Path, prefix) || r.URL.Path == p {
				return true
			}
		}
		return next != nil && next(r, ri)
	}
}
