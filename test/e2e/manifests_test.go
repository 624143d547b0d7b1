package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// kustomizeOverlays are the shipped overlays under deploy/kustomize/overlays.
var kustomizeOverlays = []string{"default", "kubelet-insecure-tls"}

// renderOverlay builds one overlay as a user does: deploy/kustomize copied with the
// serving certificate in overlays/default/certs (the cluster's, for
// hindsight.kube-system.svc), then kubectl kustomize.
func renderOverlay(ctx context.Context, t *testing.T, c *cluster.Cluster, overlay string) string {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "kustomize")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(root, "deploy", "kustomize"))); err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(dir, "overlays", "default", "certs")
	for dst, src := range map[string]string{"ca.crt": "ca.crt", "tls.crt": "hindsight-serving.crt", "tls.key": "hindsight-serving.key"} {
		data, err := os.ReadFile(c.PKI.Path(src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certs, dst), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.Kubectl(ctx, "kustomize", filepath.Join(dir, "overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize overlay %s: %v", overlay, err)
	}
	return out
}

// checkManifestsApply applies every shipped manifest with server-side apply as a dry run
// against the cluster: each object is valid for a real kube-apiserver (schema, defaulting,
// admission) and none is left out.
func checkManifestsApply(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	t.Helper()
	for _, overlay := range kustomizeOverlays {
		manifest := renderOverlay(ctx, t, c, overlay)
		want := len(topLevelKind.FindAllString(manifest, -1))
		got := applyDryRun(ctx, t, c, "overlay "+overlay, manifest)
		if got != want || got < 15 {
			t.Errorf("overlay %s: %d objects applied (server dry run), the manifest has %d; want all, at least 15", overlay, got, want)
		}
		if !strings.Contains(manifest, "caBundle:") || strings.Contains(manifest, "insecureSkipTLSVerify") {
			t.Errorf("overlay %s: APIServices must be verified by caBundle, never insecureSkipTLSVerify", overlay)
		}
		if insecure := strings.Contains(manifest, "--kubelet-insecure-tls"); insecure != (overlay == "kubelet-insecure-tls") {
			t.Errorf("overlay %s: --kubelet-insecure-tls set %v", overlay, insecure)
		}
	}
	// The chart's value sets, but cert-manager's: its Certificate, Issuer and ServiceMonitor
	// kinds need CRDs this control plane does not have (TestChart checks that render).
	for _, set := range chartValueSets {
		if set == "cert-manager" {
			continue
		}
		manifest, err := renderChart(t, c.Tools, set)
		if err != nil {
			t.Fatal(err)
		}
		want := len(topLevelKind.FindAllString(manifest, -1))
		if got := applyDryRun(ctx, t, c, "chart values "+set, manifest); got != want || got < 10 {
			t.Errorf("chart values %s: %d objects applied (server dry run), the render has %d; want all, at least 10", set, got, want)
		}
	}
}

// applyDryRun runs kubectl apply --server-side --dry-run=server on manifest and returns
// how many objects the server accepted.
func applyDryRun(ctx context.Context, t *testing.T, c *cluster.Cluster, what, manifest string) int {
	t.Helper()
	f := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := c.Kubectl(ctx, "apply", "--server-side", "--field-manager=hindsight-e2e", "--dry-run=server", "-f", f)
	if err != nil {
		t.Errorf("%s does not apply: %v", what, err)
		return 0
	}
	return strings.Count(out, "(server dry run)")
}

// topLevelKind matches each object's kind line in a multi-document manifest.
var topLevelKind = regexp.MustCompile(`(?m)^kind: `)
