package httpapi

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goldenRange is the range of the golden responses: 20 minutes at 5-minute steps.
var goldenRange = grid{at(0), at(20 * time.Minute), 5 * time.Minute}.String()

// TestGolden compares the JSON and CSV responses of every kind of object with
// testdata/golden; go test ./httpapi/ -run TestGolden -update rewrites them.
func TestGolden(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	for _, tc := range []struct{ name, path string }{
		{"cluster", "/cluster"},
		{"nodes_pool_a", "/nodes?labelSelector=pool%3Da"},
		{"node_n2", "/nodes/n2"},
		{"namespaces", "/namespaces"},
		{"namespace_shop", "/namespaces/shop"},
		{"pods_app_web", "/namespaces/shop/pods?labelSelector=app%3Dweb"},
		{"pod_db-0", "/namespaces/shop/pods/db-0"},
		{"containers_db-0", "/namespaces/shop/pods/db-0/containers"},
		{"deployment_web", "/namespaces/shop/deployments/web"},
		{"deployment_web_by_pod", "/namespaces/shop/deployments/web?by=pod"},
		{"pod_uid_web-a", "/pods/u-web-a"},
		{"pods_shop_summary", "/namespaces/shop/pods?view=summary"},
		{"namespace_other_summary_p95", "/namespaces/other?view=summary&summary=p95,max,count&resource=cpu"},
		{"pod_db-0_percentiles", "/namespaces/shop/pods/db-0?view=summary&summary=p99.9,count,p5,avg&resource=memory,cpu"},
		{"node_n2_agg_p75", "/nodes/n2?agg=p75&summary=p99.99&resource=cpu"},
	} {
		sep := "?"
		if strings.Contains(tc.path, "?") {
			sep = "&"
		}
		path := "/history/v1" + tc.path + sep + goldenRange
		t.Run(tc.name, func(t *testing.T) {
			w := get(t, h, "admin", path)
			decode(t, w) // a 200 of valid JSON
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, w.Body.Bytes(), "", "  "); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".json", pretty.Bytes())

			w = get(t, h, "admin", path+"&format=csv")
			parseCSV(t, w) // a 200 of valid CSV
			golden(t, tc.name+".csv", w.Body.Bytes())
		})
	}
}

// golden compares got with testdata/golden/name, or writes it there with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./httpapi/ -run TestGolden -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gl), len(wl)) {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s differs from line %d:\n got: %s\nwant: %s\n(go test ./httpapi/ -run TestGolden -update rewrites it)", path, i+1, g, w)
		}
	}
}
