package promapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Namespaced serves root/namespaces/<ns>/<rest> as root/<rest> with the namespace
// parameter <ns> in the query (in place of any there; one in a POST body is still read, and
// authorized, as the Handler reads every one), and every other path unchanged. Through the kube-apiserver it gives a tenant a data source URL of their own,
// .../apis/<group>/v1/namespaces/<ns>, whose requests RBAC sees in namespace <ns> (so a
// RoleBinding grants them) and which the Handler scopes to <ns> alone, whoever asks: a
// cluster-wide reader's data source for one namespace shows that namespace, and a selector
// naming another namespace finds nothing.
// A namespace that is not a DNS label answers 400, as the Handler answers bad parameters.
func Namespaced(root string, h http.Handler) http.Handler {
	prefix := strings.TrimSuffix(root, "/") + "/namespaces/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok {
			h.ServeHTTP(w, r)
			return
		}
		ns, rest, _ := strings.Cut(rest, "/")
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			writeError(w, badParam(namespaceParam, fmt.Errorf("%q in the path: %s", ns, strings.Join(errs, "; "))))
			return
		}
		r2 := r.Clone(context.WithValue(r.Context(), pinnedKey{}, ns))
		r2.URL.Path = strings.TrimSuffix(root, "/") + "/" + rest
		r2.URL.RawPath = ""
		q := r2.URL.Query()
		q.Set(namespaceParam, ns)
		r2.URL.RawQuery = q.Encode()
		r2.RequestURI = r2.URL.RequestURI()
		h.ServeHTTP(w, r2)
	})
}
