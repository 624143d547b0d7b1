// Package grafana builds Hindsight's Grafana dashboard (hindsight.json beside this file) with
// Grafana's foundation SDK, and reads a dashboard's queries back for the tests that run them
// against Hindsight's Prometheus-compatible API.
//
// The dashboard reads the kubelet's series (node_*, pod_*, container_*) through a Prometheus
// data source pointed at Hindsight (datasource.yaml provisions one through the
// kube-apiserver and one on the direct port, both with max_source_resolution=auto, so long
// ranges read the downsampled tiers). Its rows: the cluster, a node, a namespace, a workload
// (the pods whose names begin with the workload's, as a Deployment's, StatefulSet's,
// DaemonSet's and Job's do: the series carry no owner) and a pod by container.
//
// Regenerate hindsight.json after a change: go test ./deploy/grafana -update.
package grafana

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// UID is the dashboard's uid, stable across versions so that an import replaces it.
const UID = "hindsight-usage"

// datasource is every panel's and query's data source: the dashboard's variable.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

// panel is one chart: its title, unit and queries (PromQL, legend).
type panel struct {
	title, description, unit string
	stacked                  bool
	queries                  [][2]string
}

func (p panel) builder() *timeseries.PanelBuilder {
	b := timeseries.NewPanelBuilder().
		Title(p.title).
		Description(p.description).
		Unit(p.unit).
		Min(0).
		Datasource(datasource()).
		FillOpacity(10).
		Height(8).
		Span(12).
		Legend(common.NewVizLegendOptionsBuilder().
			ShowLegend(true).
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom))
	if p.stacked {
		b = b.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).FillOpacity(40)
	}
	for i, q := range p.queries {
		b = b.WithTarget(prometheus.NewDataqueryBuilder().
			Datasource(datasource()).
			RefId(string(rune('A' + i))).
			Expr(q[0]).
			LegendFormat(q[1]).
			Range())
	}
	return b
}

// queryVariable is a variable whose values are a label's values on a series.
func queryVariable(name, label, query, regex string) *dashboard.QueryVariableBuilder {
	b := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if regex != "" {
		b = b.Regex(regex)
	}
	return b
}

// The selectors of each view.
const (
	nodeSel     = `node="$node"`
	nsSel       = `namespace="$namespace"`
	workloadSel = `namespace="$namespace", pod=~"$workload-.+"`
	podSel      = `namespace="$namespace", pod="$pod"`
)

// Dashboard returns Hindsight's dashboard.
func Dashboard() (dashboard.Dashboard, error) {
	rate := func(metric, sel string) string {
		return "rate(" + metric + "{" + sel + "}[$__rate_interval])"
	}
	rows := []struct {
		title  string
		panels []panel
	}{
		{"Cluster", []panel{
			{title: "CPU by node", unit: "cores", stacked: true,
				description: "What each node's kubelet reports the node used.",
				queries:     [][2]string{{"sum by (node) (" + rate("node_cpu_usage_seconds_total", "") + ")", "{{node}}"}}},
			{title: "Memory working set by node", unit: "bytes", stacked: true,
				queries: [][2]string{{"sum by (node) (node_memory_working_set_bytes)", "{{node}}"}}},
			{title: "CPU by namespace", unit: "cores", stacked: true,
				queries: [][2]string{{"sum by (namespace) (" + rate("pod_cpu_usage_seconds_total", "") + ")", "{{namespace}}"}}},
			{title: "Memory working set by namespace", unit: "bytes", stacked: true,
				queries: [][2]string{{"sum by (namespace) (pod_memory_working_set_bytes)", "{{namespace}}"}}},
		}},
		{"Node $node", []panel{
			{title: "CPU of $node", unit: "cores",
				queries: [][2]string{
					{rate("node_cpu_usage_seconds_total", nodeSel), "node"},
					{"sum(" + rate("pod_cpu_usage_seconds_total", nodeSel) + ")", "its pods"},
				}},
			{title: "Memory working set of $node", unit: "bytes",
				queries: [][2]string{
					{"node_memory_working_set_bytes{" + nodeSel + "}", "node"},
					{"max_over_time(node_memory_working_set_bytes{" + nodeSel + "}[$__interval])", "peak"},
				}},
			{title: "Top 10 pods on $node by CPU", unit: "cores",
				queries: [][2]string{{"topk(10, sum by (namespace, pod) (" + rate("pod_cpu_usage_seconds_total", nodeSel) + "))", "{{namespace}}/{{pod}}"}}},
			{title: "Top 10 pods on $node by memory", unit: "bytes",
				queries: [][2]string{{"topk(10, sum by (namespace, pod) (pod_memory_working_set_bytes{" + nodeSel + "}))", "{{namespace}}/{{pod}}"}}},
		}},
		{"Namespace $namespace", []panel{
			{title: "CPU by pod in $namespace", unit: "cores", stacked: true,
				queries: [][2]string{{"sum by (pod) (" + rate("pod_cpu_usage_seconds_total", nsSel) + ")", "{{pod}}"}}},
			{title: "Memory working set by pod in $namespace", unit: "bytes", stacked: true,
				queries: [][2]string{{"sum by (pod) (pod_memory_working_set_bytes{" + nsSel + "})", "{{pod}}"}}},
		}},
		{"Workload $workload", []panel{
			{title: "CPU of $workload's pods", unit: "cores",
				description: "The pods of $namespace whose names begin with $workload-: every pod the workload ran in the range, deleted ones included.",
				queries: [][2]string{
					{"sum(" + rate("pod_cpu_usage_seconds_total", workloadSel) + ")", "total"},
					{"sum by (pod) (" + rate("pod_cpu_usage_seconds_total", workloadSel) + ")", "{{pod}}"},
				}},
			{title: "Memory working set of $workload's pods", unit: "bytes",
				queries: [][2]string{
					{"max by (pod) (max_over_time(pod_memory_working_set_bytes{" + workloadSel + "}[$__interval]))", "{{pod}} peak"},
				}},
		}},
		{"Pod $pod", []panel{
			{title: "CPU of $pod by container", unit: "cores", stacked: true,
				queries: [][2]string{{"sum by (container) (" + rate("container_cpu_usage_seconds_total", podSel) + ")", "{{container}}"}}},
			{title: "Memory working set of $pod by container", unit: "bytes",
				queries: [][2]string{
					{"sum by (container) (container_memory_working_set_bytes{" + podSel + "})", "{{container}}"},
					{"max by (container) (max_over_time(container_memory_working_set_bytes{" + podSel + "}[$__interval]))", "{{container}} peak"},
				}},
		}},
	}

	b := dashboard.NewDashboardBuilder("Hindsight: resource usage").
		Uid(UID).
		Description("CPU and memory of the cluster, nodes, namespaces, workloads and pods, from Hindsight's history (deleted pods included).").
		Tags([]string{"hindsight", "kubernetes", "resources"}).
		Time("now-24h", "now").
		Timezone(common.TimeZoneBrowser).
		Refresh("1m").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus")).
		WithVariable(queryVariable("node", "Node", "label_values(node_cpu_usage_seconds_total, node)", "")).
		WithVariable(queryVariable("namespace", "Namespace", "label_values(pod_cpu_usage_seconds_total, namespace)", "")).
		// A Deployment's pods are <name>-<hash>-<5>, a StatefulSet's <name>-<n>, a
		// DaemonSet's and a Job's <name>-<5>: the capture is the workload's name.
		WithVariable(queryVariable("workload", "Workload", `label_values(pod_cpu_usage_seconds_total{namespace="$namespace"}, pod)`,
			`/^(.+?)(?:-[0-9a-f]{6,10})?-(?:[a-z0-9]{5}|[0-9]+)$/`)).
		WithVariable(queryVariable("pod", "Pod", `label_values(pod_cpu_usage_seconds_total{namespace="$namespace"}, pod)`, ""))
	for _, r := range rows {
		b = b.WithRow(dashboard.NewRowBuilder(r.title))
		for _, p := range r.panels {
			b = b.WithPanel(p.builder())
		}
	}
	return b.Build()
}
