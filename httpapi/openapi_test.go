package httpapi

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// TestOpenAPIDocument checks openapi.json against the code: every endpoint of the
// index, every query parameter, the fixed sets of values, and every $ref.
func TestOpenAPIDocument(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIJSON, &doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	if v, _ := doc["openapi"].(string); v != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", v)
	}
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatal("openapi.json has no paths")
	}

	// Every endpoint of the index; its {a|b|…} segment is the path parameter
	// {workloads}, whose enum must name each alternative.
	var index struct {
		Endpoints []string `json:"endpoints"`
		OpenAPI   string   `json:"openapi"`
	}
	if err := json.Unmarshal(indexJSON, &index); err != nil {
		t.Fatalf("indexJSON does not parse: %v", err)
	}
	if len(index.Endpoints) == 0 {
		t.Fatal("indexJSON lists no endpoint")
	}
	alternatives := regexp.MustCompile(`\{[a-z]+(\|[a-z]+)+\}`)
	var workloadPaths []string
	for _, ep := range append(slices.Clone(index.Endpoints), index.OpenAPI) {
		path := ep
		var kinds []string
		if m := alternatives.FindString(ep); m != "" {
			kinds = strings.Split(strings.Trim(m, "{}"), "|")
			path = strings.Replace(ep, m, "{workloads}", 1)
			workloadPaths = append(workloadPaths, path)
		}
		item, ok := paths[path].(map[string]any)
		if !ok {
			t.Errorf("endpoint %s (as %s) is not in paths", ep, path)
			continue
		}
		if kinds == nil {
			continue
		}
		p := oaFindParam(t, doc, item, "path", "workloads")
		if p == nil {
			t.Errorf("%s: no path parameter workloads", path)
			continue
		}
		enum := oaSchemaEnum(t, doc, p)
		for _, k := range kinds {
			if !slices.Contains(enum, k) {
				t.Errorf("%s: workloads enum %v lacks %q", path, enum, k)
			}
		}
	}
	if _, ok := paths[Prefix].(map[string]any); !ok {
		t.Errorf("the index %s is not in paths", Prefix)
	}
	// The workloads enum is exactly what the handler accepts.
	var plurals []string
	for p := range workloadKinds {
		plurals = append(plurals, p)
	}
	sort.Strings(plurals)
	for _, path := range workloadPaths {
		p := oaFindParam(t, doc, paths[path].(map[string]any), "path", "workloads")
		if p == nil {
			continue
		}
		enum := slices.Clone(oaSchemaEnum(t, doc, p))
		sort.Strings(enum)
		if !slices.Equal(enum, plurals) {
			t.Errorf("%s: workloads enum %v, want the keys of workloadKinds %v", path, enum, plurals)
		}
	}

	// Every path parameter of a template is declared, and only those.
	pathParam := regexp.MustCompile(`\{([^}]+)\}`)
	for path, v := range paths {
		item := v.(map[string]any)
		var want []string
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			want = append(want, m[1])
		}
		got := oaParamNames(t, doc, item, "path")
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: path parameters %v, want %v", path, got, want)
		}
		for _, name := range want {
			if p := oaFindParam(t, doc, item, "path", name); p != nil && p["required"] != true {
				t.Errorf("%s: path parameter %s is not required", path, name)
			}
		}
	}

	// Every data endpoint (all but the index and this document) documents every known
	// query parameter, and no other.
	want := slices.Clone(knownParams)
	sort.Strings(want)
	data := 0
	for path, v := range paths {
		if path == Prefix || path == index.OpenAPI {
			continue
		}
		data++
		got := oaParamNames(t, doc, v.(map[string]any), "query")
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: query parameters %v, want knownParams %v", path, got, want)
		}
	}
	if data != len(index.Endpoints) {
		t.Errorf("%d data endpoints in paths, %d in indexJSON", data, len(index.Endpoints))
	}

	// The fixed sets of values are the code's.
	params, _ := oaLookup(doc, "#/components/parameters")
	byName := map[string][]string{}
	if ps, ok := params.(map[string]any); ok {
		for _, v := range ps {
			p := v.(map[string]any)
			if p["in"] == "query" {
				byName[p["name"].(string)] = oaSchemaEnum(t, doc, p)
			}
		}
	}
	var resources []string
	for _, r := range tsdb.HistoryResources {
		resources = append(resources, r.String())
	}
	for name, want := range map[string][]string{
		paramResource: resources,
		paramView:     {string(viewSeries), string(viewSummary)},
		paramFormat:   {string(formatJSON), string(formatCSV)},
		paramResolution: func() []string {
			names := []string{tsdb.SourceAuto.String(), tsdb.SourceRaw.String()}
			for t := range tsdb.NumTiers {
				names = append(names, t.String())
			}
			return names
		}(),
	} {
		if got := byName[name]; !slices.Equal(got, want) {
			t.Errorf("query parameter %s: enum %v, want %v", name, got, want)
		}
	}

	// The aggregations' pattern accepts what tsdb.ParseAgg does.
	aggPattern := func(name string) *regexp.Regexp {
		p := params.(map[string]any)[name].(map[string]any)
		sch := oaDeref(t, doc, p["schema"])
		if sch["type"] == "array" {
			sch = oaDeref(t, doc, sch["items"])
		}
		re, err := regexp.Compile(sch["pattern"].(string))
		if err != nil {
			t.Fatalf("parameter %s: pattern: %v", name, err)
		}
		return re
	}
	aggRe, summaryRe := aggPattern(paramAgg), aggPattern(paramSummary)
	for _, a := range []string{"avg", "min", "max", "count", "none", "p50", "p5", "p0.5", "p0.05", "p99.9", "p99.999",
		"p99.9999", "p0", "p00", "p05", "p100", "p99.90", "p0.0", "p.5", "p5.", "P95", "p-1", "p1e2", "mean", ""} {
		_, err := tsdb.ParseAgg(a)
		if got, want := aggRe.MatchString(a), err == nil; got != want {
			t.Errorf("agg pattern matches %q: %v, ParseAgg accepts it: %v", a, got, want)
		}
		if got, want := summaryRe.MatchString(a), err == nil || a == "none"; got != want {
			t.Errorf("summary pattern matches %q: %v, want %v", a, got, want)
		}
	}
	if sch := oaDeref(t, doc, params.(map[string]any)[paramSummary].(map[string]any)["schema"]); sch != nil {
		var want []any
		for _, a := range defaultSummary {
			want = append(want, a.String())
		}
		if got, _ := sch["default"].([]any); !slices.Equal(got, want) {
			t.Errorf("summary default %v, want %v", got, want)
		}
	}

	// Every $ref resolves.
	refs := 0
	oaWalk(doc, func(ref string) {
		refs++
		if !strings.HasPrefix(ref, "#/components/") {
			t.Errorf("$ref %q is not to a component", ref)
			return
		}
		if _, ok := oaLookup(doc, ref); !ok {
			t.Errorf("$ref %q does not resolve", ref)
		}
	})
	if refs == 0 {
		t.Error("openapi.json has no $ref")
	}
}

// oaLookup resolves a local JSON pointer such as #/components/schemas/Error.
func oaLookup(doc map[string]any, ref string) (any, bool) {
	ptr, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = doc
	for _, tok := range strings.Split(ptr, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// oaWalk calls fn with every $ref in v.
func oaWalk(v any, fn func(ref string)) {
	switch v := v.(type) {
	case map[string]any:
		if r, ok := v["$ref"].(string); ok {
			fn(r)
		}
		for _, e := range v {
			oaWalk(e, fn)
		}
	case []any:
		for _, e := range v {
			oaWalk(e, fn)
		}
	}
}

// oaDeref returns the object v, or the one its $ref points to.
func oaDeref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, _ := v.(map[string]any)
	if r, ok := m["$ref"].(string); ok {
		target, ok := oaLookup(doc, r)
		if !ok {
			t.Errorf("$ref %q does not resolve", r)
			return nil
		}
		m, _ = target.(map[string]any)
	}
	return m
}

// oaOperationParams returns the parameters of a path item's GET: the path item's, then
// the operation's, with references resolved.
func oaOperationParams(t *testing.T, doc map[string]any, item map[string]any) []map[string]any {
	t.Helper()
	var out []map[string]any
	lists := []any{item["parameters"]}
	if op, ok := item["get"].(map[string]any); ok {
		lists = append(lists, op["parameters"])
	} else {
		t.Errorf("a path item has no GET: %v", item)
	}
	for _, l := range lists {
		ps, _ := l.([]any)
		for _, p := range ps {
			if m := oaDeref(t, doc, p); m != nil {
				out = append(out, m)
			}
		}
	}
	return out
}

func oaParamNames(t *testing.T, doc map[string]any, item map[string]any, in string) []string {
	t.Helper()
	var names []string
	for _, p := range oaOperationParams(t, doc, item) {
		if p["in"] == in {
			name, _ := p["name"].(string)
			if slices.Contains(names, name) {
				t.Errorf("%s parameter %s is documented twice", in, name)
			}
			names = append(names, name)
		}
	}
	return names
}

func oaFindParam(t *testing.T, doc map[string]any, item map[string]any, in, name string) map[string]any {
	t.Helper()
	for _, p := range oaOperationParams(t, doc, item) {
		if p["in"] == in && p["name"] == name {
			return p
		}
	}
	return nil
}

// oaSchemaEnum returns the enum of a parameter's schema, or of its items for an array.
func oaSchemaEnum(t *testing.T, doc map[string]any, p map[string]any) []string {
	t.Helper()
	s := oaDeref(t, doc, p["schema"])
	if s == nil {
		return nil
	}
	if s["type"] == "array" {
		s = oaDeref(t, doc, s["items"])
	}
	var out []string
	vals, _ := s["enum"].([]any)
	for _, v := range vals {
		if str, ok := v.(string); ok {
			out = append(out, str)
		}
	}
	return out
}
