package apiserver

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/metrics/pkg/apis/metrics"
)

func TestConvertToTable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	nodes, pods, _, _ := newTestStorage(t, f, nil)
	nodeList, err := nodes.List(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	nodeB, err := nodes.Get(context.Background(), "node-b", &metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns1 := genericapirequest.WithNamespace(context.Background(), "ns1")
	podList, err := pods.List(ns1, nil)
	if err != nil {
		t.Fatal(err)
	}
	podA, err := pods.Get(ns1, "pod-a", &metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantColumns := []string{"Name", "cpu", "memory", "Window"}
	tests := []struct {
		name      string
		convertor interface {
			ConvertToTable(context.Context, runtime.Object, runtime.Object) (*metav1.Table, error)
		}
		object    runtime.Object
		options   runtime.Object
		wantCols  []string
		wantCells [][]any
	}{
		{
			name: "node list", convertor: nodes, object: nodeList, wantCols: wantColumns,
			wantCells: [][]any{{"node-a", "1500m", "2Gi", "15s"}, {"node-b", "12345n", "1578392Ki", "14.5s"}},
		},
		{
			name: "one node", convertor: nodes, object: nodeB, wantCols: wantColumns,
			wantCells: [][]any{{"node-b", "12345n", "1578392Ki", "14.5s"}},
		},
		{
			name: "empty node list still has columns", convertor: nodes, object: &metrics.NodeMetricsList{}, wantCols: wantColumns,
			wantCells: [][]any{},
		},
		{
			name: "pod list: sums over containers", convertor: pods, object: podList, wantCols: wantColumns,
			wantCells: [][]any{{"pod-a", "105m", "80Mi", "13s"}, {"pod-b", "4710169n", "12240Ki", "15s"}, {"pod-e", "1n", "1", "15s"}},
		},
		{
			name: "one pod without headers", convertor: pods, object: podA, options: &metav1.TableOptions{NoHeaders: true},
			wantCells: [][]any{{"pod-a", "105m", "80Mi", "13s"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			table, err := tc.convertor.ConvertToTable(context.Background(), tc.object, tc.options)
			if err != nil {
				t.Fatal(err)
			}
			var cols []string
			for _, c := range table.ColumnDefinitions {
				cols = append(cols, c.Name)
			}
			if diff := cmp.Diff(tc.wantCols, cols); diff != "" {
				t.Errorf("columns (-want +got):\n%s", diff)
			}
			cells := [][]any{}
			for _, r := range table.Rows {
				cells = append(cells, r.Cells)
				if r.Object.Object == nil {
					t.Errorf("row %v has no object", r.Cells)
				}
			}
			if diff := cmp.Diff(tc.wantCells, cells); diff != "" {
				t.Errorf("cells (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := nodes.ConvertToTable(context.Background(), &metav1.Status{}, nil); err == nil {
		t.Error("ConvertToTable(*metav1.Status) succeeded; want an error")
	}
}
