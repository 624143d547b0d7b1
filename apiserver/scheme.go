package apiserver

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/metrics/pkg/apis/metrics/install"
)

// scheme holds the metrics.k8s.io types: the internal version the storage returns and the
// served versions v1 and v1beta1 (v1 preferred), which the generated conversions turn it into.
// It is filled once at package initialisation and only read afterwards.
var scheme = newScheme()

// codecs serves JSON, YAML and protobuf (kubectl top asks for protobuf; the v1 and v1beta1
// types carry generated protobuf marshalers).
var codecs = serializer.NewCodecFactory(scheme)

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	install.Install(s)
	// The meta types (ListOptions, GetOptions, Status, ...) as every API group server needs them.
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	s.AddUnversionedTypes(unversioned,
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
	return s
}
