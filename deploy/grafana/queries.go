package grafana

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Query is one PromQL query of a dashboard: a panel's target, or a query variable's.
type Query struct {
	// Panel is the panel's title, or "variable <name>".
	Panel string
	RefID string
	Expr  string
}

var registerPlugins = sync.OnceFunc(plugins.RegisterDefaultPlugins)

// Parse reads a dashboard's JSON by the SDK's dashboard, panel and Prometheus query types,
// and checks that they hold all of it: written back, what they read is the input, so an
// unknown or misplaced field is an error. (The SDK's own UnmarshalJSONStrict cannot be
// used: in v0.0.22 its panels come back empty, a typed nil error list stopping each one.)
func Parse(raw []byte) (dashboard.Dashboard, error) {
	registerPlugins()
	var d dashboard.Dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	back, err := json.Marshal(d)
	if err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	var in, out any
	if err := json.Unmarshal(raw, &in); err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	if err := json.Unmarshal(back, &out); err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	if path, ok := diff("", in, out); !ok {
		return d, fmt.Errorf("dashboard: %s is not read as written by the dashboard schema", path)
	}
	return d, nil
}

// diff returns the first path where a and b differ.
func diff(path string, a, b any) (string, bool) {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok {
			return path, false
		}
		for _, k := range slices.Sorted(maps.Keys(a)) {
			if p, ok := diff(path+"."+k, a[k], bm[k]); !ok {
				return p, false
			}
		}
		for k := range bm {
			if _, ok := a[k]; !ok {
				return path + "." + k, false
			}
		}
		return "", true
	case []any:
		bs, ok := b.([]any)
		if !ok || len(bs) != len(a) {
			return path, false
		}
		for i := range a {
			if p, ok := diff(fmt.Sprintf("%s[%d]", path, i), a[i], bs[i]); !ok {
				return p, false
			}
		}
		return "", true
	}
	return path, a == b
}

// PanelQueries returns the PromQL of every target of every panel, rows' panels included.
func PanelQueries(d dashboard.Dashboard) ([]Query, error) {
	var panels []*dashboard.Panel
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			panels = append(panels, p.Panel)
		case p.RowPanel != nil:
			for i := range p.RowPanel.Panels {
				panels = append(panels, &p.RowPanel.Panels[i])
			}
		}
	}
	var out []Query
	for _, p := range panels {
		title := ""
		if p.Title != nil {
			title = *p.Title
		}
		if len(p.Targets) == 0 {
			return nil, fmt.Errorf("panel %q has no query", title)
		}
		for _, t := range p.Targets {
			q, ok := t.(*prometheus.Dataquery)
			if !ok {
				return nil, fmt.Errorf("panel %q: a %T query, not Prometheus'", title, t)
			}
			ref := ""
			if q.RefId != nil {
				ref = *q.RefId
			}
			out = append(out, Query{Panel: title, RefID: ref, Expr: q.Expr})
		}
	}
	return out, nil
}

// VariableQueries returns the query of every query variable: label_values(<selector>, <label>).
func VariableQueries(d dashboard.Dashboard) []Query {
	var out []Query
	for _, v := range d.Templating.List {
		if v.Type == dashboard.VariableTypeQuery && v.Query != nil && v.Query.String != nil {
			out = append(out, Query{Panel: "variable " + v.Name, RefID: v.Name, Expr: *v.Query.String})
		}
	}
	return out
}

// Substitute replaces Grafana's variables in expr as Grafana does before it sends a query:
// $name and ${name} by vars, and the built-in $__rate_interval, $__interval and $__range
// by the durations given in vars under those names.
func Substitute(expr string, vars map[string]string) string {
	// Longest names first: the replacer tries its pairs in order, and $__interval must not
	// be read as a variable $__int.
	names := slices.SortedFunc(maps.Keys(vars), func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	pairs := make([]string, 0, 4*len(vars))
	for _, n := range names {
		pairs = append(pairs, "${"+n+"}", vars[n], "$"+n, vars[n])
	}
	return strings.NewReplacer(pairs...).Replace(expr)
}

// LabelValues splits a label_values(<selector>, <label>) variable query.
func LabelValues(query string) (selector, label string, err error) {
	inner, ok := strings.CutPrefix(strings.TrimSpace(query), "label_values(")
	if !ok || !strings.HasSuffix(inner, ")") {
		return "", "", fmt.Errorf("%q is not label_values(<selector>, <label>)", query)
	}
	inner = strings.TrimSuffix(inner, ")")
	i := strings.LastIndex(inner, ",")
	if i < 0 {
		return "", "", fmt.Errorf("%q is not label_values(<selector>, <label>)", query)
	}
	return strings.TrimSpace(inner[:i]), strings.TrimSpace(inner[i+1:]), nil
}
