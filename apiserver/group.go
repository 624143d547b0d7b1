package apiserver

import (
	"net/http"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/discovery"
)

// HandleGroup serves h as the API group version gv, so that the kube-apiserver can
// aggregate it with an APIService of its own: /apis/<group> and /apis/<group>/<version>
// answer discovery (an APIGroup and an empty APIResourceList: the group's paths are not
// Kubernetes resources, so kubectl get, the garbage collector and the namespace controller
// leave them alone), /apis lists the group in both its forms, and every path under
// /apis/<group>/<version>/ goes to h with that prefix replaced by target (an existing
// handler's own prefix, such as /history/v1/). Requests there are resource requests to
// the generic apiserver: they are authorized by the delegated authorizer as verb get (or
// list, or create for POST) on resource <first path segment>.<group>, before h runs its
// own checks. Call it before Run.
func (s *Server) HandleGroup(gv schema.GroupVersion, target string, h http.Handler) {
	version := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
	group := metav1.APIGroup{
		Name:             gv.Group,
		Versions:         []metav1.GroupVersionForDiscovery{version},
		PreferredVersion: version,
	}
	s.generic.DiscoveryGroupManager.AddGroup(group)
	s.generic.AggregatedDiscoveryGroupManager.AddGroupVersion(gv.Group, apidiscoveryv2.APIVersionDiscovery{
		Version:   gv.Version,
		Resources: []apidiscoveryv2.APIResourceDiscovery{},
		Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
	})
	mux := s.generic.Handler.NonGoRestfulMux
	mux.Handle("/apis/"+gv.Group, discovery.NewAPIGroupHandler(codecs, group))
	mux.Handle("/apis/"+gv.Group+"/", discovery.NewAPIGroupHandler(codecs, group))
	versionHandler := discovery.NewAPIVersionHandler(codecs, gv, discovery.APIResourceListerFunc(func() []metav1.APIResource {
		return []metav1.APIResource{}
	}))
	root := "/apis/" + gv.String()
	mux.Handle(root, versionHandler)
	mux.HandlePrefix(root+"/", rewritePrefix(root+"/", target, h))
}

// rewritePrefix hands h each request with the path prefix from replaced by to.
func rewritePrefix(from, to string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, from)
		if !ok {
			http.NotFound(w, r)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = to + rest
		if r.URL.RawPath != "" {
			if raw, ok := strings.CutPrefix(r.URL.RawPath, from); ok {
				r2.URL.RawPath = to + raw
			} else {
				r2.URL.RawPath = ""
			}
		}
		r2.RequestURI = r2.URL.RequestURI()
		h.ServeHTTP(w, r2)
	})
}
