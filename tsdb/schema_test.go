package tsdb

import (
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// The schema is consistent: one row per name and per object and resource.
func TestSchema(t *testing.T) {
	t.Parallel()
	names := map[string]bool{}
	type objRes struct {
		o Object
		r Resource
	}
	pairs := map[objRes]bool{}
	for _, s := range Schema {
		if names[s.Name] {
			t.Errorf("%s: two rows", s.Name)
		}
		names[s.Name] = true
		if pairs[objRes{s.Object, s.Resource}] {
			t.Errorf("%s: a second %s series of %s", s.Name, s.Resource, s.Object)
		}
		pairs[objRes{s.Object, s.Resource}] = true
		if s.Object < ObjectNode || s.Object >= numObjects || s.Resource >= NumResources {
			t.Errorf("%s: object %s, resource %s", s.Name, s.Object, s.Resource)
		}
		if got := SeriesName(s.Object, s.Resource); got != s.Name {
			t.Errorf("SeriesName(%s, %s) = %q, want %q", s.Object, s.Resource, got, s.Name)
		}
		if got, ok := LookupSeries(s.Name); !ok || got != s {
			t.Errorf("LookupSeries(%q) = %+v, %v", s.Name, got, ok)
		}
		if s.Resource.Kind() == KindCounter && !strings.HasSuffix(s.Name, "_total") {
			t.Errorf("%s: a counter without _total", s.Name)
		}
	}
	if _, ok := LookupSeries("node_cpu_usage_seconds"); ok {
		t.Error("LookupSeries found a name that is not in the schema")
	}
	for r := range NumResources {
		if got, ok := ParseResource(r.String()); !ok || got != r {
			t.Errorf("ParseResource(%q) = %v, %v", r.String(), got, ok)
		}
		if r.Unit() == "" {
			t.Errorf("%s: no unit", r)
		}
		if r.History() && SeriesName(ObjectNode, r) == "" {
			t.Errorf("%s: served by history without a node series", r)
		}
	}
	if _, ok := ParseResource("gpu"); ok {
		t.Error(`ParseResource("gpu") = true`)
	}
	if NumResources > 32 {
		t.Error("ResourceSet holds 32 resources")
	}
}

func TestObjKeyLabels(t *testing.T) {
	t.Parallel()
	b := labels.NewScratchBuilder(6)
	for _, tc := range []struct {
		k    objKey
		r    Resource
		want string
	}{
		{objKey{kind: ObjectNode, node: "n"}, ResourceCPU, `{__name__="node_cpu_usage_seconds_total", node="n"}`},
		{objKey{kind: ObjectPod, node: "n", namespace: "ns", pod: "p"}, ResourceSwap, `{__name__="pod_swap_usage_bytes", namespace="ns", node="n", pod="p"}`},
		{objKey{kind: ObjectContainer, node: "n", namespace: "ns", pod: "p", container: "c", uid: "u"}, ResourceStartTime,
			`{__name__="container_start_time_seconds", container="c", namespace="ns", node="n", pod="p", uid="u"}`},
	} {
		if got := tc.k.labels(&b, tc.r).String(); got != tc.want {
			t.Errorf("labels(%+v, %s) = %s, want %s", tc.k, tc.r, got, tc.want)
		}
	}
}

func TestResourceSet(t *testing.T) {
	t.Parallel()
	var s Sample
	s.Set(ResourceSwap, 3)
	s.Set(ResourceCPU, 1)
	if v, ok := s.Get(ResourceSwap); !ok || v != 3 {
		t.Errorf("Get(swap) = %v, %v", v, ok)
	}
	if _, ok := s.Get(ResourceMemory); ok {
		t.Error("Get(memory) of a sample without memory: true")
	}
	if n := s.Present.Len(); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
}
